"""``greeter run``: the greeting loop and the swappable driver slot it greets through.

The Go original kept one ``greeter`` variable that an HTTP handler overwrote
while the loop read it. Here that variable is :class:`Runtime`: a new plugin
is found and built while the loop goes on greeting (outside the lock the loop
takes), then published under that short lock, so a greeting never sees a
half-built plugin; swaps are serialized by a second lock, so the counts in
``/status`` are exact. A replaced plugin is closed only once the loop has
stopped using it.

:class:`GreetingLoop` owns the main thread. Signal handlers only set a flag
(and, during an in-process ``greet()``, raise ``KeyboardInterrupt`` so Ctrl-C
cuts a slow plugin short); the loop sleeps in ``select()`` on a socket pair
that the signal wake-up fd writes to, and does the real work itself.

The control plane (``control.py``) and the CLI are shells over this module;
it imports neither of them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout, suppress
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TextIO

from .api import Greeter
from .discovery import PluginInfo, discover, find
from .errors import GreeterError, PluginCallError, PluginContractError, UsageError
from .loading import call_greet, close_quietly, load

__all__ = [
    "MAX_NAME_LENGTH",
    "ControlPlane",
    "GreetingLoop",
    "LoadOptions",
    "ReloadUnsupportedError",
    "RunPlan",
    "Runtime",
    "RuntimeStoppedError",
    "Swap",
    "check_name",
    "plan_from_args",
    "read_driver_file",
    "run",
    "signals_routed_to",
]

log = logging.getLogger(__name__)

#: Longest driver name accepted from a request or a driver file.
MAX_NAME_LENGTH = 128

#: Why ``reload`` needs ``--isolation process``.
IN_PROCESS_RELOAD = (
    "in-process reload cannot load new code: stevedore caches entry points per process and Python "
    "cannot unload a module cleanly; run with --isolation process, or restart greeter run"
)


class ReloadUnsupportedError(GreeterError):
    """A reload was asked of a runtime that loads plugins in its own process."""

    exit_code = 2

    def __init__(self, driver: str) -> None:
        super().__init__(f"cannot reload plugin {driver!r}: {IN_PROCESS_RELOAD}", driver=driver)


class RuntimeStoppedError(GreeterError):
    """A swap arrived while ``greeter run`` was shutting down."""

    def __init__(self) -> None:
        super().__init__("greeter run is stopping; no more swaps")


class LoadOptions(NamedTuple):
    """How every plugin of one run is loaded (the ``load()`` keywords)."""

    config: Mapping[str, str] = MappingProxyType({})
    isolation: str = "none"
    verify: bool = False
    call_timeout: float = 5.0


class Swap(NamedTuple):
    """The outcome of a swap or reload: what was replaced by what."""

    old: PluginInfo
    new: PluginInfo
    swaps: int
    reloads: int

    def as_dict(self) -> dict[str, object]:
        return {"old": self.old.as_dict(), "new": self.new.as_dict(), "swaps": self.swaps, "reloads": self.reloads}


class _Active:
    """One loaded plugin in the slot; ``retired`` once a swap replaced it."""

    __slots__ = ("greeter", "info", "retired")

    def __init__(self, greeter: Greeter, info: PluginInfo) -> None:
        self.greeter = greeter
        self.info = info
        self.retired = False


def check_name(name: str) -> str:
    """A driver name as the runtime accepts it from outside: non-empty, one line, bounded."""
    if not name or len(name) > MAX_NAME_LENGTH or "\n" in name or "\r" in name:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(f"not a driver name: {shown!r} (expected 1 to {MAX_NAME_LENGTH} characters on one line)")
    return name


class Runtime:
    """The driver slot and the counters that the loop, the control plane and SIGHUP share.

    Only names registered in ``greeter.plugins`` are ever loaded: every swap
    looks the name up with a fresh :func:`~greeter_core.discovery.find` and
    loads exactly the record it returns.
    """

    def __init__(self, options: LoadOptions | None = None, loader: Callable[..., Greeter] = load) -> None:
        self.options = options or LoadOptions()
        self._loader = loader
        self._lock = threading.Lock()  # guards the fields below; held only for a few assignments
        self._swap_lock = threading.Lock()  # serializes swaps, reloads and close
        self._current: _Active | None = None
        self._borrowed: _Active | None = None
        self._closed = False
        self._started = time.monotonic()
        self.greetings = self.errors = self.swaps = self.reloads = 0
        self.last_error: str | None = None
        self._imported: dict[str, str] = {}  # in process: module -> version of the code first imported

    def start(self, driver: str) -> PluginInfo:
        """Load the first driver; its errors are the caller's (the CLI exits with them)."""
        with self._swap_lock:
            if self._current is not None:
                raise RuntimeError("the runtime is already started")
            importlib.invalidate_caches()
            active = self._build(find(driver))
            with self._lock:
                self._current = active
        return active.info

    @property
    def current(self) -> PluginInfo:
        """The record of the plugin that greets next."""
        return self._active().info

    def swap(self, driver: str) -> Swap:
        """Switch to *driver*; on any failure keep the current plugin and raise the reason."""
        return self._switch(check_name(driver), reload=False)

    def reload(self) -> Swap:
        """Switch to a freshly loaded instance of the current driver (new code: process isolation only)."""
        if self.options.isolation != "process":
            raise ReloadUnsupportedError(self.current.name)
        return self._switch(None, reload=True)

    def _switch(self, driver: str | None, *, reload: bool) -> Swap:
        try:
            with self._swap_lock:
                if self._closed:
                    raise RuntimeStoppedError
                importlib.invalidate_caches()  # see files installed or removed since the last look
                info = find(driver or self.current.name)
                return self._publish(self._build(info), reload=reload)
        except GreeterError as error:
            what = f"reload of {self.current.name!r}" if reload else f"switch to {driver!r}"
            log.warning("%s refused: %s; still greeting with %r", what, error, self.current.name)
            raise

    def _build(self, info: PluginInfo) -> _Active:
        options = self.options
        greeter = self._loader(
            info,
            config=options.config,
            isolation=options.isolation,
            verify=options.verify,
            call_timeout=options.call_timeout,
        )
        if options.isolation == "process":
            # A worker reports the distribution it really runs, which may be newer than our record.
            shown = getattr(greeter, "plugin", None)
            return _Active(greeter, shown if isinstance(shown, PluginInfo) else info)
        return _Active(greeter, self._running_code(info))

    def _running_code(self, info: PluginInfo) -> PluginInfo:
        """In process, the record of the code that really runs: the version imported first.

        A plugin upgraded while greeter runs is installed, but its module is
        already imported and Python cannot unload it, so the old code greets.
        """
        module = info.target.partition(":")[0]
        first = self._imported.setdefault(module, info.version)
        if first == info.version:
            return info
        log.warning(
            "plugin %r: %s %s is installed, but this process still runs the %s code it imported first "
            "(Python cannot unload a module); use --isolation process to run the new version",
            info.name, info.distribution, info.version, first,
        )
        return info._replace(version=first)

    def _publish(self, new: _Active, *, reload: bool) -> Swap:
        with self._lock:
            old = self._active()
            self._current = new
            if reload:
                self.reloads += 1
            else:
                self.swaps += 1
            old.retired = True
            close_now = old is not self._borrowed
            result = Swap(old.info, new.info, self.swaps, self.reloads)
        if close_now:
            close_quietly(old.greeter, old.info.name)
        verb = "reloaded" if reload else "switched"
        log.info(
            "%s driver: %s -> %s (%s %s)", verb, old.info.name, new.info.name, new.info.distribution, new.info.version
        )
        return result

    def _active(self) -> _Active:
        active = self._current
        if active is None:
            raise RuntimeError("the runtime is not started")
        return active

    @contextmanager
    def borrowed(self) -> Iterator[tuple[Greeter, PluginInfo]]:
        """The current plugin, kept open until the block ends even if a swap replaces it.

        The greeting loop is the only borrower.
        """
        with self._lock:
            active = self._borrowed = self._active()
        try:
            yield active.greeter, active.info
        finally:
            with self._lock:
                self._borrowed = None
                close_now = active.retired and not self._closed
            if close_now:
                close_quietly(active.greeter, active.info.name)

    def record_greeting(self) -> None:
        with self._lock:
            self.greetings += 1

    def record_error(self, error: GreeterError) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = str(error)

    def status(self) -> dict[str, object]:
        """What ``GET /status`` shows: the current driver, the counters, the worker if any."""
        with self._lock:
            active = self._active()
            status: dict[str, object] = {
                "driver": active.info.name,
                "distribution": active.info.distribution,
                "version": active.info.version,
                "isolation": self.options.isolation,
                "greetings": self.greetings,
                "errors": self.errors,
                "swaps": self.swaps,
                "reloads": self.reloads,
                "last_error": self.last_error,
                "uptime": round(time.monotonic() - self._started, 3),
            }
        worker = active.greeter.status() if self.options.isolation == "process" else None  # type: ignore[attr-defined]
        status["worker"] = worker
        return status

    def plugins(self) -> list[dict[str, str]]:
        """Every installed plugin, fresh: the records of ``greeter list --json``."""
        importlib.invalidate_caches()
        return [plugin.as_dict() for plugin in discover()]

    def close(self) -> None:
        """Refuse further swaps and close every plugin still held; call it after the loop stopped."""
        with self._swap_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                held = {id(a): a for a in (self._current, self._borrowed) if a is not None}
            for active in held.values():
                close_quietly(active.greeter, active.info.name)

    def summary(self) -> str:
        with self._lock:
            return f"{self.greetings} greetings, {self.errors} errors, {self.swaps} swaps, {self.reloads} reloads"


