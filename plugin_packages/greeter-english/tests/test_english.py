"""greeter-english, tested as installed: loaded by its entry-point name through greeter_core."""

import pytest

import greeter_core
from greeter_core.testing import PluginConformance


@pytest.fixture
def greeter():
    return greeter_core.load("english")


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Universe", "Hello Universe"),
        ("Alice", "Hello Alice"),
        ("Zoë", "Hello Zoë"),
        ("", "Hello Universe"),
    ],
)
def test_greets_the_name_in_english(greeter, name, greeting):
    """Each name is greeted in English; an empty name means the Universe."""
    assert greeter.greet(name) == greeting


def test_is_registered_by_this_distribution():
    """The driver 'english' comes from greeter-english, not from somewhere else."""
    info = greeter_core.find("english")
    assert (info.distribution, info.target) == ("greeter-english", "greeter_english:EnglishGreeter")


@pytest.mark.parametrize(("options", "greeting"), [({}, "Hello Universe"), ({"punctuation": "!"}, "Hello Universe!")])
def test_the_punctuation_option_ends_the_greeting(options, greeting):
    """`--option punctuation=!` reaches the plugin through its context and ends the greeting."""
    assert greeter_core.load("english", config=options).greet("") == greeting


class TestConformance(PluginConformance):
    """greeter-english passes every check of the core's conformance kit (greeter_core.testing)."""

    driver = "english"
    options = {"punctuation": "!"}
