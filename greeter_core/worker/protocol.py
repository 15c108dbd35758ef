"""The host<->worker channel: tagged frames of plain data over one socketpair, both ways.

A frame is a 4-byte big-endian length, then one byte saying what it is, then
its payload. A greeting request and its answer are raw UTF-8 text, so the
hot path costs a decode and nothing else; the hello, an error and the
goodbye carry a JSON object of a fixed shape. Nothing on the channel names
code: the host never builds an object named by bytes a worker sent (pickle,
even with an allow-list, follows dotted names out of any module it allows).
An error travels as data, a kind and its fields, rebuilt by the host from
:mod:`greeter_core.errors`' own classes (:mod:`greeter_core.worker.codec`).

The channel is its own file descriptor, never the worker's stdout: whatever a
plugin prints cannot corrupt it. Deadlines use the kernel's ``SO_RCVTIMEO``,
set only when it changes, because Python's own socket timeout adds a
``poll()`` before every ``recv()`` (~20% per call here); the deadline covers
the whole reply, not each read.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Self

from ..api import API_VERSION
from ..record import PluginInfo
from ..settings import flag
from .sandbox import Sandbox, Status

__all__ = [
    "BYE",
    "COOKIE",
    "COOKIE_ENV",
    "ERROR",
    "GREET",
    "HELLO",
    "LOG_MARK",
    "MAX_FRAME",
    "OK",
    "PROTOCOL_VERSION",
    "Channel",
    "FrameTooLarge",
    "Limits",
    "WorkerHello",
    "WorkerSpec",
    "check_hello",
    "core_identity",
    "decode_text",
    "encode_text",
]

#: Bumped whenever the messages below change shape; checked both ways at the handshake.
PROTOCOL_VERSION = 3

#: Set in the worker's environment, like go-plugin's magic cookie: a worker
#: started by hand says what it is instead of waiting on a channel forever.
COOKIE_ENV = "GREETER_WORKER_COOKIE"
COOKIE = "greeter-worker-0b5e1c1e"

#: Worker log records travel on its stderr as lines starting with this mark,
#: then a JSON array ``[level, logger name, message]``.
LOG_MARK = "\x1egreeter-log\x1f"

#: What a frame is: its first byte.
HELLO = ord("H")  #: JSON: the handshake, each side says who it is
GREET = ord("G")  #: UTF-8: the name to greet (host -> worker)
OK = ord("O")  #: UTF-8: the greeting (worker -> host)
ERROR = ord("E")  #: JSON: an error as data, ``{"kind": ..., "fields": {...}}``
BYE = ord("B")  #: empty: the host asks the worker to close the plugin and exit

_HEADER = struct.Struct("!I")  # the frame's length, its kind byte included
_HEAD = struct.Struct("!IB")  # the length and the kind, as a frame starts
_SIZE = _HEADER.size
_unpack_size = _HEADER.unpack_from
_monotonic = time.monotonic

#: Largest frame either side accepts (its kind byte included).
MAX_FRAME = 16 * 1024 * 1024


class FrameTooLarge(Exception):
    """The other side announced a frame over :data:`MAX_FRAME`."""

    def __init__(self, size: int) -> None:
        super().__init__(f"reply of {size} bytes exceeds the {MAX_FRAME // (1024 * 1024)} MiB limit")
        self.size = size


class Limits(NamedTuple):
    """What a worker may use, applied with ``setrlimit`` before the plugin is imported; 0 means no limit."""

    memory_mib: int = 0
    """Its data segment (heap and anonymous mappings, ``RLIMIT_DATA``), in MiB: ``--worker-memory``."""

    cpu_seconds: float = 0
    """CPU time for the worker's whole life (``RLIMIT_CPU``): ``--worker-cpu``."""

    files: int = 0
    """Open file descriptors (``RLIMIT_NOFILE``): ``--worker-files``."""

    processes: int = 0
    """Processes and threads of the worker's tree, itself included: ``--worker-processes``
    (see :func:`greeter_core.worker.main.bound_processes`)."""

    def name(self, which: str) -> str:
        """The limit as the user set it, e.g. ``--worker-memory 256 MiB``."""
        if which == "memory":
            return f"{flag('worker_memory')} {self.memory_mib} MiB"
        if which == "cpu":
            return f"{flag('worker_cpu')} {self.cpu_seconds:g} s"
        if which == "processes":
            return f"{flag('worker_processes')} {self.processes}"
        return f"{flag('worker_files')} {self.files}"


