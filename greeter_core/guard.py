"""What keeps greeter in charge of its own process while plugin code runs in it.

In process, a plugin shares everything with the host: the main thread,
signals, file descriptors, the interpreter's exit. This module holds the
few process-wide defences every command shares:

- **The user's stop.** Ctrl-C and SIGTERM arrive as signals; greeter's
  handlers call :func:`request_stop` before raising ``KeyboardInterrupt``.
  A ``KeyboardInterrupt`` with no such request behind it was raised by
  plugin code, and is that plugin's failure (:func:`is_user_stop`).
- **Stopping for sure.** After a stop request, :func:`exit_if_stuck` ends the
  process (``os._exit``) if plugin code keeps the main thread past a grace
  period, e.g. a ``greet()`` that swallows ``KeyboardInterrupt``.
- **Waiting with a deadline.** :func:`call_bounded` runs plugin code in a
  daemon thread and gives up on it after a deadline; Python cannot kill a
  thread, so the call is abandoned, not stopped.
- **Clean output.** :func:`plugin_output_to_stderr` points fd 1 at stderr
  while plugin code may run, and hands the caller a stream on the real
  stdout: a plugin writing raw bytes to fd 1 cannot break "one greeting
  per line".
- **Out of a worker's reach.** :func:`undumpable` makes the process
  non-dumpable before its first worker starts: a same-user worker can then
  neither ptrace it nor read its ``/proc/<pid>/mem``, ``environ`` or ``fd``,
  nor copy its descriptors with ``pidfd_getfd``.
- **One host.** :func:`end_if_copy` ends at once a copy of the host that a
  plugin made with ``fork()`` in process, before it greets or serves.
- **Exiting.** :class:`Command` notices the non-daemon threads plugin code
  left behind, which would keep the interpreter from exiting, and abandons
  them after a short grace.

What only ``--isolation process`` can contain (``os._exit``, a segfault, a
hang in C code that holds the GIL) is out of reach here; see
``docs/hardening.md``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout, suppress
from types import FrameType
from typing import IO, NoReturn, TypeVar

__all__ = [
    "STOP_GRACE",
    "THREAD_GRACE",
    "Command",
    "call_bounded",
    "clear_stop",
    "end_if_copy",
    "exit_if_stuck",
    "forked",
    "is_user_stop",
    "plugin_output_to_stderr",
    "request_stop",
    "stop_requested",
    "this_is_greeter",
    "undumpable",
    "watching",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds after a stop request before the process exits without waiting for plugin code.
STOP_GRACE = 5.0

#: Seconds the CLI waits, at exit, for non-daemon threads that plugin code started.
THREAD_GRACE = 1.0

_stop_requested = False

#: The pid of the process greeter started in: a different one is a copy a plugin forked.
_HOST_PID = os.getpid()

#: True in a child of ``os.fork()`` until greeter's own code claims it (:func:`this_is_greeter`):
#: the hot path tests this flag; :func:`end_if_copy` also compares pids, for a fork through libc.
forked = False


def _after_fork() -> None:
    global forked
    forked = True


os.register_at_fork(after_in_child=_after_fork)


def this_is_greeter() -> None:
    """Claim a process greeter itself forked (a worker below its keeper): it is no plugin's copy."""
    global _HOST_PID, forked
    _HOST_PID, forked = os.getpid(), False


_PR_SET_DUMPABLE = 4
_undumpable = False


def undumpable() -> bool:
    """Make this process non-dumpable (``PR_SET_DUMPABLE 0``), once; False where the kernel refused.

    A worker runs as the same user as its host. While the host is dumpable, a
    worker may ptrace it, read and write its memory through ``/proc/<pid>/mem``,
    read its environment (the control token) and list or open its descriptors
    (``/proc/<pid>/fd``, ``pidfd_getfd``). Non-dumpable, all of that needs
    ``CAP_SYS_PTRACE``: only a worker running as root still has it. The flag
    is kept across ``fork()`` (a forked worker is non-dumpable too) and
    cleared by ``execve()`` (a cold worker is not). It also means no core dump.
    """
    global _undumpable
    if not _undumpable:
        import ctypes

        try:
            _undumpable = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - not Linux
            return False
    return _undumpable


