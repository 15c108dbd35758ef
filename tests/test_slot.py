"""The driver slot, in process: atomic, serialized swaps, and when replaced plugins are closed."""

from __future__ import annotations

import io
import threading
from itertools import pairwise
from typing import Any

import pytest
from basics import wait_for
from plugins import ALPHA, BETA, GAMMA

from greeter_core import NoSuchDriverError, RuntimeStoppedError
from greeter_core.loading import InProcessPlugin
from greeter_core.loop import GreetingLoop
from greeter_core.slot import DriverSlot, Swap

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
    """Every plugin object the slot below builds, in order."""
    install(ALPHA, BETA, GAMMA)
    return []


@pytest.fixture
def slot(built: list[Recorded]) -> DriverSlot:
    def loader(info: Any, *options: Any, **keywords: Any) -> InProcessPlugin:
        built.append(Recorded(info.name))
        return InProcessPlugin(built[-1], info.name, info.target, info)

    slot = DriverSlot(loader=loader)
    slot.start("alpha")
    return slot


def test_a_plugin_replaced_while_greeting_is_closed_only_when_the_greeting_is_done(slot, built) -> None:
    """A swap during a greeting leaves that plugin open until the loop gives it back, then closes it."""
    with slot.borrowed() as loaded:
        slot.swap("beta")
        assert not loaded.obj.closed
    assert built[0].closed and not built[1].closed


def test_a_replaced_plugin_nobody_uses_is_closed_at_once(slot, built) -> None:
    """A swap between greetings closes the old plugin right away."""
    slot.swap("beta")
    assert built[0].closed


def test_a_failed_swap_keeps_and_does_not_close_the_current_plugin(slot, built) -> None:
    """A swap to an unknown name raises and leaves the current plugin in place and open."""
    with pytest.raises(NoSuchDriverError):
        slot.swap("french")
    assert (slot.current.name, built[0].closed, slot.swaps) == ("alpha", False, 0)


def test_after_close_every_plugin_is_closed_and_swaps_are_refused(slot, built) -> None:
    """close() closes the current plugin; a later swap raises RuntimeStoppedError."""
    slot.close()
    assert built[0].closed
    with pytest.raises(RuntimeStoppedError):
        slot.swap("beta")


def test_concurrent_swaps_form_one_chain_with_exact_counts(slot) -> None:
    """Swaps from many threads are serialized: numbered 1..N, each one's old plugin the previous one's new."""
    results: list[Swap] = []

    def swapper(names: list[str]) -> None:
        for name in names * 10:
            results.append(slot.swap(name))

    threads = [threading.Thread(target=swapper, args=(["alpha", "beta", "gamma"][i:],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chain = sorted((swap for swap in results if swap.old != swap.new), key=lambda swap: swap.swaps)
    assert [swap.swaps for swap in chain] == list(range(1, len(chain) + 1)) == list(range(1, slot.swaps + 1))
    assert all(prev.new.name == swap.old.name for prev, swap in pairwise(chain))
    assert chain[-1].new.name == slot.current.name


def test_stop_wakes_a_loop_sleeping_a_long_interval(slot) -> None:
    """stop() from another thread ends a loop that would otherwise sleep for an hour."""
    out = io.StringIO()
    loop = GreetingLoop(slot, who="Universe", interval=3600, out=out)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: slot.greetings >= 1, what="the first greeting")
        loop.stop()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        loop.close()
    assert out.getvalue() == "alpha Universe\n"


def test_a_swap_to_the_driver_already_running_is_a_no_op_that_says_so(slot, built, caplog) -> None:
    """Naming the current driver keeps the very plugin object, counts no swap, and the log says nothing switched."""
    caplog.set_level("INFO", logger="greeter_core.runtime")
    result = slot.swap("alpha")
    assert (result.old, result.new, result.swaps, slot.swaps) == (slot.current, slot.current, 0, 0)
    assert len(built) == 1 and not built[0].closed
    assert "already greeting with alpha (greeter-alpha 1.0); nothing to switch" in caplog.text
