"""The host side of a worker: one object owns its whole life.

Start (a deliberate environment, the host's ``sys.path``, isolated mode),
handshake (versions, the same greeter-core both sides), log forwarding
(bounded), calls with a deadline for the whole call, crash detection,
restart with capped exponential backoff, a circuit breaker for a crash loop,
and a shutdown ladder (ask, then SIGTERM, then SIGKILL of the whole process
tree). The lessons of hashicorp/go-plugin and jupyter_client are noted where
they shaped the code. Everything the worker sends is untrusted data.
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
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

from ..api import API_VERSION, GROUP
from ..discovery import PluginInfo
from ..errors import (
    CircuitOpenError,
    GreeterError,
    HandshakeError,
    HostResourceError,
    PluginTimeoutError,
    ProtocolError,
    UsageError,
    WorkerCrashedError,
    WorkerLimitError,
    WorkerUnavailableError,
    describe,
    from_data,
    one_line,
)
from ..loaded import LoadedPlugin
from ..printable import printable
from . import tree
from .forkserver import BOOTSTRAP as FORK_BOOTSTRAP
from .forkserver import ForkedProcess, ForkServer
from .output import forward
from .protocol import (
    BYE,
    COOKIE,
    COOKIE_ENV,
    ERROR,
    GREET,
    HELLO,
    MAX_FRAME,
    OK,
    PROTOCOL_VERSION,
    SENDABLE_ERRORS,
    Channel,
    FrameTooLarge,
    Limits,
    check_hello,
    core_identity,
    decode_json,
    decode_text,
)
from .sandbox import SIMULATE_ENV, Sandbox, Status, make_scratch, needed_paths, remove_scratch

__all__ = [
    "WORKER_ENV",
    "WORKER_ENV_PREFIXES",
    "WorkerPlugin",
    "next_backoff",
    "worker_command",
    "worker_environment",
    "worker_sys_path",
]

log = logging.getLogger(__name__)

#: First pause before restarting a crashed worker; doubles per crash up to the cap.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
#: A worker that stayed up this long resets the backoff (jupyter_client's rule).
STABLE_AFTER = 10.0
#: How long each rung of the shutdown ladder waits.
GRACE = 1.0
#: The circuit breaker: after this many crashes within CIRCUIT_WINDOW seconds no worker is started
#: for CIRCUIT_WINDOW seconds; then one is tried, and one more crash opens the circuit again.
CIRCUIT_CRASHES = 5
CIRCUIT_WINDOW = 60.0

#: The host's environment variables a worker gets: what Python, the locale and an ordinary plugin
#: need (go-plugin's SkipHostEnv, as an allow-list). Never greeter's own settings or secrets; pass
#: more with ``--worker-env NAME`` (``worker_env=`` in the API).
WORKER_ENV = frozenset(
    {"HOME", "LANG", "LANGUAGE", "LOGNAME", "PATH", "SHELL", "TEMP", "TERM", "TMP", "TMPDIR", "TZ", "USER"}
)
WORKER_ENV_PREFIXES = ("LC_", "XDG_")

#: The worker's first line of Python: the host's sys.path, then the worker itself.
BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from greeter_core.worker.keeper import start; sys.exit(start(sys.argv[2:]))"
)

_live: weakref.WeakSet[WorkerPlugin] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Workers notice a vanished host on their own; this just makes it immediate.
    for client in list(_live):
        client.close()


def worker_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: the allow-listed host variables, then *extra*."""
    env = {k: v for k, v in os.environ.items() if k in WORKER_ENV or k.startswith(WORKER_ENV_PREFIXES)}
    env.update(extra or {})
    env[COOKIE_ENV] = COOKIE
    return env


