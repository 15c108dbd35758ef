"""The channel's deadline covers a whole reply, however its bytes trickle in (worker/protocol.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from greeter_core.worker.protocol import GREET, Channel

DEADLINE = 1.0
#: When the peer sends half a header, then stalls: each read re-armed to the whole timeout would end at 1.6 s.
STALL_AT = 0.6
#: Less than the 0.6 s a read armed with the whole timeout adds; room for a loaded machine.
MARGIN = 0.45


@pytest.fixture
def pair() -> Iterator[tuple[Channel, socket.socket]]:
    """Our end as a Channel, the peer's as a raw socket."""
    ours, theirs = socket.socketpair()
    channel = Channel(ours)
    yield channel, theirs
    channel.close()
    theirs.close()


def half_a_header_then_silence(peer: socket.socket, started: float, request: bool) -> threading.Thread:
    """Read the request (if one is sent), then at STALL_AT seconds send two of the four length bytes, and stall."""

    def run() -> None:
        if request:
            peer.recv(65536)
        time.sleep(max(0.0, started + STALL_AT - time.monotonic()))  # the scenario is a time: nothing to await
        peer.sendall(b"\x00\x00")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


CALLS: dict[str, Callable[[Channel], object]] = {
    "call": lambda channel: channel.call(GREET, b"world", DEADLINE),
    "recv": lambda channel: channel.recv(DEADLINE),
}


@pytest.mark.parametrize("how", CALLS)
def test_a_reply_stalled_after_half_a_header_times_out_at_the_deadline(pair, how: str) -> None:
    """The read after a partial frame waits only what is left of the deadline, not the whole timeout again."""
    channel, peer = pair
    started = time.monotonic()
    thread = half_a_header_then_silence(peer, started, request=how == "call")
    with pytest.raises(TimeoutError):
        CALLS[how](channel)
    elapsed = time.monotonic() - started
    thread.join()
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + MARGIN, f"timed out after {elapsed:.3f} s, deadline {DEADLINE} s"