class GreetingLoop:
    """Greet every *interval* seconds through a :class:`Runtime` until stopped.

    Stop it with :meth:`stop` from any thread, or route signals to it with
    :func:`signals_routed_to` (main thread only). Every greeting line is
    written by the thread that calls :meth:`run`, and flushed at once.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        who: str,
        interval: float = 1.0,
        count: int | None = None,
        driver_file: str | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.runtime = runtime
        self.who = who
        self.interval = interval
        self.count = count
        self.driver_file = driver_file
        self._out = out
        self._stopping = False
        self._hup = False
        self._in_plugin = False
        # Only an in-process greet() may be cut short: a worker call has its own timeout.
        self._may_interrupt = runtime.options.isolation == "none"
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def wakeup_fd(self) -> int:
        """The fd that ``signal.set_wakeup_fd`` should write to."""
        return self._wake_w.fileno()

    def stop(self) -> None:
        """Ask the loop to stop after the current greeting (thread-safe)."""
        self._stopping = True
        self._wake()

    def on_stop_signal(self, signum: int, frame: object) -> None:
        """SIGINT/SIGTERM handler: set a flag; during an in-process greet(), interrupt it."""
        self._stopping = True
        if self._in_plugin:
            raise KeyboardInterrupt

    def on_hup_signal(self, signum: int, frame: object) -> None:
        """SIGHUP handler: set a flag; the loop does the work."""
        self._hup = True

    def _wake(self) -> None:
        # OSError: full (a wake-up is already pending) or closed (the loop is gone).
        with suppress(OSError):
            self._wake_w.send(b"\0")

    def run(self) -> None:
        """Greet until stopped or until ``count`` attempts (a failed greeting counts too)."""
        attempts = 0
        try:
            while not self._stopping:
                self._handle_hup()
                if self._stopping:
                    break
                self._tick()
                attempts += 1
                if self.count is not None and attempts >= self.count:
                    break
                self._pause(self.interval)
        except _Interrupted:
            pass

    def close(self) -> None:
        """Release the wake-up socket pair; call it once :meth:`run` has returned."""
        self._wake_r.close()
        self._wake_w.close()

    def _tick(self) -> None:
        try:
            with self.runtime.borrowed() as (greeter, info):
                text = self._call(greeter, info)
            self._emit(text, info)
        except GreeterError as error:
            self.runtime.record_error(error)
            log.error("%s", error, exc_info=error if log.isEnabledFor(logging.DEBUG) else None)
        else:
            self.runtime.record_greeting()

    def _call(self, greeter: Greeter, info: PluginInfo) -> str:
        try:
            self._in_plugin = self._may_interrupt
            try:
                return call_greet(greeter, self.who, info.name, info)
            finally:
                self._in_plugin = False  # first thing out of the plugin: no signal may raise past here
        except KeyboardInterrupt:
            self._in_plugin = False
            if self._stopping:  # ours: Ctrl-C or SIGTERM cut the plugin short
                raise _Interrupted from None
            raise PluginCallError(info.name, info, "KeyboardInterrupt") from None

    def _emit(self, text: str, info: PluginInfo) -> None:
        out = self._out or sys.stdout
        try:
            out.write(text + "\n")
        except UnicodeEncodeError as error:
            raise PluginContractError(
                info.name, info, f"greet() returned text that stdout cannot encode ({error.reason})"
            ) from error
        out.flush()

    def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            # Hand the CPU and the GIL over for a moment: without it, a loop at
            # --interval 0 starves the control plane (swaps took ~10x longer).
            os.sched_yield()
            return
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self._wake_r], [], [], remaining)
            if readable:
                self._drain()
            self._handle_hup()

    def _drain(self) -> None:
        with suppress(BlockingIOError):  # drained
            while self._wake_r.recv(4096):
                pass

    def _handle_hup(self) -> None:
        if not self._hup:
            return
        self._hup = False
        try:
            name = read_driver_file(self.driver_file) if self.driver_file is not None else None
        except UsageError as error:
            log.warning("SIGHUP: %s; still greeting with %r", error, self.runtime.current.name)
            return
        try:
            if name is None or name == self.runtime.current.name:
                self.runtime.reload()
            else:
                self.runtime.swap(name)
        except ReloadUnsupportedError as error:
            log.warning("SIGHUP: %s", error)
        except GreeterError:
            pass  # the runtime logged why it kept the current driver


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while an in-process greet() was running."""