def core_identity() -> dict[str, str]:
    """Which greeter-core this process runs: its version and where it was imported from."""
    from .. import __file__ as core_file
    from .. import __version__

    return {"version": __version__, "location": os.path.dirname(os.path.abspath(core_file))}


def _same_core(core: object, mine: dict[str, str]) -> bool:
    """Whether *core* (a peer's :func:`core_identity`) is this greeter-core: the same version, imported from the
    same directory (real paths: a worker of a plugin in its own environment imports it through a link)."""
    if core == mine:
        return True
    if not isinstance(core, dict) or set(core) != set(mine) or core.get("version") != mine["version"]:
        return False
    location = core.get("location")
    return isinstance(location, str) and os.path.realpath(location) == os.path.realpath(mine["location"])


def check_hello(hello: Any, *, peer: str, me: str) -> str | None:
    """What is wrong with the *peer*'s hello (not ours, versions differ, another core), else None.

    Both sides run it on what the other sent: the worker on the host's
    hello, the host on the worker's answer.
    """
    if not isinstance(hello, dict):
        return f"expected the {peer}'s hello, got {type(hello).__name__}"
    if hello.get("protocol") != PROTOCOL_VERSION:
        return f"the {peer} speaks protocol {_shown(hello.get('protocol'))}, this {me} speaks {PROTOCOL_VERSION}"
    if hello.get("api_version") != API_VERSION:
        return f"the {peer} provides plugin API {_shown(hello.get('api_version'))}, this {me} provides {API_VERSION}"
    core, mine = hello.get("core"), core_identity()
    if not _same_core(core, mine):
        theirs = (
            f"greeter-core {_shown(core.get('version'))} from {_shown(core.get('location'))}"
            if isinstance(core, dict)
            else f"an unknown greeter-core ({_shown(core)})"
        )
        return (
            f"the {peer} runs {theirs}, this {me} runs greeter-core {mine['version']} from {mine['location']}; "
            f"both must run the same installed greeter-core"
        )
    return None


def _shown(value: object) -> str:
    return repr(value)[:200]


# -- the two hellos: each field written once, encoded by one side and checked once by the other ---------------


def _same(value: Any) -> Any:
    return value


def _strings(values: Any) -> bool:
    return all(isinstance(value, str) for value in values)


@dataclass(frozen=True)
class _Codec:
    """How one field of a hello travels: *check* the JSON value received, *build* the field from it, *encode* it.

    A field names its codec in its metadata (``field(metadata=BOOL)``): adding a field is one line.
    """

    check: Callable[[Any], bool]
    build: Callable[[Any], Any] = _same
    encode: Callable[[Any], Any] = _same


BOOL = {"codec": _Codec(lambda value: type(value) is bool)}
WHOLE = {"codec": _Codec(lambda value: type(value) is int)}
PID = {"codec": _Codec(lambda value: type(value) is int and value > 0)}
TEXT = {"codec": _Codec(lambda value: isinstance(value, str))}
STRINGS = {"codec": _Codec(lambda value: isinstance(value, list) and _strings(value), list)}
STRING_MAP = {"codec": _Codec(lambda value: isinstance(value, dict) and _strings([*value, *value.values()]), dict)}
RECORD = {
    "codec": _Codec(
        lambda value: isinstance(value, dict) and set(value) == set(PluginInfo._fields) and _strings(value.values()),
        lambda value: PluginInfo(**value),
        PluginInfo._asdict,
    )
}
LIMITS = {
    "codec": _Codec(
        lambda value: (
            isinstance(value, dict)
            and set(value) == set(Limits._fields)
            and all(type(number) in (int, float) and number >= 0 for number in value.values())
        ),
        lambda value: Limits(**value),
        Limits._asdict,
    )
}


