"""The runtime's driver slot, in process: atomic, serialized swaps and when replaced plugins are closed."""

from __future__ import annotations

import io
import threading
import time
from itertools import pairwise
from typing import Any

import pytest
from run_helpers import ALPHA, BETA, GAMMA

from greeter_core import NoSuchDriverError
from greeter_core.runtime import GreetingLoop, Runtime, RuntimeStoppedError, Swap

pytestmark = pytest.mark.usefixtures("on_path")


class Recorded:
    """A greeter the test can watch: it says who it is and whether it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def greet(self, who: str) -> str:
        return f"{self.name} {who}"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def built(install) -> list[Recorded]:
    """Every greeter the runtime below builds, in order."""
    install(ALPHA, BETA, GAMMA)
    return []


@pytest.fixture
def runtime(built: list[Recorded]) -> Runtime:
    def loader(info: Any, **options: Any) -> Recorded:
        built.append(Recorded(info.name))
        return built[-1]

    runtime = Runtime(loader=loader)
    runtime.start("alpha")
    return runtime


def test_a_plugin_replaced_while_greeting_is_closed_only_when_the_greeting_is_done(runtime, built) -> None:
    """A swap during a greeting leaves that plugin open until the loop gives it back, then closes it."""
    with runtime.borrowed() as (greeter, _):
        runtime.swap("beta")
        assert not greeter.closed
    assert built[0].closed and not built[1].closed


def test_a_replaced_plugin_nobody_uses_is_closed_at_once(runtime, built) -> None:
    """A swap between greetings closes the old plugin right away."""
    runtime.swap("beta")
    assert built[0].closed


def test_a_failed_swap_keeps_and_does_not_close_the_current_plugin(runtime, built) -> None:
    """A swap to an unknown name raises and leaves the current plugin in place and open."""
    with pytest.raises(NoSuchDriverError):
        runtime.swap("french")
    assert (runtime.current.name, built[0].closed, runtime.swaps) == ("alpha", False, 0)


def test_after_close_every_plugin_is_closed_and_swaps_are_refused(runtime, built) -> None:
    """close() closes the current plugin; a later swap raises RuntimeStoppedError."""
    runtime.close()
    assert built[0].closed
    with pytest.raises(RuntimeStoppedError):
        runtime.swap("beta")


def test_concurrent_swaps_form_one_chain_with_exact_counts(runtime) -> None:
    """Swaps from many threads are serialized: numbered 1..N, each one's old plugin the previous one's new."""
    results: list[Swap] = []

    def swapper(names: list[str]) -> None:
        for name in names * 10:
            results.append(runtime.swap(name))

    threads = [threading.Thread(target=swapper, args=(["alpha", "beta", "gamma"][i:],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chain = sorted(results, key=lambda swap: swap.swaps)
    assert [swap.swaps for swap in chain] == list(range(1, len(results) + 1)) == list(range(1, runtime.swaps + 1))
    assert all(prev.new.name == swap.old.name for prev, swap in pairwise(chain))
    assert chain[-1].new.name == runtime.current.name


def test_stop_wakes_a_loop_sleeping_a_long_interval(runtime) -> None:
    """stop() from another thread ends a loop that would otherwise sleep for an hour."""
    out = io.StringIO()
    loop = GreetingLoop(runtime, who="Universe", interval=3600, out=out)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while runtime.greetings < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.stop()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        loop.close()
    assert out.getvalue() == "alpha Universe\n"
