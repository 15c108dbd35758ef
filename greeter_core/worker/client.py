"""The host side of a worker: one object owns its whole life.

Start, handshake, log forwarding, calls with a deadline, crash detection,
restart with capped exponential backoff, and a shutdown ladder (ask, then
SIGTERM, then SIGKILL). The lessons of hashicorp/go-plugin and jupyter_client
are noted where they shaped the code.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

from ..api import API_VERSION, GROUP
from ..discovery import PluginInfo
from ..errors import GreeterError, HandshakeError, HostResourceError, PluginTimeoutError, WorkerCrashedError
from ..loaded import LoadedPlugin
from ..printable import printable
from .protocol import COOKIE, COOKIE_ENV, LOG_MARK, PROTOCOL_VERSION, Channel, check_hello

__all__ = ["WorkerPlugin"]

log = logging.getLogger(__name__)

#: First pause before restarting a crashed worker; doubles per crash up to the cap.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
#: A worker that stayed up this long resets the backoff (jupyter_client's rule).
STABLE_AFTER = 10.0
#: How long each rung of the shutdown ladder waits.
GRACE = 1.0

_live: weakref.WeakSet[WorkerPlugin] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Workers notice a vanished host on their own; this just makes it immediate.
    for client in list(_live):
        client.close()


class WorkerPlugin(LoadedPlugin):
    """A plugin running in a worker process: the same ``greet()`` as in process, a crash-proof host.

    A failed call raises a :class:`GreeterError` (the worker crashed, timed out,
    or the plugin raised); the next call starts a fresh worker, unless repeated
    crashes put it in backoff, when calls fail fast until the pause is over.
    """

    isolation = "process"

    def __init__(
        self,
        plugin: PluginInfo,
        *,
        config: Mapping[str, str] | None = None,
        verify: bool = False,
        call_timeout: float,
        start_timeout: float | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.driver = plugin.name
        self.language = ""
        self._plugin = plugin
        self.config = dict(config or {})
        self.verify = verify
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout if start_timeout is not None else max(10.0, call_timeout)
        self.command = list(command) if command else [sys.executable, "-m", "greeter_core.worker"]
        self.restarts = 0
        #: Workers that died or were killed (exit, signal, call timeout, failed start): /metrics counts them.
        self.crashes = 0
        self.last_exit: str | None = None
        self._logger = logging.getLogger(f"{GROUP}.{self.driver}")
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._readers: list[threading.Thread] = []
        self._started_at = 0.0
        self._backoff = 0.0  # the first crash waits BACKOFF_BASE
        self._next_start = 0.0
        self._closed = False

    @property
    def plugin(self) -> PluginInfo:
        """The record the worker loaded, as it reported it at the handshake."""
        return self._plugin

    # -- life cycle ---------------------------------------------------------

    def start(self) -> WorkerPlugin:
        """Start the worker and complete the handshake; raise the plugin's load error if any."""
        with self._lock:
            self._spawn()
        return self

    def close(self) -> None:
        """Stop the worker (ask, then SIGTERM, then SIGKILL); safe to call twice."""
        self._closed = True
        if not self._lock.acquire(timeout=GRACE):
            proc = self._proc
            if proc is not None:
                _kill_group(proc)  # a call is stuck: end it, so the lock comes free
            self._lock.acquire()
        try:
            self._stop(polite=True)
        finally:
            self._lock.release()
        _live.discard(self)

    def status(self) -> dict[str, object]:
        """State, pid, restarts and crashes, for ``/status`` and ``greeter check``."""
        proc = self._proc
        if self._closed:
            state = "closed"
        elif proc is not None:
            state = "running"
        elif self._next_start > time.monotonic():
            state = "backoff"
        else:
            state = "stopped"
        return {
            "state": state,
            "pid": proc.pid if proc is not None else None,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_exit": self.last_exit,
        }

    # -- calls ----------------------------------------------------------------

    def greet(self, name: str) -> str:
        with self._lock:
            if self._closed:
                raise WorkerCrashedError(self.driver, self._plugin, "the worker was closed")
            if self._proc is None:
                self._restart()
            assert self._channel is not None
            try:
                self._channel.send(("greet", name))
                op, value = self._channel.recv()
            except TimeoutError:
                self._stop(polite=False)
                self.last_exit = f"killed after {self.call_timeout:g} s without an answer"
                self._note_crash()
                raise PluginTimeoutError(self.driver, self._plugin, self.call_timeout) from None
            except (EOFError, OSError):
                self.last_exit = self._reap()
                self._note_crash()
                raise WorkerCrashedError(self.driver, self._plugin, self.last_exit) from None
            except BaseException:
                # Interrupted mid-call (Ctrl-C): the channel is out of step now.
                self._stop(polite=False)
                raise
        if op == "ok" and isinstance(value, str):
            return printable(value)  # the worker applied the one-line rule; a plugin may have forged the frame
        if op == "error" and isinstance(value, GreeterError):
            raise value
        raise HandshakeError(self.driver, self._plugin, f"unexpected reply {op!r} from the worker")

    # -- internals -----------------------------------------------------------

    def _restart(self) -> None:
        wait = self._next_start - time.monotonic()
        if wait > 0:
            raise WorkerCrashedError(
                self.driver, self._plugin, f"{self.last_exit}; restarting it in {wait:.1f} s (backoff)"
            )
        self.restarts += 1
        log.info("starting a fresh worker for plugin %r (restart %d)", self.driver, self.restarts)
        try:
            self._spawn()
        except GreeterError:
            self._note_crash()
            raise

    def _spawn(self) -> None:
        with self._host_resources():
            host_end, worker_end = socket.socketpair()
        try:
            with self._host_resources(host_end):
                proc = subprocess.Popen(
                    [*self.command, str(worker_end.fileno())],
                    pass_fds=[worker_end.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ, COOKIE_ENV: COOKIE},
                    # Its own process group: terminal signals stay with the host,
                    # and killing the group also ends anything the plugin started.
                    start_new_session=True,
                )
        finally:
            worker_end.close()
        self._proc, self._channel = proc, Channel(host_end)
        self._started_at = time.monotonic()
        self._readers = [
            _forward(proc.stdout, self._logger, "stdout"),  # type: ignore[arg-type]
            _forward(proc.stderr, self._logger, "stderr"),  # type: ignore[arg-type]
        ]
        _live.add(self)
        try:
            self._handshake()
        except BaseException:
            self._stop(polite=False)
            raise

    @contextlib.contextmanager
    def _host_resources(self, *opened: socket.socket) -> Iterator[None]:
        """The host running out of descriptors or memory is the host's failure, never blamed on the plugin."""
        try:
            yield
        except OSError as error:
            for sock in opened:
                sock.close()
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS):
                raise
            raise HostResourceError(self.driver, self._plugin, "start a worker", str(error)) from error

    def _handshake(self) -> None:
        assert self._channel is not None
        self._channel.set_timeout(self.start_timeout)
        self._channel.send(
            (
                "hello",
                {
                    "protocol": PROTOCOL_VERSION,
                    "api_version": API_VERSION,
                    "plugin": self._plugin._asdict(),
                    "config": self.config,
                    "verify": self.verify,
                    "log_level": min(self._logger.getEffectiveLevel(), logging.getLogger().getEffectiveLevel()),
                    "sys_path": list(sys.path),
                },
            )
        )
        try:
            op, value = self._channel.recv()
        except TimeoutError:
            raise HandshakeError(
                self.driver, self._plugin, f"the worker did not answer within {self.start_timeout:g} s of starting"
            ) from None
        except EOFError:
            self.last_exit = self._reap()
            raise WorkerCrashedError(self.driver, self._plugin, f"{self.last_exit} before the handshake") from None
        if op == "error" and isinstance(value, GreeterError):
            raise value
        problem = check_hello(op, value, peer="worker", me="host")
        if problem:
            raise HandshakeError(self.driver, self._plugin, problem)
        self._plugin = PluginInfo(**value["plugin"])
        self.language = str(value.get("language", ""))
        self._channel.set_timeout(self.call_timeout)

    def _note_crash(self) -> None:
        self.crashes += 1
        self._backoff = next_backoff(self._backoff, time.monotonic() - self._started_at)
        self._next_start = time.monotonic() + self._backoff

    def _reap(self) -> str:
        """Wait for a worker whose channel closed; say how it ended."""
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=GRACE * 5)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = proc.wait()
            self._stop(polite=False)
            return "closed its channel and stopped answering; it was killed"
        self._stop(polite=False)
        return _describe_exit(code)

    def _stop(self, *, polite: bool) -> None:
        proc, channel = self._proc, self._channel
        self._proc = self._channel = None
        if proc is None:
            return
        if polite and proc.poll() is None and channel is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                channel.send(("bye", None))
                proc.wait(timeout=GRACE)
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=GRACE if polite else 0.1)
        _kill_group(proc)
        proc.wait()
        if channel is not None:
            channel.close()
        for reader in self._readers:
            reader.join(timeout=GRACE)


def next_backoff(previous: float, uptime: float) -> float:
    """The pause before restarting a worker that crashed after *uptime* seconds."""
    if uptime >= STABLE_AFTER or previous <= 0:
        return BACKOFF_BASE
    return min(previous * 2, BACKOFF_CAP)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"worker killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _forward(stream: IO[bytes], logger: logging.Logger, name: str) -> threading.Thread:
    """Drain one of the worker's output pipes into the host's logging, for the worker's life."""

    def pump() -> None:
        fatal = False
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(LOG_MARK):
                try:
                    level, logger_name, message = json.loads(line[len(LOG_MARK) :])
                    logging.getLogger(logger_name).log(level, "%s", message)
                    continue
                except (ValueError, TypeError):
                    pass
            fatal = fatal or line.startswith("Fatal Python error")
            logger.log(logging.ERROR if fatal else logging.WARNING, "%s: %s", name, line)
        stream.close()

    thread = threading.Thread(target=pump, name=f"greeter-worker-{name}", daemon=True)
    thread.start()
    return thread