def _parses(build: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            build(value)
        except (ValueError, KeyError, TypeError):
            return False
        return True

    return check


SANDBOX = {"codec": _Codec(_parses(Sandbox.from_data), Sandbox.from_data, Sandbox.to_data)}
SANDBOX_STATUS = {"codec": _Codec(_parses(Status.from_data), Status.from_data, Status.to_data)}


class _Hello:
    """A hello: the protocol, the plugin API and the core both sides check, then the dataclass's own fields."""

    def encode(self) -> dict[str, Any]:
        data: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "api_version": API_VERSION, "core": core_identity()}
        for each in fields(self):  # type: ignore[arg-type]
            data[each.name] = each.metadata["codec"].encode(getattr(self, each.name))
        return data

    @classmethod
    def decode(cls, data: Any, *, peer: str, me: str) -> Self:
        """The *peer*'s hello, checked once: ``ValueError`` saying what is wrong (versions, core, a field)."""
        problem = check_hello(data, peer=peer, me=me)
        if problem is not None:
            raise ValueError(problem)
        values = {}
        for each in fields(cls):  # type: ignore[arg-type]
            codec: _Codec = each.metadata["codec"]
            value = data.get(each.name)
            if not codec.check(value):
                raise ValueError(f"the {peer}'s hello has a malformed field {each.name!r}: {_shown(value)}")
            values[each.name] = codec.build(value)
        return cls(**values)


@dataclass(frozen=True)
class WorkerSpec(_Hello):
    """What the host gives a worker in its hello: what to load and how to run it (a field: one line here)."""

    plugin: PluginInfo = field(metadata=RECORD)
    config: dict[str, str] = field(metadata=STRING_MAP)
    verify: bool = field(metadata=BOOL)
    log_level: int = field(metadata=WHOLE)
    limits: Limits = field(metadata=LIMITS)
    sys_path: list[str] = field(metadata=STRINGS)
    env: dict[str, str] = field(metadata=STRING_MAP)
    sandbox: Sandbox = field(metadata=SANDBOX)


@dataclass(frozen=True)
class WorkerHello(_Hello):
    """What a worker answers once its plugin is loaded. Claims, all of them: its *pid* is shown, never signalled."""

    plugin: PluginInfo = field(metadata=RECORD)
    language: str = field(metadata=TEXT)
    pid: int = field(metadata=PID)
    sandbox: Status = field(metadata=SANDBOX_STATUS)
    """What the worker's sandbox put in force, as it says (the kernel's /proc/<pid>/status is the check)."""


