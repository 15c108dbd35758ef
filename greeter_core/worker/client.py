"""The host side of a worker: :class:`Worker` owns one worker's life, :class:`WorkerPlugin` replaces it.

A :class:`Worker` (go-plugin's ``Client``) is one process: start (a
deliberate environment, the host's ``sys.path``, isolated mode), handshake
(versions, the same greeter-core both sides), log forwarding (bounded),
calls with a deadline for the whole call, and a shutdown ladder (ask, then
SIGTERM, then SIGKILL of the whole process tree). :class:`WorkerPlugin` is
what a caller holds: it starts a fresh worker after a crash when its
:class:`~greeter_core.worker.supervision.Supervisor` allows (backoff, the
circuit breaker). Everything the worker sends is untrusted data, read in one
place (:meth:`Worker._receive`); a number a worker reports (its pid) is never
signalled: the host knows its worker's processes from the keeper only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes  # noqa: F401  (guard.undumpable's; loaded with the client, not by a start short of descriptors)
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from ..api import GROUP
from ..discovery import PluginInfo
from ..environments import worker_sys_path as environment_sys_path
from ..errors import (
    GreeterError,
    HandshakeError,
    HostResourceError,
    PluginTimeoutError,
    ProtocolError,
    UsageError,
    WorkerCrashedError,
    WorkerLimitError,
    describe,
    one_line,
)
from ..guard import undumpable
from ..loaded import LoadedPlugin
from ..printable import printable
from . import tree
from .cgroup import TreeGroup, process_bound
from .codec import decode_json, read_error
from .forkserver import BOOTSTRAP as FORK_BOOTSTRAP
from .forkserver import ForkedProcess, ForkServer, describe_exit
from .keeper import OVER_PROCESSES
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
    Channel,
    FrameTooLarge,
    Limits,
    WorkerHello,
    WorkerSpec,
    core_identity,
    decode_text,
    encode_text,
)
from .sandbox import SIMULATE_ENV, Sandbox, Status, make_scratch, needed_paths, plugin_location, remove_scratch
from .supervision import Supervision, Supervisor

__all__ = [
    "WORKER_ENV",
    "WORKER_ENV_PREFIXES",
    "Worker",
    "WorkerPlugin",
    "worker_command",
    "worker_environment",
    "worker_sys_path",
]

log = logging.getLogger(__name__)

#: How long each rung of the shutdown ladder waits.
GRACE = 1.0

_T = TypeVar("_T")

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


class Worker:
    """One worker process, from its start to its end: go-plugin's ``Client``. It never starts another.

    :meth:`start` spawns it (forked by the fork server, or cold) and shakes
    hands; :meth:`call` sends one greeting; :meth:`stop` ends it. A failure
    that spends the worker (it ended, timed out, broke the protocol, went
    over a limit) stops it and leaves how in :attr:`ended`; any other failure
    is the plugin's, and the worker serves on. Not thread-safe: its owner
    holds a lock around it.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        logger: logging.Logger,
        *,
        call_timeout: float,
        start_timeout: float,
        command: Sequence[str] | None = None,
        forkserver: ForkServer | None = None,
    ) -> None:
        self.spec = spec
        self.plugin = spec.plugin
        self.driver = spec.plugin.name
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.command = list(command) if command else None
        self.forkserver = forkserver
        self.language = ""
        #: The pid its hello gave, once checked to be a process of its keeper's tree: shown, never signalled.
        self.pid: int | None = None
        #: The pid of the fork server that forked it (None: started cold).
        self.forked_by: int | None = None
        #: How it ended, once a failure ended it.
        self.ended: str | None = None
        #: What its sandbox put in force, as its hello said.
        self.sandbox: Status | None = None
        self.started_at = 0.0
        self._logger = logger
        self._proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._channel: Channel | None = None
        self._readers: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> Worker:
        """Start the process and complete the handshake; raise (the worker stopped) if either fails."""
        env = self.spec.env
        try:
            with self._host_resources():
                undumpable()  # before any worker runs: the host's memory, environment, descriptors out of its reach
                host_end, worker_end = socket.socketpair()
        except BaseException:
            remove_scratch(self.spec.sandbox.scratch)
            raise
        try:
            with self._host_resources(host_end):
                proc = self._forked(worker_end) or subprocess.Popen(
                    [*(self.command or worker_command(self.spec.sys_path)), *self._keeper_args(worker_end)],
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
        except BaseException:
            remove_scratch(self.spec.sandbox.scratch)
            raise
        finally:
            worker_end.close()
        self.forked_by = proc.server if isinstance(proc, ForkedProcess) else None
        self._proc, self._channel = proc, Channel(host_end)
        self.started_at = time.monotonic()
        self._readers = [
            forward(proc.stdout, self._logger, "stdout"),  # type: ignore[arg-type]
            forward(proc.stderr, self._logger, "stderr"),  # type: ignore[arg-type]
        ]
        try:
            hello = self._receive(self._handshake, self._silent, " before the handshake")
        except BaseException:
            self.stop(polite=False)
            raise
        self.language = printable(hello.language[:200])
        self.pid = hello.pid
        self.sandbox = hello.sandbox
        return self

    def call(self, request: bytes, timeout: float) -> str:
        """One greeting, its whole round trip within *timeout* seconds."""
        channel = self._channel
        if channel is None:
            raise WorkerCrashedError(self.driver, self.plugin, self.ended or "the worker was stopped")
        self.call_timeout = timeout
        return self._receive(self._greeting, self._hung, "", channel, request)

    def stop(self, *, polite: bool) -> None:
        """End the worker: *polite*, ask it first (then SIGTERM its processes, then SIGKILL them); safe twice.

        The processes signalled are those under its keeper, which the host
        started (or holds a pidfd of): never a pid the worker reported.
        """
        proc, channel = self._proc, self._channel
        self._proc = self._channel = None
        if proc is None:
            return
        try:
            if polite and proc.poll() is None and channel is not None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    channel.send(BYE)
                    proc.wait(timeout=GRACE)
                if proc.poll() is None:
                    for pid in tree.descendants(proc.pid):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=GRACE)
            _kill_tree(proc)
            proc.wait()
        finally:
            if channel is not None:
                channel.close()
            for reader in self._readers:
                reader.join(timeout=GRACE)
            remove_scratch(self.spec.sandbox.scratch)  # its tree is gone: nothing writes there any more

    def kill(self) -> None:
        """SIGKILL the whole tree now, from any thread (a call stuck in it returns)."""
        proc = self._proc
        if proc is not None:
            _kill_tree(proc)

    # -- what the worker sent: read in one place ------------------------------------------------------

    def _receive(self, read: Callable[..., _T], timed_out: Callable[[], GreeterError], when: str, *args: object) -> _T:
        """What *read* got from the worker, read and decoded; each way that fails is this worker's error, here only.

        A reported error (rebuilt from its frame) leaves as it is; a deadline
        missed is *timed_out*'s error, a closed channel the worker's end,
        anything else at all while reading or decoding (a frame too large, not
        UTF-8, not JSON, nested too deep) a protocol error; each of these stops
        the worker. Interrupted (Ctrl-C, SIGTERM), the channel is out of step:
        the worker is killed at once, no polite ladder.
        """
        try:
            return read(*args)
        except ProtocolError as error:  # what the codec makes of anything it could not read
            raise self._spent(error) from None
        except GreeterError:
            raise
        except TimeoutError:
            raise self._spent(timed_out()) from None
        except (EOFError, OSError):
            raise self._exited(when) from None
        except Exception as error:
            problem = str(error) if isinstance(error, (ValueError, FrameTooLarge)) else one_line(error)
            raise self._spent(ProtocolError(self.driver, self.plugin, problem[:500])) from None
        except BaseException:
            self.stop(polite=False)
            raise

    def _handshake(self) -> WorkerHello:
        channel = self._channel
        assert channel is not None and self._proc is not None
        channel.set_send_timeout(max(self.call_timeout, 1.0))
        channel.send_json(HELLO, self.spec.encode())
        kind, payload = channel.recv(self.start_timeout)
        if kind == ERROR:
            raise self._reported(payload)
        if kind != HELLO:
            raise HandshakeError(self.driver, self.plugin, "expected the worker's hello")
        try:
            data = decode_json(payload)
        except ValueError as error:
            raise ValueError(f"a malformed hello: {error}") from None
        try:
            hello = WorkerHello.decode(data, peer="worker", me="host")
        except ValueError as error:
            raise HandshakeError(self.driver, self.plugin, str(error)) from None
        if hello.plugin != self.plugin:
            problem = f"the worker loaded {str(hello.plugin._asdict())[:200]}, not {self.plugin._asdict()}"
            raise HandshakeError(self.driver, self.plugin, problem)
        if hello.pid != self._proc.pid and hello.pid not in tree.descendants(self._proc.pid):
            problem = f"the worker's hello claims pid {hello.pid}, which is no process under its keeper"
            raise HandshakeError(self.driver, self.plugin, problem)
        return hello

    def _greeting(self, channel: Channel, request: bytes) -> str:
        kind, payload = channel.call(GREET, request, self.call_timeout)
        if kind == OK:
            text = decode_text(payload)
            # The worker applied the one-line rule; a plugin may have forged the frame.
            return text if text.isprintable() else printable(text)
        if kind == ERROR:
            reported = self._reported(payload)
            if isinstance(reported, WorkerLimitError):  # the worker exits after saying so
                raise self._spent(reported)
            raise reported
        raise ValueError(f"a frame of unknown kind {kind}")

    def _reported(self, payload: bytes) -> GreeterError:
        """The error a worker reported, rebuilt as data naming *this* plugin; ``ProtocolError`` if it may not."""
        return read_error(payload, driver=self.driver, plugin=self.plugin)

    def _silent(self) -> GreeterError:
        return HandshakeError(
            self.driver, self.plugin, f"the worker did not answer within {self.start_timeout:g} s of starting"
        )

    def _hung(self) -> GreeterError:
        self.ended = f"killed after {self.call_timeout:g} s without an answer"
        return PluginTimeoutError(self.driver, self.plugin, self.call_timeout)

    def _spent(self, error: GreeterError) -> GreeterError:
        """Stop the worker *error* ended (a timeout, a broken protocol, a limit) and remember how."""
        self.stop(polite=False)
        self.ended = self.ended or str(getattr(error, "what", "")) or one_line(error)
        return error

    def _exited(self, when: str) -> WorkerCrashedError:
        """The worker closed its channel: reap it, say how it ended (by name when it was a limit)."""
        proc = self._proc
        assert proc is not None
        try:
            code: int | None = proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            code = None
        self.stop(polite=False)
        if code == -signal.SIGXCPU and self.spec.limits.cpu_seconds:
            error: WorkerCrashedError = WorkerLimitError(self.driver, self.plugin, self.spec.limits.name("cpu"))
        elif code == OVER_PROCESSES and self.spec.limits.processes:  # its keeper counted too many
            error = WorkerLimitError(self.driver, self.plugin, self.spec.limits.name("processes"))
        else:
            how = "closed its channel and stopped answering; it was killed"
            if code is not None:
                how = f"worker {describe_exit(code)}"
            error = WorkerCrashedError(self.driver, self.plugin, how + when)
        self.ended = error.what
        return error

    def _keeper_args(self, channel: socket.socket) -> list[str]:
        """What a cold start's first process is told (:func:`greeter_core.worker.keeper.start`): the channel's fd,
        and the scratch directory, which its keeper removes too once the tree is gone (a killed host cannot)."""
        scratch = self.spec.sandbox.scratch
        return [str(channel.fileno()), scratch] if scratch else [str(channel.fileno())]

    def _forked(self, channel: socket.socket) -> ForkedProcess | None:
        """The worker's keeper, forked by the fork server; None: start it cold (no fork server, or it failed).

        The fork server runs the host's ``sys.path`` (its preload is the host's greeter-core and
        stevedore, what an environment of its own is provided with); the worker's own comes in its spec.
        """
        if self.forkserver is None or self.command is not None:
            return None
        command = worker_command(worker_sys_path(), FORK_BOOTSTRAP)
        return self.forkserver.fork(command, self.spec.env, channel, self.spec.sandbox.scratch)

    @contextlib.contextmanager
    def _host_resources(self, *opened: socket.socket) -> Iterator[None]:
        """The host running out of descriptors or memory is the host's failure, never blamed on the plugin."""
        try:
            yield
        except OSError as error:
            for sock in opened:
                sock.close()
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS):
                raise WorkerCrashedError(self.driver, self.plugin, f"could not start a worker: {error}") from error
            raise HostResourceError(self.driver, self.plugin, "start a worker", str(error)) from error


