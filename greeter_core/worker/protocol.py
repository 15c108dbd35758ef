"""The host<->worker channel: length-prefixed pickle frames over one socketpair.

Chosen by measurement (see BENCHMARKS.md): a socketpair round trip with pickle
costs about the same as marshal and half as much as JSON lines; per-call
deadlines use the kernel's ``SO_RCVTIMEO`` because Python's own socket
timeout adds a ``poll()`` before every ``recv()`` (~20% per call here).

The channel is its own file descriptor, never the worker's stdout: whatever a
plugin prints cannot corrupt it. The host only unpickles greeter's own types
from a worker (see :class:`_HostUnpickler`).
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
from typing import Any

from ..api import API_VERSION

#: Bumped whenever the messages below change shape; checked both ways at the handshake.
PROTOCOL_VERSION = 1

#: Set in the worker's environment, like go-plugin's magic cookie: a worker
#: started by hand says what it is instead of waiting on a channel forever.
COOKIE_ENV = "GREETER_WORKER_COOKIE"
COOKIE = "greeter-worker-0b5e1c1e"

#: Worker log records travel on its stderr as lines starting with this mark.
LOG_MARK = "\x1egreeter-log\x1f"

_HEADER = struct.Struct("!I")
MAX_FRAME = 16 * 1024 * 1024

_ALLOWED = {
    ("greeter_core.errors", None),
    ("greeter_core.discovery", "PluginInfo"),
}


def check_hello(op: str, hello: Any, *, peer: str, me: str) -> str | None:
    """What is wrong with the *peer*'s hello (versions differ, or no hello at all), else None.

    Both sides run it on what the other sent: the worker on the host's
    hello, the host on the worker's answer.
    """
    if op != "hello" or not isinstance(hello, dict):
        return f"expected the {peer}'s hello first, got {op!r}"
    if hello.get("protocol") != PROTOCOL_VERSION:
        return f"the {peer} speaks protocol {hello.get('protocol')!r}, this {me} speaks {PROTOCOL_VERSION}"
    if hello.get("api_version") != API_VERSION:
        return f"the {peer} provides plugin API {hello.get('api_version')!r}, this {me} provides {API_VERSION}"
    return None


class _HostUnpickler(pickle.Unpickler):
    """Unpickles only plain data and greeter's own errors and records."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, None) in _ALLOWED or (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a worker may not send {module}.{name}")


class Channel:
    """One end of the socketpair; ``send`` and ``recv`` whole messages."""

    def __init__(self, sock: socket.socket, *, trusted: bool = False) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._loads = pickle.loads if trusted else _restricted_loads

    def set_timeout(self, seconds: float | None) -> None:
        """Make ``recv`` raise ``TimeoutError`` after *seconds* without data (None: wait forever)."""
        whole, fraction = divmod(seconds or 0.0, 1.0)
        value = struct.pack("ll", int(whole), int(fraction * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)

    def send(self, message: object) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(_HEADER.pack(len(data)) + data)

    def recv(self) -> Any:
        """The next message; ``EOFError`` when the other end is gone."""
        self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise EOFError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
        self._fill(_HEADER.size + size)
        data = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        return self._loads(data)

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:  # SO_RCVTIMEO expired
                raise TimeoutError from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError("the other end closed the channel")
            self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _restricted_loads(data: bytes) -> Any:
    return _HostUnpickler(io.BytesIO(data)).load()
