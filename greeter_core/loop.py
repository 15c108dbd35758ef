"""``greeter run``: greet every *interval* through a driver slot until stopped; signals and the driver file.

:class:`GreetingLoop` owns the main thread. Signal handlers only set a flag
(and, during a ``greet()``, raise ``KeyboardInterrupt`` so Ctrl-C cuts a slow
plugin short: in process, in the plugin's own code; isolated, in the wait for
its worker, which is then killed at once); the loop sleeps in ``select()`` on
a socket pair that the signal wake-up fd writes to, and does the real work itself.
:func:`run` puts a slot, a loop and an optional control plane together and
owns all three until the end.

A stop request always ends the process: if an in-process plugin swallows
the ``KeyboardInterrupt`` meant to cut it short, greeter exits anyway once
:data:`~greeter_core.guard.STOP_GRACE` has passed, with the summary and
exit status 0 (see :func:`~greeter_core.guard.exit_if_stuck`).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, NamedTuple, Protocol

from .drive import LoadOptions
from .errors import (
    GreeterError,
    PluginCallError,
    PluginContractError,
    ReloadUnsupportedError,
    UsageError,
    WorkerUnavailableError,
)
from .guard import STOP_GRACE, exit_if_stuck, plugin_output_to_stderr, request_stop, watching
from .loaded import LoadedPlugin
from .slot import DEFAULT_LOAD_TIMEOUT, MAX_NAME_LENGTH, DriverSlot, check_name, log

__all__ = ["ControlPlane", "GreetingLoop", "RunPlan", "read_driver_file", "run", "signals_routed_to", "summary_line"]


class GreetingLoop:
    """Greet every *interval* seconds through a :class:`~greeter_core.slot.DriverSlot` until stopped.

    Stop it with :meth:`stop` from any thread, or route signals to it with
    :func:`signals_routed_to` (main thread only). Every greeting line is
    written by the thread that calls :meth:`run`, and flushed at once.
    """

    def __init__(
        self,
        slot: DriverSlot,
        *,
        who: str,
        interval: float = 1.0,
        count: int | None = None,
        driver_file: str | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.slot = slot
        self.who = who
        self.interval = interval
        self.count = count
        # Absolute now: a plugin may change the working directory.
        self.driver_file = os.path.abspath(driver_file) if driver_file is not None else None
        self._out = out
        self._stopping = False
        self._hup = False
        self._in_plugin = False
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
        """SIGINT/SIGTERM handler: set a flag; during a greet(), interrupt it (an isolated one kills its worker).

        The request is the user's (:func:`~greeter_core.guard.request_stop`), so
        the ``KeyboardInterrupt`` is not taken for the plugin's; and if plugin
        code keeps the process past the grace period, it exits without it.
        """
        self._stopping = True
        request_stop()
        exit_if_stuck(STOP_GRACE, 0, self._last_words)
        if self._in_plugin:
            raise KeyboardInterrupt

    def _last_words(self) -> list[str]:
        return [
            f"greeter run: plugin code did not let go within {STOP_GRACE:g} s of the stop request; exiting without it",
            summary_line(self.slot),
        ]

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
                if self._tick():
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

    def _tick(self) -> bool:
        """Greet once; False if there was nobody to ask (an isolated plugin's worker is backing off)."""
        try:
            with self.slot.borrowed() as loaded:
                text = self._call(loaded)
            self._emit(text, loaded)
        except WorkerUnavailableError as error:
            # Its crash was logged and counted once; wait for the restart (or a swap) in silence.
            self._pause(error.retry_in, until_swapped=True)
            return False
        except GreeterError as error:
            self.slot.record_error(error)
            log.error("%s", error, exc_info=error if log.isEnabledFor(logging.DEBUG) else None)
        else:
            self.slot.record_greeting()
        return True

    def _call(self, loaded: LoadedPlugin) -> str:
        try:
            self._in_plugin = True
            try:
                return loaded.greet(self.who)
            finally:
                self._in_plugin = False  # first thing out of the plugin: no signal may raise past here
        except KeyboardInterrupt:
            self._in_plugin = False
            if self._stopping:  # ours: Ctrl-C or SIGTERM cut the plugin short
                raise _Interrupted from None
            raise PluginCallError(loaded.driver, loaded.plugin, "KeyboardInterrupt") from None

    def _emit(self, text: str, loaded: LoadedPlugin) -> None:
        out = self._out or sys.stdout
        try:
            out.write(text + "\n")
        except UnicodeEncodeError as error:
            raise PluginContractError(
                loaded.driver, loaded.plugin, f"greet() returned text that stdout cannot encode ({error.reason})"
            ) from error
        out.flush()

    def _pause(self, seconds: float, *, until_swapped: bool = False) -> None:
        if seconds <= 0:
            # Hand the CPU and the GIL over for a moment: without it, a loop at
            # --interval 0 starves the control plane (swaps took ~10x longer).
            os.sched_yield()
            return
        deadline = time.monotonic() + seconds
        switched = self.slot.swaps + self.slot.reloads
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (until_swapped and self.slot.swaps + self.slot.reloads != switched):
                return
            readable, _, _ = select.select([self._wake_r], [], [], min(remaining, 0.1) if until_swapped else remaining)
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
            log.warning("SIGHUP: %s; still greeting with %r", error, self.slot.current.name)
            return
        try:
            if name is None or name == self.slot.current.name:
                self.slot.reload()
            else:
                self.slot.swap(name)
        except ReloadUnsupportedError as error:
            log.warning("SIGHUP: %s", error)
        except GreeterError:
            pass  # the slot logged why it kept the current driver


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while a greet() was running."""


def read_driver_file(path: str) -> str:
    """The driver name held in *path* (surrounding whitespace ignored); only a regular file is read.

    It is opened non-blocking: a FIFO or a device in its place is refused at
    once instead of stalling the loop (and every signal) until a writer comes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise UsageError(f"cannot read --driver-file {path!r}: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot read --driver-file {path!r}: it is not a regular file")
        data = os.read(fd, 4 * MAX_NAME_LENGTH)
    except OSError as error:
        raise UsageError(f"cannot read --driver-file {path!r}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
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
    """What :func:`run` needs of a control server: start serving a slot, stop serving."""

    def start(self, slot: DriverSlot) -> None: ...

    def close(self) -> None: ...


class RunPlan(NamedTuple):
    """What ``greeter run`` was asked to do, checked."""

    driver: str
    who: str
    interval: float
    stop_after: int | None
    driver_file: str | None
    options: LoadOptions
    load_timeout: float = DEFAULT_LOAD_TIMEOUT


@contextmanager
def signals_routed_to(loop: GreetingLoop) -> Iterator[None]:
    """SIGINT/SIGTERM stop *loop*, SIGHUP asks it to switch; the handlers only set flags."""
    handlers: dict[signal.Signals, Any] = {
        signal.SIGINT: loop.on_stop_signal,
        signal.SIGTERM: loop.on_stop_signal,
        signal.SIGHUP: loop.on_hup_signal,
    }
    with watching():  # ready before any handler may need it
        previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
        previous_fd = signal.set_wakeup_fd(loop.wakeup_fd, warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run(plan: RunPlan, control: ControlPlane | None = None) -> int:
    """Greet until stopped, then print the summary; return the exit status.

    Owns *control* from here on: it is closed when the loop ends, whatever ends it.
    """
    slot = DriverSlot(plan.options, load_timeout=plan.load_timeout)
    # stdout carries the greetings only: whatever a plugin writes, to sys.stdout or fd 1, goes to stderr.
    with plugin_output_to_stderr() as out:
        loop = GreetingLoop(
            slot,
            who=plan.who,
            interval=plan.interval,
            count=plan.stop_after,
            driver_file=plan.driver_file,
            out=out,
        )
        try:
            slot.start(plan.driver)
            if control is not None:
                control.start(slot)
            with signals_routed_to(loop):
                loop.run()
        finally:
            if control is not None:
                control.close()
            slot.close()
            loop.close()
    print(summary_line(slot), file=sys.stderr, flush=True)
    return 0


def summary_line(slot: DriverSlot) -> str:
    """The line ``greeter run`` ends with, on stderr."""
    return f"greeter run: stopped after {slot.summary()}; last driver: {slot.current.name}"