class WorkerPlugin(LoadedPlugin):
    """A plugin running in a worker process: the same ``greet()`` as in process, a crash-proof host.

    A failed call raises a :class:`GreeterError` (the worker crashed, timed
    out, went over a limit, broke the protocol, or the plugin raised); the
    next call starts a fresh :class:`Worker`, unless its *supervision* holds
    it back: repeated crashes put it in backoff
    (:class:`~greeter_core.errors.WorkerUnavailableError`) or opened its
    circuit (:class:`~greeter_core.errors.CircuitOpenError`), when calls fail
    at once without starting one.
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
        supervision: Supervision | None = None,
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
        self.supervisor = Supervisor(self.driver, plugin, supervision or Supervision())
        #: How each worker is confined (mode, grants, file size): see :mod:`~greeter_core.worker.sandbox`.
        self.sandbox = sandbox or Sandbox()
        #: What the last worker said its sandbox put in force.
        self.sandbox_status: Status | None = None
        self._logger = logging.getLogger(f"{GROUP}.{self.driver}")
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._closed = False

    @property
    def plugin(self) -> PluginInfo:
        """The record the worker loaded, as the host resolved it and the worker confirmed it."""
        return self._plugin

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts

    @property
    def crashes(self) -> int:
        return self.supervisor.crashes

    @property
    def last_exit(self) -> str | None:
        return self.supervisor.last_exit

    # -- life cycle ---------------------------------------------------------

    def start(self) -> WorkerPlugin:
        """Start the worker and complete the handshake; raise the plugin's load error if any."""
        with self._lock:
            self._start()
        return self

    def close(self) -> None:
        """Stop the worker (ask, then SIGTERM, then SIGKILL of its whole tree); safe to call twice."""
        self._closed = True
        if not self._lock.acquire(timeout=GRACE):
            worker = self._worker
            if worker is not None:
                worker.kill()  # a call is stuck: end it, so the lock comes free
            self._lock.acquire()
        try:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop(polite=True)
        finally:
            self._lock.release()
        _live.discard(self)

    def retire(self) -> None:
        """Close it in a thread of its own: whoever replaced it goes on at once (the host's exit still waits)."""
        threading.Thread(target=self.close, name=f"greeter-retire-{self.driver}", daemon=True).start()

    def status(self) -> dict[str, object]:
        """State, pid, restarts, crashes, the circuit and the limits, for ``/status`` and ``greeter check``."""
        worker = self._worker
        running = worker is not None and worker.running
        status = self.supervisor.status(running)
        if self._closed:
            status["state"] = "closed"
        return {
            "state": status.pop("state"),
            "pid": worker.pid if running and worker is not None else None,
            **status,
            "limits": {**self.limits._asdict(), "processes_bound_by": process_bound(self.limits.processes)},
            "forkserver": worker.forked_by if running and worker is not None else None,
            "sandbox": self._sandbox_report(worker.pid if running and worker is not None else None),
        }

    def _sandbox_report(self, pid: int | None) -> dict[str, object]:
        """The grants, what the worker said is in force, and what the kernel shows of it (not the worker's word)."""
        report: dict[str, object] = {"mode": self.sandbox.mode, "grants": self.sandbox.grants.to_data()}
        status = self.sandbox_status
        if status is not None:
            report.update(state=status.state, in_force=list(status.in_force), missing=list(status.missing))
            report["line"] = status.line()
        if pid is not None:
            report["kernel"] = _proc_status(pid, ("Seccomp", "NoNewPrivs", "CapEff"))
        return report

    # -- calls ----------------------------------------------------------------

    def greet(self, name: str) -> str:
        request = encode_text(name)
        if len(request) >= MAX_FRAME:
            raise UsageError(f"a name of {len(request)} bytes is over the 16 MiB limit of --isolation process")
        with self._lock:
            worker = self._worker if self._worker is not None and self._worker.running else self._ready()
            try:
                text = worker.call(request, self.call_timeout)
            except GreeterError:
                if not worker.running:  # the failure spent the worker: a crash
                    self._crashed(worker, str(worker.ended))
                raise
            if self.supervisor.recovering:
                self.supervisor.recovered()
                log.info(
                    "%s answers again: worker %s is up after %d crash(es)",
                    describe(self.driver, self._plugin),
                    worker.pid,
                    self.supervisor.crashes,
                )
            return text

    # -- internals -----------------------------------------------------------

    def _ready(self) -> Worker:
        """A fresh worker, unless the plugin was closed or its supervision forbids one now."""
        if self._closed:
            raise WorkerCrashedError(self.driver, self._plugin, "the worker was closed")
        self.supervisor.admit()
        log.debug(
            "starting a fresh worker for %s (restart %d)", describe(self.driver, self._plugin), self.supervisor.restarts
        )
        try:
            return self._start()
        except HostResourceError:
            raise  # the host's own shortage: not a crash of the plugin's worker
        except GreeterError as error:
            what = error.what if isinstance(error, WorkerCrashedError) else f"restart failed: {one_line(error)}"
            self.supervisor.crashed(what, 0.0)
            raise

    def _start(self) -> Worker:
        sys_path = environment_sys_path(self._plugin) if self._plugin.environment else worker_sys_path()
        spec = WorkerSpec(
            plugin=self._plugin,
            config=self.config,
            verify=self.verify,
            log_level=min(self._logger.getEffectiveLevel(), logging.getLogger().getEffectiveLevel()),
            limits=self.limits,
            sys_path=sys_path,
            env=worker_environment(self.extra_env),
            sandbox=self._confinement(sys_path),
        )
        worker = Worker(
            spec,
            self._logger,
            call_timeout=self.call_timeout,
            start_timeout=self.start_timeout,
            command=self.command,
            forkserver=self.forkserver,
        )
        _live.add(self)
        self._worker = worker.start()
        self.language = worker.language
        status = worker.sandbox
        if status is not None and status != self.sandbox_status:  # once per change, not per restart
            grants = self.sandbox.grants.describe()
            line = f"{status.line()}; grants: {grants}" if grants else status.line()
            level = logging.INFO if status.state == "full" or status.mode == "off" else logging.WARNING
            log.log(level, "%s: %s", describe(self.driver, self._plugin), printable(line))
        self.sandbox_status = status
        return worker

    def _confinement(self, sys_path: list[str]) -> Sandbox:
        """A worker's sandbox: the template, what running the plugin needs to read, a fresh scratch directory.

        The scratch becomes the worker's TMPDIR and HOME in the worker, not in its
        environment here: a fork server is keyed on that environment.
        """
        if self.sandbox.mode == "off":
            return self.sandbox
        try:
            read = (*needed_paths(sys_path), *plugin_location(self._plugin.target))  # an editable install's too
            scratch = make_scratch(f"greeter-{self.driver}-")
        except OSError as error:  # the host's own shortage (descriptors, disk), never the plugin's
            raise HostResourceError(self.driver, self._plugin, "start a worker", str(error)) from error
        simulate = os.environ.get(SIMULATE_ENV, "")  # tests only: play an older kernel
        return self.sandbox._replace(read=read, scratch=scratch, simulate=simulate)

    def _crashed(self, worker: Worker, what: str) -> None:
        self.supervisor.crashed(what, time.monotonic() - worker.started_at)
        self._worker = None


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
    """SIGKILL the worker's keeper and everything below it; then its process group, for good measure.

    A keeper already gone (a plugin may kill it) leaves its tree's cgroup, named after it: ended here.
    """
    if proc.poll() is None:
        tree.kill_tree(proc.pid)
    else:
        group = TreeGroup.paths(proc.pid)
        if group is not None:
            group.end()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