def end_if_copy(what: Callable[[], str]) -> None:
    """End this process at once if it is not the process greeter started in: a copy a plugin forked.

    A plugin's ``fork()`` in process makes a second host that would greet on
    the same stdout and hold the same control socket. The copy writes one line
    naming *what* forked it and exits with ``os._exit``: no greeting, no flush
    of buffers the real host owns, no cleanup that touches shared sockets.
    """
    if forked or os.getpid() != _HOST_PID:
        with suppress(Exception):
            line = f"greeter: {what()} forked this process; the copy (pid {os.getpid()}) ends without greeting\n"
            os.write(2, line.encode("utf-8", "backslashreplace"))
        os._exit(70)


def request_stop() -> None:
    """Record that the user asked this process to stop (a signal handler calls it)."""
    global _stop_requested
    _stop_requested = True


def stop_requested() -> bool:
    """Whether the user asked this process to stop."""
    return _stop_requested


def clear_stop() -> None:
    """Forget a stop request (for a program that runs on after handling one)."""
    global _stop_requested
    _stop_requested = False


def is_user_stop(error: BaseException) -> bool:
    """True for the ``KeyboardInterrupt`` of the user's Ctrl-C or SIGTERM; False for one plugin code raised."""
    return isinstance(error, KeyboardInterrupt) and _stop_requested


def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGINT handler of the one-shot commands: the user's Ctrl-C, recorded as such, ends the command."""
    request_stop()
    exit_if_stuck(STOP_GRACE, 130, lambda: ["greeter: interrupted, but plugin code did not stop; exiting without it"])
    raise KeyboardInterrupt


class _Watchdog:
    """A thread that, once armed, ends the process unless it is disarmed within the grace period.

    It is started ahead of time, because it is armed from signal handlers:
    starting a thread there could deadlock on a lock the interrupted main
    thread holds. Arming only sets an event nobody else waits on.
    """

    def __init__(self) -> None:
        self._armed = threading.Event()
        self._disarmed = threading.Event()
        self._grace = STOP_GRACE
        self._code = 0
        self._last_words: Callable[[], list[str]] = list
        threading.Thread(target=self._watch, name="greeter-stop-watchdog", daemon=True).start()

    def arm(self, grace: float, code: int, last_words: Callable[[], list[str]]) -> None:
        if self._armed.is_set() or self._disarmed.is_set():
            return
        self._grace, self._code, self._last_words = grace, code, last_words
        self._armed.set()

    def disarm(self) -> None:
        self._disarmed.set()
        self._armed.set()  # wakes the thread, which sees it is disarmed and ends

    def _watch(self) -> None:
        self._armed.wait()
        if self._disarmed.wait(self._grace):
            return
        lines: list[str] = []
        with suppress(Exception):
            lines = self._last_words()
        # No flush of sys.stdout here: the stuck main thread may hold its lock.
        _exit_now(self._code, lines, flush=False)


_watchdog: _Watchdog | None = None


@contextmanager
def watching() -> Iterator[None]:
    """Keep a watchdog ready for :func:`exit_if_stuck` during the block; disarm it at the end."""
    global _watchdog
    if _watchdog is not None:  # an enclosing block has one
        yield
        return
    _watchdog = watchdog = _Watchdog()
    try:
        yield
    finally:
        _watchdog = None
        watchdog.disarm()


def exit_if_stuck(grace: float, code: int, last_words: Callable[[], list[str]]) -> None:
    """Unless the process is gone within *grace* seconds, write *last_words* to stderr and exit *code*.

    For stop requests: plugin code may swallow the ``KeyboardInterrupt`` that
    was meant to end it. Armed once; later calls change nothing. Call it
    from a signal handler inside :func:`watching`.
    """
    global _watchdog
    if _watchdog is None:  # outside watching(): start one now, at the risk watching() avoids
        _watchdog = _Watchdog()
    _watchdog.arm(grace, code, last_words)


def _exit_now(code: int, lines: list[str], *, flush: bool = True) -> NoReturn:
    """Exit at once: Python's own exit would wait for the very threads that keep it from ending."""
    if flush:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
    with suppress(OSError):
        os.write(2, "".join(f"{line}\n" for line in lines).encode("utf-8", "backslashreplace"))
    os._exit(code)


