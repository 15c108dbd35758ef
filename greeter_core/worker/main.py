"""The worker: load one plugin with the host's loader, then answer greet calls until told to stop.

Started by :class:`~greeter_core.worker.client.WorkerPlugin` as
``python -I -c BOOTSTRAP SYS_PATH FD`` (see :func:`~greeter_core.worker.client.worker_command`):
isolated mode, so neither the current directory nor ``PYTHON*`` variables
decide what it imports; the host's own ``sys.path`` is given explicitly, and
FD is its end of the channel. The process first splits off its keeper
(:func:`greeter_core.worker.keeper.start`), then, as the worker, reads the host's hello,
:func:`prepare`-s itself (environment, ``sys.path``, limits, watches,
logging) and only then imports the plugin. It never writes to the channel
anything but protocol frames; the plugin's stdout and stderr are pipes the
host drains into its logging.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..discovery import PluginInfo
from ..errors import (
    GreeterError,
    HandshakeError,
    PluginCallError,
    PluginLoadError,
    WorkerLimitError,
    one_line,
)
from . import sandbox, tree
from .codec import KINDS, SENDABLE_ERRORS, decode_json, to_data
from .protocol import (
    BYE,
    COOKIE,
    COOKIE_ENV,
    ERROR,
    HELLO,
    LOG_MARK,
    Channel,
    FrameTooLarge,
    Limits,
    WorkerHello,
    WorkerSpec,
)

if TYPE_CHECKING:
    from ..loaded import LoadedPlugin

__all__ = ["bound_processes", "main", "prepare"]

#: How long the worker waits on its keeper's pidfd before it looks again (the pidfd wakes it at once).
PARENT_WAIT_SECONDS = 5.0

#: MiB of address space a worker gets beyond --worker-memory: what importing stevedore and a plugin,
#: and a thread's stack, map before the plugin allocates anything (measured: see docs/isolation.md).
MAPPED_SLACK_MIB = 64

#: How often the worker checks that its keeper (and so the host) is still there, where it has no pidfd to wait on.
PARENT_POLL_SECONDS = 0.2


class _LogLineHandler(logging.Handler):
    """Writes each record as one marked line on stderr, for the host to re-emit under the plugin's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = json.dumps([record.levelno, record.name, self.format(record)])
            sys.stderr.write(f"{LOG_MARK}{payload}\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never kill the worker
            self.handleError(record)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(COOKIE_ENV) != COOKIE or len(argv) != 1 or not argv[0].isdigit():
        print(
            "greeter worker: this program is started by greeter for --isolation process, not by hand",
            file=sys.stderr,
        )
        return 2
    # Ctrl-C in a terminal is the host's to handle; it stops the worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = int(argv[0])
    faulthandler.enable()  # a segfault leaves a trace on stderr, which the host logs
    channel = Channel(socket.socket(fileno=fd))
    try:
        return _serve(channel)
    except EOFError:
        return 0  # the host went away: nothing left to do
    finally:
        # The interpreter's last collections need not look at what is left: a worker's exit takes
        # ~9 ms less, and the host waits for it when it closes the plugin (a swap's old plugin).
        gc.freeze()


def _serve(channel: Channel) -> int:
    kind, payload = channel.recv()
    try:
        if kind != HELLO:
            raise ValueError("expected the host's hello")
        settings = WorkerSpec.decode(decode_json(payload), peer="host", me="worker")
    except Exception as error:  # whatever the host sent, the answer is one error frame
        channel.send_json(ERROR, to_data(HandshakeError("?", None, str(error) or type(error).__name__)))
        return 3
    record = settings.plugin  # resolved by the host: no rescan of installed metadata here
    try:
        confined = prepare(settings)
    except sandbox.SandboxError as error:  # --sandbox require, with a piece missing: the plugin never runs
        channel.send_json(ERROR, to_data(HandshakeError(record.name, record, str(error))))
        return 1
    from ..loading import load_in_process  # stevedore, then the plugin: only now, with the limits in place

    try:
        loaded = load_in_process(record, settings.config, verify=settings.verify)
    except BaseException as error:
        channel.send_json(ERROR, to_data(_failure(error, record.name, record, settings.limits, loading=True)))
        return 1
    channel.send_json(HELLO, WorkerHello(loaded.plugin, loaded.language, os.getpid(), confined).encode())
    try:
        _answer_calls(channel, loaded, settings.limits)
    finally:
        loaded.close()
    return 0


def _answer_calls(channel: Channel, loaded: LoadedPlugin, limits: Limits) -> None:
    driver, record, serve = loaded.driver, loaded.plugin, channel.serve
    while True:
        try:
            kind, _ = serve(loaded.greet)  # greetings are answered in there; any other frame comes back
            if kind == BYE:
                return
            raise HandshakeError(driver, record, f"unknown request {kind!r}")
        except EOFError:
            raise  # the host is gone (the plugin's own failures come wrapped by loaded.greet)
        except FrameTooLarge as error:
            failure: GreeterError = PluginCallError(driver, record, str(error))
        except BaseException as error:
            # Any KeyboardInterrupt here is the plugin's own: this process ignores SIGINT.
            failure = _failure(error, driver, record, limits, loading=False)
        channel.send_json(ERROR, to_data(failure))
        if isinstance(failure, WorkerLimitError):
            return  # over a limit: this worker is spent, the host starts a fresh one


def _failure(error: BaseException, driver: str, record: PluginInfo, limits: Limits, *, loading: bool) -> GreeterError:
    """What to report for *error*: a resource limit by name, one of the errors a worker may send as it
    is, or any other failure (a plugin's own error class, a BaseException) as the plugin's failure."""
    cause = error.__cause__ if isinstance(error, GreeterError) and error.__cause__ is not None else error
    out_of_memory = isinstance(cause, MemoryError) or (isinstance(cause, OSError) and cause.errno == errno.ENOMEM)
    if out_of_memory and limits.memory_mib:
        return WorkerLimitError(driver, record, limits.name("memory"))
    if isinstance(cause, OSError) and cause.errno == errno.EMFILE and limits.files:
        return WorkerLimitError(driver, record, limits.name("files"))
    if _refused_a_task(cause) and limits.processes:
        return WorkerLimitError(driver, record, limits.name("processes"))
    refused = sandbox.explain(cause)  # what the sandbox refused, and the grant that would allow it
    if refused is not None:
        return PluginLoadError(driver, record, refused) if loading else PluginCallError(driver, record, refused)
    if (
        isinstance(error, GreeterError)
        and type(error).__name__ in SENDABLE_ERRORS
        and KINDS[type(error).__name__] is type(error)
    ):
        return error
    if loading:
        return PluginLoadError(driver, record, one_line(error))
    return PluginCallError(driver, record, one_line(error))


def prepare(settings: WorkerSpec) -> sandbox.Status:
    """Make this process a worker for *settings*, before any plugin code runs: the one place that does.

    The environment and ``sys.path`` are the host's choice (the process was
    started with them already; setting them again costs nothing and lets a
    process forked from a ready interpreter be prepared alike), a subreaper
    for orphans, then the sandbox (:mod:`~greeter_core.worker.sandbox`: while
    this process has one thread, so before the watch on the parent starts),
    the resource limits, and logging to the host. What the sandbox put in
    force comes back (``SandboxError`` in ``require`` mode if it is not all).
    """
    os.environ.clear()
    os.environ.update(settings.env)
    sys.path[:] = settings.sys_path
    importlib.invalidate_caches()  # forked from a fork server: see what was installed since it imported
    tree.become_subreaper()
    grouped = _bound_by_cgroup(settings.limits.processes)  # before the sandbox, which closes /sys/fs/cgroup
    status = sandbox.confine(settings.sandbox)
    _exit_when_orphaned(os.getppid())
    _apply_limits(settings.limits)
    bound_processes(settings.limits.processes, grouped)
    _setup_logging(settings.log_level)
    return status


def _apply_limits(limits: Limits) -> None:
    import resource

    if limits.memory_mib:
        # RLIMIT_DATA leaves out shared mappings (mmap(-1, n) is one); RLIMIT_AS counts every mapping, so
        # it is what the worker has mapped now (the interpreter, greeter-core) + the limit + MAPPED_SLACK.
        _set_limit(resource.RLIMIT_DATA, limits.memory_mib * 1024 * 1024)
        _set_limit(resource.RLIMIT_AS, _mapped() + (limits.memory_mib + MAPPED_SLACK_MIB) * 1024 * 1024)
    if limits.cpu_seconds:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _set_limit(resource.RLIMIT_CPU, int(usage.ru_utime + usage.ru_stime + limits.cpu_seconds + 0.999), slack=1)
    if limits.files:
        _set_limit(resource.RLIMIT_NOFILE, limits.files)


def _bound_by_cgroup(limit: int) -> str | None:
    """``pids.max`` of the tree's cgroup set to *limit* (the keeper made one: root), and where; None if not."""
    from .cgroup import TreeGroup

    group = TreeGroup.of_this_process() if limit else None
    return group.where if group is not None and group.limit(limit) else None


def bound_processes(limit: int, grouped: str | None = None) -> str:
    """Bound this worker's tree to *limit* processes and threads (itself included) the best way there is here.

    In order: ``pids.max`` of the tree's cgroup (the keeper made one: root; *grouped* says where, when
    :func:`prepare` set it before the sandbox closed ``/sys/fs/cgroup``);
    ``RLIMIT_NPROC``, where it counts only this tree (a user namespace of the
    worker's own, not mapped to root, whom the kernel exempts); otherwise the
    keeper counts the tree on each look and ends it past the limit, and an
    ordinary user's ``RLIMIT_NPROC`` is lowered to what the user runs now plus
    *limit*, so a fork bomb stops growing before that look. Returns which, in
    the words of :func:`~greeter_core.worker.cgroup.process_bound`.
    """
    from .cgroup import process_bound

    if not limit:
        tree.watch_processes(0)
        return process_bound(0)
    if grouped is None:
        grouped = _bound_by_cgroup(limit)
    if grouped is not None:
        tree.watch_processes(0)
        return grouped
    import resource

    if _own_user_namespace() and os.geteuid() != 0:
        _set_limit(resource.RLIMIT_NPROC, limit)
        tree.watch_processes(0)
        return "RLIMIT_NPROC in the worker's own user namespace"
    if os.geteuid() != 0:
        _set_limit(resource.RLIMIT_NPROC, _tasks_of(os.getuid()) + limit)
    tree.watch_processes(limit)
    return process_bound(limit)


def _own_user_namespace() -> bool:
    """True if this process is in a user namespace below the initial one (its uid_map is not the identity)."""
    try:
        with open("/proc/self/uid_map") as file:
            return file.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _tasks_of(uid: int) -> int:
    """Processes and threads of user *uid* now: what ``RLIMIT_NPROC`` counts outside a user namespace."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    total += len(os.listdir(f"/proc/{entry}/task"))
    return total


def _refused_a_task(error: BaseException) -> bool:
    """True if *error* is the kernel refusing a new process or thread (``EAGAIN`` from fork or clone)."""
    if isinstance(error, OSError):
        return error.errno == errno.EAGAIN and isinstance(error, BlockingIOError)
    return isinstance(error, RuntimeError) and "can't start new thread" in str(error)


def _mapped() -> int:
    """Bytes of address space this process has mapped now (``VmSize``); 0 where /proc cannot say."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _set_limit(which: int, value: int, slack: int = 0) -> None:
    """Lower the soft limit to *value* and the hard one to *value* + *slack* (never above what it was)."""
    import resource

    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
        slack = min(slack, hard - value)
    resource.setrlimit(which, (value, value + slack))


def _setup_logging(level: int) -> None:
    handler = _LogLineHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _exit_when_orphaned(parent: int) -> None:
    """End this worker and all it started as soon as its keeper is gone, even while a plugin call hangs.

    The keeper ends the tree when the host goes; this covers the keeper
    itself being killed. Not prctl(PR_SET_PDEATHSIG): it fires when the
    *thread* that started the process ends, and hosts start workers from
    short-lived HTTP request threads. The watching thread waits on a pidfd
    of the keeper, so the worker ends as soon as the keeper is gone and an
    idle worker wakes up only every few seconds; without pidfds (Linux < 5.3),
    or once the plugin closed or replaced that descriptor, it polls.
    """
    try:
        keeper: int | None = os.pidfd_open(parent)
    except (AttributeError, OSError):
        keeper = None

    def watch() -> None:
        while os.getppid() == parent:
            try:
                ready = keeper is None or bool(select.select([keeper], [], [], PARENT_WAIT_SECONDS)[0])
            except (OSError, ValueError):
                ready = True
            if ready and os.getppid() == parent:  # no pidfd, or it is no longer the keeper's: poll
                time.sleep(PARENT_POLL_SECONDS)
        tree.kill_tree(os.getpid(), include_root=False)
        os._exit(0)

    threading.Thread(target=watch, name="greeter-parent-watch", daemon=True).start()