def worker_sys_path() -> list[str]:
    """The host's ``sys.path`` for a worker, made absolute, without the current directory that Python put first.

    ``-c``, ``-m`` and a script started from here put the current directory
    first on the host's path; a worker imports what the host runs and what is
    installed, not whatever lies where greeter was started. Entries the user
    set (``PYTHONPATH``, ``.pth`` files) are kept, and so is the directory of
    the host's own greeter-core (first, if it was not on the path at all).
    """
    core = os.path.dirname(core_identity()["location"])
    here = os.getcwd()
    explicit = {os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    paths: list[str] = []
    for index, entry in enumerate(sys.path):
        path = os.path.abspath(entry) if entry else here
        implicit = index == 0 and path == here and path not in explicit and path != core
        if not implicit and path not in paths:
            paths.append(path)
    return paths if core in paths else [core, *paths]


def worker_command(sys_path: Sequence[str], bootstrap: str = BOOTSTRAP) -> list[str]:
    """How a worker is started: this interpreter in isolated mode (no current directory, no ``PYTHON*``
    variables, no user site), given *sys_path*; the channel's fd is appended. A fork server is started
    alike, with its own *bootstrap*."""
    flags = ["-I"]
    if sys.flags.dont_write_bytecode:
        flags.append("-B")
    if sys.flags.utf8_mode:
        flags += ["-X", "utf8"]
    return [sys.executable, *flags, "-c", bootstrap, json.dumps(list(sys_path))]


class WorkerPlugin(LoadedPlugin):
    """A plugin running in a worker process: the same ``greet()`` as in process, a crash-proof host.

    A failed call raises a :class:`GreeterError` (the worker crashed, timed
    out, went over a limit, broke the protocol, or the plugin raised); the
    next call starts a fresh worker, unless repeated crashes put it in
    backoff (:class:`WorkerUnavailableError`) or opened its circuit
    (:class:`CircuitOpenError`), when calls fail at once without starting one.
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
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        forkserver: ForkServer | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.driver = plugin.name
        self.language = ""
        self._plugin = plugin
        self.config = dict(config or {})
        self.verify = verify
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout if start_timeout is not None else max(10.0, call_timeout)
        self.limits = limits or Limits()
        self.extra_env = dict(env or {})
        self.command = list(command) if command else None
        #: Where workers are forked from (None, or when it cannot: a fresh interpreter each).
        self.forkserver = forkserver
        #: How each worker is confined (mode, grants, file size): see :mod:`~greeter_core.worker.sandbox`.
        self.sandbox = sandbox or Sandbox()
        #: What the running worker said is in force, once it said so.
        self.sandbox_status: Status | None = None
        self._scratch = ""
        self.restarts = 0
        self.crashes = 0
        self.last_exit: str | None = None
        self._logger = logging.getLogger(f"{GROUP}.{self.driver}")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._forked_by: int | None = None  # the pid of the fork server that forked the running worker
        self._channel: Channel | None = None
        self._worker_pid: int | None = None
        self._readers: list[threading.Thread] = []
        self._started_at = 0.0
        self._backoff = 0.0  # the first crash waits BACKOFF_BASE
        self._next_start = 0.0
        self._crash_times: deque[float] = deque()
        self._circuit_until = 0.0
        self._circuit_crashes = 0
        self._trial = False  # the circuit's window passed: one worker is tried
        self._recovering = False  # crashed since the last answered greeting
        self._closed = False

    @property
    def plugin(self) -> PluginInfo:
        """The record the worker loaded, as the host resolved it and the worker confirmed it."""
        return self._plugin

    # -- life cycle ---------------------------------------------------------

    def start(self) -> WorkerPlugin:
        """Start the worker and complete the handshake; raise the plugin's load error if any."""
        with self._lock:
            self._spawn()
        return self

    def close(self) -> None:
        """Stop the worker (ask, then SIGTERM, then SIGKILL of its whole tree); safe to call twice."""
        self._closed = True
        if not self._lock.acquire(timeout=GRACE):
            proc = self._proc
            if proc is not None:
                _kill_tree(proc)  # a call is stuck: end it, so the lock comes free
            self._lock.acquire()
        try:
            self._stop(polite=True)
        finally:
            self._lock.release()
        _live.discard(self)

    def retire(self) -> None:
        """Close it in a thread of its own: whoever replaced it goes on at once (the host's exit still waits)."""
        threading.Thread(target=self.close, name=f"greeter-retire-{self.driver}", daemon=True).start()

    def status(self) -> dict[str, object]:
        """State, pid, restarts, crashes, the circuit and the limits, for ``/status`` and ``greeter check``."""
        now = time.monotonic()
        running = self._proc is not None
        if self._closed:
            state = "closed"
        elif running:
            state = "running"
        elif self._circuit_until > now:
            state = "circuit-open"
        elif self._next_start > now:
            state = "backoff"
        else:
            state = "stopped"
        retry_at = self._circuit_until if self._circuit_until > now else self._next_start
        return {
            "state": state,
            "pid": self._worker_pid if running else None,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_exit": self.last_exit,
            "circuit": "open" if self._circuit_until > now else "half-open" if self._trial else "closed",
            "retry_in": round(max(0.0, retry_at - now), 3) if not running else 0.0,
            "limits": self.limits._asdict(),
            "forkserver": self._forked_by if running else None,
            "sandbox": self._sandbox_report(running),
        }

    def _sandbox_report(self, running: bool) -> dict[str, object]:
        """The grants, what the worker said is in force, and what the kernel shows of it (not the worker's word)."""
        report: dict[str, object] = {"mode": self.sandbox.mode, "grants": self.sandbox.grants.to_data()}
        status = self.sandbox_status
        if status is not None:
            report.update(state=status.state, in_force=list(status.in_force), missing=list(status.missing))
            report["line"] = status.line()
        if running and self._worker_pid is not None:
            report["kernel"] = _proc_status(self._worker_pid, ("Seccomp", "NoNewPrivs", "CapEff"))
        return report

    # -- calls ----------------------------------------------------------------

    def greet(self, name: str) -> str:
        try:
            request = name.encode()
        except UnicodeEncodeError:  # a lone surrogate: carried as is
            request = name.encode("utf-8", "surrogatepass")
        if len(request) >= MAX_FRAME:
            raise UsageError(f"a name of {len(request)} bytes is over the 16 MiB limit of --isolation process")
        with self._lock:
            channel = self._channel or self._ready()
            try:
                kind, payload = channel.call(GREET, request, self.call_timeout)
            except TimeoutError:
                self._stop(polite=False)
                self._crashed(f"killed after {self.call_timeout:g} s without an answer")
                raise PluginTimeoutError(self.driver, self._plugin, self.call_timeout) from None
            except (EOFError, OSError):
                raise self._ended() from None
            except (FrameTooLarge, ValueError) as error:
                raise self._broke_protocol(str(error)) from None
            except BaseException:
                # Interrupted mid-call (Ctrl-C, SIGTERM): the channel is out of step, and the
                # user is waiting: kill the worker's tree now, no polite ladder.
                self._stop(polite=False)
                raise
            if kind == OK:
                try:
                    text = payload.decode()  # strict first: the faster path, and it fails on surrogates only
                except UnicodeDecodeError:
                    try:
                        text = decode_text(payload)
                    except UnicodeDecodeError:
                        raise self._broke_protocol("a greeting that is not UTF-8") from None
                if self._recovering:
                    self._recovered()
                # The worker applied the one-line rule; a plugin may have forged the frame.
                return text if text.isprintable() else printable(text)
            if kind == ERROR:
                reported = self._error_from(payload)
                if isinstance(reported, WorkerLimitError):  # the worker exits after saying so
                    self._stop(polite=False)
                    self._crashed(reported.what)
                raise reported
            raise self._broke_protocol(f"a frame of unknown kind {kind}")

    # -- internals -----------------------------------------------------------

    def _ready(self) -> Channel:
        """A running worker's channel: start a fresh worker, unless backoff or the circuit forbids it."""
        now = time.monotonic()
        if self._closed:
            raise WorkerCrashedError(self.driver, self._plugin, "the worker was closed")
        if self._circuit_until > now:
            raise CircuitOpenError(
                self.driver, self._plugin, self._circuit_crashes, CIRCUIT_WINDOW, self._circuit_until - now
            )
        if self._next_start > now:
            raise WorkerUnavailableError(self.driver, self._plugin, str(self.last_exit), self._next_start - now)
        if self._circuit_until:
            self._circuit_until, self._trial = 0.0, True
        self.restarts += 1
        log.debug("starting a fresh worker for %s (restart %d)", describe(self.driver, self._plugin), self.restarts)
        try:
            self._spawn()
        except HostResourceError:
            raise  # the host's own shortage: not a crash of the plugin's worker
        except GreeterError as error:
            self._crashed(error.what if isinstance(error, WorkerCrashedError) else f"restart failed: {one_line(error)}")
            raise
        assert self._channel is not None
        return self._channel

    def _spawn(self) -> None:
        sys_path, env = worker_sys_path(), worker_environment(self.extra_env)
        box = self._confinement(sys_path)  # its scratch becomes TMPDIR and HOME in the worker, not in env:
        # env is what a fork server is keyed on, and one per worker would mean a fork server per worker
        with self._host_resources():
            host_end, worker_end = socket.socketpair()
        try:
            with self._host_resources(host_end):
                proc = self._forked(sys_path, env, worker_end) or subprocess.Popen(
                    [*(self.command or worker_command(sys_path)), str(worker_end.fileno())],
                    pass_fds=[worker_end.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    # Its own process group: terminal signals (Ctrl-C, Ctrl-Z) stay with the host.
                    # Not its own session: Linux schedules each session as a group of its own
                    # (autogroup); switching between groups cost each round trip ~1 µs (20-30%) here.
                    process_group=0,
                )
        finally:
            worker_end.close()
        self._forked_by = proc.server if isinstance(proc, ForkedProcess) else None
        self._proc, self._channel, self._worker_pid = proc, Channel(host_end), None
        self._started_at = time.monotonic()
        self._readers = [
            forward(proc.stdout, self._logger, "stdout"),  # type: ignore[arg-type]
            forward(proc.stderr, self._logger, "stderr"),  # type: ignore[arg-type]
        ]
        _live.add(self)
        try:
            self._handshake(sys_path, env, box)
        except BaseException:
            self._stop(polite=False)
            raise

    def _confinement(self, sys_path: list[str]) -> Sandbox:
        """This worker's sandbox: the template, what running the plugin needs to read, a fresh scratch directory."""
        remove_scratch(self._scratch)  # a previous worker's, if it ended without _stop
        if self.sandbox.mode == "off":
            self._scratch = ""
            return self.sandbox
        with self._host_resources():
            self._scratch = make_scratch(f"greeter-{self.driver}-")
        simulate = os.environ.get(SIMULATE_ENV, "")  # tests only: play an older kernel
        return self.sandbox._replace(read=needed_paths(sys_path), scratch=self._scratch, simulate=simulate)

    def _forked(self, sys_path: list[str], env: dict[str, str], channel: socket.socket) -> ForkedProcess | None:
        """The worker's keeper, forked by the fork server; None: start it cold (no fork server, or it failed)."""
        if self.forkserver is None or self.command is not None:
            return None
        return self.forkserver.fork(worker_command(sys_path, FORK_BOOTSTRAP), env, channel)

    @contextlib.contextmanager
    def _host_resources(self, *opened: socket.socket) -> Iterator[None]:
        """The host running out of descriptors or memory is the host's failure, never blamed on the plugin."""
        try:
            yield
        except OSError as error:
            for sock in opened:
                sock.close()
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS):
                raise WorkerCrashedError(self.driver, self._plugin, f"could not start a worker: {error}") from error
            raise HostResourceError(self.driver, self._plugin, "start a worker", str(error)) from error

    def _handshake(self, sys_path: list[str], env: dict[str, str], box: Sandbox) -> None:
        channel = self._channel
        assert channel is not None
        channel.set_send_timeout(max(self.call_timeout, 1.0))
        channel.send_json(
            HELLO,
            {
                "protocol": PROTOCOL_VERSION,
                "api_version": API_VERSION,
                "core": core_identity(),
                "plugin": self._plugin._asdict(),
                "config": self.config,
                "verify": self.verify,
                "log_level": min(self._logger.getEffectiveLevel(), logging.getLogger().getEffectiveLevel()),
                "limits": self.limits._asdict(),
                "sys_path": sys_path,
                "env": env,
                "sandbox": box.to_data(),
            },
        )
        try:
            kind, payload = channel.recv(self.start_timeout)
        except TimeoutError:
            raise HandshakeError(
                self.driver, self._plugin, f"the worker did not answer within {self.start_timeout:g} s of starting"
            ) from None
        except (EOFError, OSError):
            raise self._ended(counted=False, when=" before the handshake") from None
        except (FrameTooLarge, ValueError) as error:
            raise ProtocolError(self.driver, self._plugin, str(error)) from None
        if kind == ERROR:
            raise self._error_from(payload, counted=False)
        try:
            hello = decode_json(payload) if kind == HELLO else None
        except ValueError as error:
            raise ProtocolError(self.driver, self._plugin, f"a malformed hello: {error}") from None
        problem = check_hello(hello, peer="worker", me="host") if kind == HELLO else "expected the worker's hello"
        if problem is None:
            assert isinstance(hello, dict)
            if hello.get("plugin") != self._plugin._asdict():
                problem = f"the worker loaded {str(hello.get('plugin'))[:200]}, not {self._plugin._asdict()}"
            elif not isinstance(hello.get("language"), str) or type(hello.get("pid")) is not int:
                problem = "the worker's hello lacks its language or its pid"
        if problem is None:
            assert isinstance(hello, dict)
            try:
                status = Status.from_data(hello.get("sandbox"))
            except (ValueError, KeyError, TypeError):
                problem = "the worker's hello lacks what its sandbox put in force"
        if problem:
            raise HandshakeError(self.driver, self._plugin, problem)
        assert isinstance(hello, dict)
        self.language = printable(hello["language"][:200])
        self._worker_pid = hello["pid"]
        if status != self.sandbox_status:  # once per change, not per restart
            level = logging.INFO if status.state == "full" or status.mode == "off" else logging.WARNING
            grants = self.sandbox.grants.describe()
            line = f"{status.line()}; grants: {grants}" if grants else status.line()
            log.log(level, "%s: %s", describe(self.driver, self._plugin), printable(line))
        self.sandbox_status = status

    def _error_from(self, payload: bytes, *, counted: bool = True) -> GreeterError:
        """The error a worker reported, rebuilt as data naming *this* plugin; anything else breaks the protocol."""
        try:
            data = decode_json(payload)
            kind = data.get("kind") if isinstance(data, dict) else None
            if kind not in SENDABLE_ERRORS:
                raise ValueError(f"a worker may not report {str(kind)[:80]!r}")
            return from_data(data, driver=self.driver, plugin=self._plugin)
        except ValueError as error:
            problem = f"a malformed error: {error}"
            if not counted:
                return ProtocolError(self.driver, self._plugin, problem)
            return self._broke_protocol(problem)

    def _broke_protocol(self, problem: str) -> ProtocolError:
        """Stop a worker that sent what the protocol does not allow; it counts as a crash."""
        self._stop(polite=False)
        error = ProtocolError(self.driver, self._plugin, problem)
        self._crashed(error.what)
        return error

    def _ended(self, *, counted: bool = True, when: str = "") -> WorkerCrashedError:
        """The worker closed its channel: reap it, say how it ended (by name when it was a limit)."""
        proc = self._proc
        assert proc is not None
        try:
            code: int | None = proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            code = None
        self._stop(polite=False)
        if code == -signal.SIGXCPU and self.limits.cpu_seconds:
            error: WorkerCrashedError = WorkerLimitError(self.driver, self._plugin, self.limits.name("cpu"))
        else:
            what = "closed its channel and stopped answering; it was killed" if code is None else _describe_exit(code)
            error = WorkerCrashedError(self.driver, self._plugin, what + when)
        if counted:
            self._crashed(error.what)
        else:
            self.last_exit = error.what
        return error

    def _crashed(self, what: str) -> None:
        """Count a crash: back off before the next start, and open the circuit after too many."""
        now = time.monotonic()
        self.crashes += 1
        self.last_exit = what
        self._recovering = True
        self._backoff = next_backoff(self._backoff, now - self._started_at)
        self._next_start = now + self._backoff
        self._crash_times.append(now)
        while now - self._crash_times[0] > CIRCUIT_WINDOW:
            self._crash_times.popleft()
        if self._trial or len(self._crash_times) >= CIRCUIT_CRASHES:
            self._trial = False
            self._circuit_crashes = len(self._crash_times)
            self._circuit_until = now + CIRCUIT_WINDOW
            log.warning(
                "circuit open for %s after %d crashes in %g s (last: %s); no worker is started for %g s, "
                "or until a swap or a reload",
                describe(self.driver, self._plugin),
                self._circuit_crashes,
                CIRCUIT_WINDOW,
                what,
                CIRCUIT_WINDOW,
            )

    def _recovered(self) -> None:
        self._recovering = False
        if self._trial:
            self._trial = False
            self._crash_times.clear()
        log.info(
            "%s answers again: worker %s is up after %d crash(es)",
            describe(self.driver, self._plugin),
            self._worker_pid,
            self.crashes,
        )

    def _stop(self, *, polite: bool) -> None:
        proc, channel, worker = self._proc, self._channel, self._worker_pid
        self._proc = self._channel = None
        if proc is None:
            remove_scratch(self._scratch)
            self._scratch = ""
            return
        try:
            if polite and proc.poll() is None and channel is not None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    channel.send(BYE)
                    proc.wait(timeout=GRACE)
                if proc.poll() is None and worker is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                        os.kill(worker, signal.SIGTERM)
                        proc.wait(timeout=GRACE)
            _kill_tree(proc)
            proc.wait()
        finally:
            if channel is not None:
                channel.close()
            for reader in self._readers:
                reader.join(timeout=GRACE)
            remove_scratch(self._scratch)  # the worker's tree is gone: nothing writes there any more
            self._scratch = ""


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


def _proc_status(pid: int, fields: Sequence[str]) -> dict[str, str]:
    """Fields of ``/proc/<pid>/status`` as the kernel shows them (what a worker cannot forge)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name in fields:
                found[name] = value.strip()
    return found


def _kill_tree(proc: subprocess.Popen[bytes] | ForkedProcess) -> None:
    """SIGKILL the worker's keeper and everything below it; then its process group, for good measure."""
    if proc.poll() is None:
        tree.kill_tree(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
