"""PluginPolicy's rules read directly: which name a setting keeps out, and what its warnings say."""

from __future__ import annotations

import logging

import pytest

from greeter_core.policy import DISABLE_ENV, PluginPolicy
from greeter_core.record import PluginInfo


def record(name: str) -> PluginInfo:
    return PluginInfo(name, f"greeter-{name}", "1.0", f"gt_{name}:Plugin")


@pytest.mark.parametrize("other", ["alpha", "beta", "gamma"])
def test_a_disabled_name_keeps_out_that_plugin_only(other: str) -> None:
    """Disabling "beta" leaves the names sorted before and after it loadable: names match exactly."""
    policy = PluginPolicy.from_settings({DISABLE_ENV: "beta"})
    assert policy is not None
    assert policy.disabled_by(other) == (DISABLE_ENV if other == "beta" else None)


@pytest.mark.parametrize(
    ("installed", "shown"), [(["english", "chinese"], "chinese, english"), ([], "none")], ids=["some", "none"]
)
def test_a_name_no_plugin_has_is_warned_about_with_what_is_installed(
    caplog: pytest.LogCaptureFixture, installed: list[str], shown: str
) -> None:
    """The warning for a typo in a setting lists the installed plugins, or says there are none."""
    policy = PluginPolicy.from_settings({DISABLE_ENV: "englsh"})
    assert policy is not None
    with caplog.at_level(logging.WARNING, logger="greeter_core.policy"):
        policy.warn_unknown([record(name) for name in installed])
    assert caplog.messages == [
        f"GREETER_DISABLE names 'englsh', but no installed plugin is called that (installed: {shown})"
    ]
