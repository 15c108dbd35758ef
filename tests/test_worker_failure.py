"""What a worker reports for a failure: errors about its plugin as they are, anything else as the plugin's failure.

The host refuses, as a protocol breach, any error a worker may not send
(a worker cannot make the host say "usage error", exit 2). The worker keeps
to that itself: an error of greeter's that is not about the plugin it runs
is reported as that plugin's load or call failure, its message kept, so an
honest worker is never stopped for breaking the protocol.
"""

from __future__ import annotations

import pytest

from greeter_core.errors import (
    GreeterError,
    NoSuchDriverError,
    PluginCallError,
    PluginContractError,
    PluginLoadError,
    UsageError,
    WorkerLimitError,
)
from greeter_core.record import PluginInfo
from greeter_core.worker.main import _failure
from greeter_core.worker.protocol import Limits

RECORD = PluginInfo("klingon", "greeter-klingon", "1.0", "gt_klingon:Plugin")

NOT_ABOUT_THE_PLUGIN = [
    UsageError("--port must be a number"),
    NoSuchDriverError("vulcan", ["klingon"]),
    GreeterError("a new kind of failure"),
]


@pytest.mark.parametrize("error", NOT_ABOUT_THE_PLUGIN, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("loading", "reported"), [(True, PluginLoadError), (False, PluginCallError)])
def test_an_error_a_worker_may_not_send_is_reported_as_the_plugins_failure(
    error: GreeterError, loading: bool, reported: type[GreeterError]
) -> None:
    """A usage error (exit 2) or a lookup error raised in a worker reaches the host as the plugin's failure (exit 1)."""
    failure = _failure(error, "klingon", RECORD, Limits(), loading=loading)
    assert type(failure) is reported
    assert failure.exit_code == 1 and failure.plugin == RECORD
    assert str(error) in str(failure)


@pytest.mark.parametrize("loading", [True, False])
def test_an_error_about_the_plugin_is_reported_as_it_is(loading: bool) -> None:
    """The plugin breaking the contract is sent as itself, not wrapped in a load or call failure."""
    error = PluginContractError("klingon", RECORD, "greet() returned int, not str")
    assert _failure(error, "klingon", RECORD, Limits(), loading=loading) is error


def test_a_memory_error_under_a_memory_limit_is_reported_as_that_limit() -> None:
    """The control for the limit branch: what the filter does not touch still names the limit."""
    failure = _failure(MemoryError(), "klingon", RECORD, Limits(memory_mib=64), loading=False)
    assert type(failure) is WorkerLimitError and "--worker-memory 64 MiB" in str(failure)