def read_driver_file(path: str) -> str:
    """The driver name held in *path* (surrounding whitespace ignored)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(4 * MAX_NAME_LENGTH)
    except OSError as error:
        raise UsageError(f"cannot read --driver-file {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read --driver-file {path!r}: it is not UTF-8 text") from None
    name = text.strip()
    if not name:
        raise UsageError(f"--driver-file {path!r} is empty; write a driver name in it (see: greeter list)")
    try:
        return check_name(name)
    except UsageError as error:
        raise UsageError(f"--driver-file {path!r}: {error}") from None


class ControlPlane(Protocol):
    """What :func:`run` needs of a control server: start serving a runtime, stop serving."""

    def start(self, runtime: Runtime) -> None: ...

    def close(self) -> None: ...


class RunPlan(NamedTuple):
    """A checked ``greeter run`` command line."""

    driver: str
    who: str
    interval: float
    stop_after: int | None
    driver_file: str | None
    options: LoadOptions


def plan_from_args(args: argparse.Namespace) -> RunPlan:
    """Check the user's ``greeter run`` arguments (UsageError, exit 2, on a mistake)."""
    if args.driver is None and args.driver_file is None:
        raise UsageError("greeter run needs --driver NAME or --driver-file PATH")
    from_file = read_driver_file(args.driver_file) if args.driver_file is not None else None
    return RunPlan(
        driver=args.driver if args.driver is not None else str(from_file),
        who=args.name,
        interval=args.interval,
        stop_after=args.count,
        driver_file=args.driver_file,
        options=LoadOptions(dict(args.options), args.isolation, args.verify, args.call_timeout),
    )