class Channel:
    """One end of the socketpair: ``send`` a frame, ``recv`` the next one whole."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._sendall = sock.sendall
        self._recv = sock.recv
        self._buffer = bytearray()
        self._armed: float | None = None  # the SO_RCVTIMEO set in the kernel (None: none)

    def send(self, kind: int, payload: bytes = b"") -> None:
        """Send one frame; ``FrameTooLarge`` if it is over the limit (nothing is sent then)."""
        if len(payload) >= MAX_FRAME:
            raise FrameTooLarge(len(payload))
        self._sendall(_HEAD.pack(len(payload) + 1, kind) + payload)

    def send_json(self, kind: int, value: object) -> None:
        self.send(kind, json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))

    def set_send_timeout(self, seconds: float) -> None:
        """Make a send that cannot complete within *seconds* raise ``TimeoutError`` (a peer that never reads)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))

    def call(self, kind: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """Send a request frame and return the reply, all of it within *timeout* seconds: the host's hot path.

        The same as :meth:`send` then :meth:`recv`, in one piece: a greeting
        round trip should cost little more than the two system calls.
        """
        started = _monotonic()
        if timeout != self._armed:
            self._arm(timeout)
        self._sendall(_HEAD.pack(len(payload) + 1, kind) + payload)
        return self._next(started + timeout)

    def serve(self, greet: Callable[[str], str]) -> tuple[int, bytes]:
        """Answer greeting requests with *greet* until another frame comes; return that one: the worker's hot path.

        A request's name is decoded, *greet* called and its text sent back as
        an ``OK`` frame, through the same read path as :meth:`recv`: the round
        trip should cost little more than the echo of the same bytes. Whatever *greet* raises
        (or :class:`FrameTooLarge` for its text) leaves here, the request
        consumed; the caller reports it and serves on. *greet* must wrap its own
        failures (a loaded plugin's ``greet`` does): ``EOFError`` from here means the host
        is gone. No deadline: a worker waits for its host.
        """
        if self._armed is not None:
            self._arm(None)
        next_frame, sendall, pack = self._next, self._sendall, _HEAD.pack
        while True:
            kind, payload = next_frame(None)
            if kind != GREET:
                return kind, payload
            data = encode_text(greet(decode_text(payload)))
            if len(data) >= MAX_FRAME:
                raise FrameTooLarge(len(data))
            try:
                sendall(pack(len(data) + 1, OK) + data)
            except OSError:
                raise EOFError("the other end closed the channel") from None

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The next frame, as (kind, payload), all of it within *timeout* seconds (None: wait forever).

        ``EOFError`` when the other end is gone, ``TimeoutError`` at the
        deadline, :class:`FrameTooLarge` as soon as a header announces one.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        if timeout != self._armed:
            self._arm(timeout)
        return self._next(deadline)

    def _next(self, deadline: float | None) -> tuple[int, bytes]:
        """The next frame, by *deadline* (SO_RCVTIMEO already armed); one read when it holds the whole frame."""
        if not self._buffer:  # the usual case
            chunk = self._read()
            size = len(chunk) - _SIZE
            if size > 0 and _unpack_size(chunk)[0] == size:
                return chunk[_SIZE], chunk[_SIZE + 1 :]
            self._buffer += chunk
        return self._recv_rest(deadline)

    def _recv_rest(self, deadline: float | None) -> tuple[int, bytes]:
        buffer = self._buffer
        while True:
            if len(buffer) >= _HEADER.size:
                (size,) = _unpack_size(buffer)
                if size > MAX_FRAME:
                    raise FrameTooLarge(size - 1)
                if size == 0:
                    raise ValueError("an empty frame")
                end = _HEADER.size + size
                if len(buffer) >= end:
                    kind, payload = buffer[_HEADER.size], bytes(buffer[_HEADER.size + 1 : end])
                    del buffer[:end]
                    return kind, payload
            if deadline is not None:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._arm(remaining)
            buffer += self._read()

    def _read(self) -> bytes:
        try:
            chunk = self._recv(65536)
        except BlockingIOError:  # SO_RCVTIMEO expired
            raise TimeoutError from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("the other end closed the channel")
        return chunk

    def _arm(self, seconds: float | None) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        self._armed = seconds

    def close(self) -> None:
        self.sock.close()


def decode_text(payload: bytes) -> str:
    """A greet or ok frame's text; lone surrogates pass (``ValueError`` if it is not UTF-8 at all).

    Strict decoding first: it is the faster codec path, and it accepts every
    frame but one carrying a surrogate.
    """
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return payload.decode("utf-8", "surrogatepass")


def encode_text(text: str) -> bytes:
    """A greet or ok frame's payload: UTF-8, a lone surrogate carried as is (strict first, as above)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _timeval(seconds: float | None) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO; zero means "no timeout" to the kernel, so
    a positive timeout is never rounded down to it."""
    if seconds is None:
        return struct.pack("ll", 0, 0)
    whole, fraction = divmod(max(seconds, 1e-6), 1.0)
    return struct.pack("ll", int(whole), max(int(fraction * 1_000_000), 0 if whole else 1))
