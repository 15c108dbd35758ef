"""Uninstalling the running plugin from a real venv while `greeter run` greets with it (the Go post's deleted .so)."""

from __future__ import annotations

import pytest
from plugins import GAMMA, PluginFactory
from running import RunningGreeter
from wheels import Venv, uv


@pytest.fixture
def running_alpha(venv: Venv, venv_start) -> RunningGreeter:
    """`greeter run --driver alpha` from the venv, with greeter-alpha already uninstalled under it."""
    greeter: RunningGreeter = venv_start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    uv("pip", "uninstall", "--quiet", "--python", venv.python, "greeter-alpha", env=venv.env)
    assert not list(venv.python.parent.parent.glob("lib/python*/site-packages/greeter_alpha-*.dist-info"))
    return greeter


def test_the_running_plugin_keeps_greeting_after_its_distribution_is_uninstalled(running_alpha) -> None:
    """Once loaded, a plugin whose files are gone goes on greeting, without a single error."""
    running_alpha.wait_greetings("Alpha Universe", 5)
    assert running_alpha.status()["errors"] == 0


def test_switching_back_to_an_uninstalled_plugin_is_404_and_the_current_driver_keeps_greeting(running_alpha) -> None:
    """After switching away, the uninstalled plugin is no longer installed: 404; the current driver greets on."""
    assert running_alpha.swap("beta").status == 200
    reply = running_alpha.swap("alpha")
    assert reply.status == 404
    assert (reply.data["installed"], reply.data["current"]) == (["beta"], "beta")
    running_alpha.wait_greetings("Beta Universe", 3)
    assert running_alpha.status()["driver"] == "beta"


def test_a_plugin_installed_while_running_can_be_swapped_in_at_once(
    venv: Venv, venv_start, factory: PluginFactory
) -> None:
    """`pip install` a new plugin mid-run and switch to it right away: the swap sees fresh metadata."""
    greeter: RunningGreeter = venv_start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    venv.install(factory.wheel(GAMMA))
    assert greeter.swap("gamma").status == 200
    greeter.wait_greetings("Gamma Universe")