@contextmanager
def signals_routed_to(loop: GreetingLoop) -> Iterator[None]:
    """SIGINT/SIGTERM stop *loop*, SIGHUP asks it to switch; the handlers only set flags."""
    handlers: dict[signal.Signals, Any] = {
        signal.SIGINT: loop.on_stop_signal,
        signal.SIGTERM: loop.on_stop_signal,
        signal.SIGHUP: loop.on_hup_signal,
    }
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    previous_fd = signal.set_wakeup_fd(loop.wakeup_fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(plan: RunPlan, control: ControlPlane | None = None) -> int:
    """Run ``greeter run``: greet until stopped, then print the summary; return the exit status."""
    runtime = Runtime(plan.options)
    loop = GreetingLoop(
        runtime,
        who=plan.who,
        interval=plan.interval,
        count=plan.stop_after,
        driver_file=plan.driver_file,
        out=sys.stdout,
    )
    # stdout carries the greetings only: whatever a plugin prints goes to stderr.
    with redirect_stdout(sys.stderr):
        try:
            runtime.start(plan.driver)
            if control is not None:
                control.start(runtime)
            with signals_routed_to(loop):
                loop.run()
        finally:
            if control is not None:
                control.close()
            runtime.close()
            loop.close()
    print(
        f"greeter run: stopped after {runtime.summary()}; last driver: {runtime.current.name}",
        file=sys.stderr,
        flush=True,
    )
    return 0
