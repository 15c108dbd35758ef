"""greeter-spanish, tested as installed: loaded by its entry-point name through greeter_core."""

import pytest

import greeter_core
from greeter_core.testing import PluginConformance


@pytest.fixture
def greeter():
    return greeter_core.load("spanish")


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Universe", "Hola Universo"),
        ("Íñigo", "Hola Íñigo"),
        ("", "Hola Universo"),
    ],
)
def test_greets_the_name_in_spanish(greeter, name, greeting):
    """Each name is greeted in Spanish; an empty name means the Universe."""
    assert greeter.greet(name) == greeting


def test_is_registered_by_this_distribution():
    """The driver 'spanish' comes from greeter-spanish, not from somewhere else."""
    info = greeter_core.find("spanish")
    assert (info.distribution, info.target) == ("greeter-spanish", "greeter_spanish:SpanishGreeter")


class TestConformance(PluginConformance):
    """greeter-spanish passes every check of the core's conformance kit (greeter_core.testing)."""

    driver = "spanish"
