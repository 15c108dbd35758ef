"""greeter-chinese, tested as installed: loaded by its entry-point name through greeter_core."""

import pytest

import greeter_core
from greeter_core.testing import PluginConformance


@pytest.fixture
def greeter():
    return greeter_core.load("chinese")


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Universe", "你好宇宙"),
        ("小明", "你好，小明"),
        ("Alice", "你好，Alice"),
        ("", "你好宇宙"),
    ],
)
def test_greets_the_name_in_chinese(greeter, name, greeting):
    """Each name is greeted in Chinese; an empty name means the Universe."""
    assert greeter.greet(name) == greeting


def test_is_registered_by_this_distribution():
    """The driver 'chinese' comes from greeter-chinese, not from somewhere else."""
    info = greeter_core.find("chinese")
    assert (info.distribution, info.target) == ("greeter-chinese", "greeter_chinese:ChineseGreeter")


class TestConformance(PluginConformance):
    """greeter-chinese passes every check of the core's conformance kit (greeter_core.testing)."""

    driver = "chinese"