class _Outcome:
    """What a bounded call came to; ``abandoned`` once its caller stopped waiting."""

    __slots__ = ("abandoned", "done", "error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.value: object = None
        self.error: BaseException | None = None


def call_bounded(call: Callable[[], T], seconds: float, *, name: str, late: Callable[[T], None] | None = None) -> T:
    """``call()`` in a daemon thread: its result or its exception, or ``TimeoutError`` after *seconds*.

    A call still running at the deadline is abandoned: it goes on in its
    thread (Python cannot stop a thread), and if it ever returns, *late* gets
    its result, so that whatever it built can be released.
    """
    outcome = _Outcome()

    def run() -> None:
        try:
            value = call()
        except BaseException as error:  # handed to the caller, who decides
            with outcome.lock:
                outcome.error = error
                outcome.done.set()
            return
        with outcome.lock:
            outcome.value = value
            outcome.done.set()
            release = outcome.abandoned
        if release and late is not None:
            with suppress(Exception):
                late(value)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        finished = outcome.done.wait(seconds)
    except BaseException:  # the user's Ctrl-C while waiting: nobody will collect the result
        with outcome.lock:
            outcome.abandoned = True
            built = outcome.done.is_set() and outcome.error is None
        if built and late is not None:
            with suppress(Exception):
                late(outcome.value)  # type: ignore[arg-type]
        raise
    if not finished:
        with outcome.lock:
            if not outcome.done.is_set():
                outcome.abandoned = True
                raise TimeoutError(f"{name} did not finish within {seconds:g} s")
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


@contextmanager
def plugin_output_to_stderr() -> Iterator[IO[str]]:
    """Point fd 1 and ``sys.stdout`` at stderr; yield a stream on the real stdout, for greetings only.

    Whatever plugin code prints, with ``print()`` or ``os.write(1, ...)``,
    lands on stderr. Where stdout has no file descriptor (an embedding
    program, a test capturing it), only ``sys.stdout`` is redirected.
    """
    stdout = sys.stdout
    try:
        fd, stderr_fd = stdout.fileno(), sys.stderr.fileno()
        stdout.flush()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        with redirect_stdout(sys.stderr):
            yield stdout
        stdout.flush()
        return
    # *saved* is closed here, never by the stream: Ctrl-C may come while open() is still building
    # the stream, which then closes what it had, and a second close would hit another file.
    try:
        out = open(saved, "w", encoding=stdout.encoding, errors=stdout.errors, closefd=False)  # noqa: SIM115
        try:
            os.dup2(stderr_fd, fd)
            with redirect_stdout(sys.stderr):
                yield out
            out.flush()
        finally:
            os.dup2(saved, fd)
            with suppress(OSError):  # a reader that went away; the caller saw it on its own write
                out.close()
    finally:
        os.close(saved)


class Command:
    """One CLI command's hold on the process: the user's Ctrl-C told apart, stray threads abandoned at exit.

    Use it around the command, and pass the exit status through :meth:`leave`.
    """

    def __init__(self) -> None:
        self._before = set(threading.enumerate())
        self._held = ExitStack()

    def __enter__(self) -> Command:
        self._held.enter_context(watching())
        if threading.current_thread() is threading.main_thread():
            import signal

            # Only Python's own handler is replaced: an inherited SIG_IGN (a background job) stays.
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._held.callback(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, interrupt))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._held.close()

    def leave(self, code: int) -> int:
        """Return *code*, or exit with it now if plugin code left threads that would keep the process alive."""
        stray = self._stray()
        if not stray:
            return code
        deadline = time.monotonic() + THREAD_GRACE
        for thread in stray:
            thread.join(max(0.0, deadline - time.monotonic()))
        stray = self._stray()
        if not stray:
            return code
        names = ", ".join(repr(thread.name) for thread in stray[:3]) + (", ..." if len(stray) > 3 else "")
        log.warning(
            "plugin code left %d thread%s running (%s); exiting without waiting for %s",
            len(stray),
            "" if len(stray) == 1 else "s",
            names,
            "it" if len(stray) == 1 else "them",
        )
        _exit_now(code, [])

    def _stray(self) -> list[threading.Thread]:
        main = threading.main_thread()
        return [
            thread
            for thread in threading.enumerate()
            if thread not in self._before and thread is not main and not thread.daemon and thread.is_alive()
        ]
