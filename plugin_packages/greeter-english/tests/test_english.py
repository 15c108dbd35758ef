"""greeter-english, tested as installed: loaded by its entry-point name through greeter_core."""

import pytest

import greeter_core


@pytest.fixture
def greeter():
    return greeter_core.load("english")


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ('Universe', 'Hello Universe'),
        ('Alice', 'Hello Alice'),
        ('Zoë', 'Hello Zoë'),
        ('', 'Hello Universe'),
    ],
)
def test_greets_the_name_in_english(greeter, name, greeting):
    """Each name is greeted in English; an empty name means the Universe."""
    assert greeter.greet(name) == greeting


def test_is_registered_by_this_distribution():
    """The driver 'english' comes from greeter-english, not from somewhere else."""
    info = greeter_core.find("english")
    assert (info.distribution, info.target) == ("greeter-english", "greeter_english:EnglishGreeter")
