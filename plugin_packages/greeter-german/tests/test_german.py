"""greeter-german, tested as installed: loaded by its entry-point name through greeter_core."""

import pytest

import greeter_core
from greeter_core.testing import PluginConformance


@pytest.fixture
def greeter():
    return greeter_core.load("german")


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Universe", "Hallo Universum"),
        ("Jürgen", "Hallo Jürgen"),
        ("", "Hallo Universum"),
    ],
)
def test_greets_the_name_in_german(greeter, name, greeting):
    """Each name is greeted in German; an empty name means the Universe."""
    assert greeter.greet(name) == greeting


def test_is_registered_by_this_distribution():
    """The driver 'german' comes from greeter-german, not from somewhere else."""
    info = greeter_core.find("german")
    assert (info.distribution, info.target) == ("greeter-german", "greeter_german:GermanGreeter")


class TestConformance(PluginConformance):
    """greeter-german passes every check of the core's conformance kit (greeter_core.testing)."""

    driver = "german"
