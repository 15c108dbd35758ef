"""The fork server's own process: import once, then fork a keeper and its worker on each request of the host.

Started by :class:`~greeter_core.worker.forkserver.ForkServer` (the host
side, a module of its own: the two run in different processes) as
``python -I -c BOOTSTRAP SYS_PATH FD HOST_PID``. It holds no thread, no
signal handler and no plugin module; a forked child closes everything of the
server's and becomes exactly what a cold start's first process becomes.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from collections.abc import Sequence
from typing import NamedTuple

from ..guard import undumpable
from . import tree
from .keeper import host_request

__all__ = ["PRELOAD", "serve"]

#: What a fork server imports before it forks anything: what a worker imports before its plugin.
PRELOAD = (
    "ctypes",
    "faulthandler",
    "resource",
    "greeter_core.integrity",
    "greeter_core.loading",
    "greeter_core.worker.keeper",
    "greeter_core.worker.main",
    "greeter_core.worker.sandbox",
)

#: The keepers this server forked and has not reaped yet: its only children but orphans.
_keepers: set[int] = set()

#: Seconds the fork server sleeps between looks at its children (it reaps the keepers that ended).
REAP_SECONDS = 1.0

#: The longest request the host sends: ``F`` and the worker's scratch directory (a path).
REQUEST_BYTES = 1 + 4096


class _Child(NamedTuple):
    """What a forked child got: its channel, output pipes and status pipe, the host's pidfd, its scratch."""

    channel: int
    stdout: int
    stderr: int
    status: int
    host: int
    scratch: str


def serve(argv: Sequence[str]) -> int:
    """The fork server's life: import, then fork on request until the host is gone; 0 then.

    In a forked child this returns too, with the worker's exit code: the
    child leaves the server's loop, becomes a keeper and a worker, and the
    interpreter ends as a cold worker's does (atexit handlers, threads).
    """
    control = socket.socket(fileno=int(argv[0]))
    host = int(argv[1])
    undumpable()  # a worker must not reach into what forks the next worker (greeter_core.guard)
    tree.become_subreaper()  # a tree whose keeper a plugin killed comes here: see _reap
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's to handle
    try:
        host_fd = os.pidfd_open(host)
    except OSError:
        return 3
    if os.getppid() != host:  # the host ended before the pidfd was opened: it may be another process
        return 0
    gc.disable()  # no collection leaves holes in the pages the workers share with this process
    for module in PRELOAD:
        __import__(module)
    from .sandbox import preload

    preload()  # the seccomp filter, built once for every worker
    gc.freeze()  # nor touches these objects in a worker: they stay shared (see the gc module's docs)
    child = _loop(control, host_fd)
    if child is None:
        return 0
    gc.enable()
    control.close()
    _become_keeper(child)
    from .main import main

    return main([str(child.channel)])


def _loop(control: socket.socket, host: int) -> _Child | None:
    """Fork on each request; None once the host is gone, a :class:`_Child` in a forked child."""
    while True:
        _reap()
        ready = select.select([control.fileno(), host], [], [], REAP_SECONDS)[0]
        if host in ready:
            return None
        if not ready:
            continue
        try:
            received = host_request(control, REQUEST_BYTES, 8)  # greeter_core.worker.keeper: only the host's
        except ConnectionResetError:
            return None
        if received is None:
            continue
        message, fds = received
        if not message:
            return None  # the host closed its end
        if message[:1] != b"F" or len(fds) != 4:
            for fd in fds:
                os.close(fd)
            control.send(b"Ea malformed request")
            continue
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as error:
            for fd in fds:
                os.close(fd)
            control.send(b"E" + str(error).encode()[:200])
            continue
        if pid == 0:
            channel, stdout, stderr, status = fds
            return _Child(channel, stdout, stderr, status, host, os.fsdecode(message[1:]))
        _keepers.add(pid)
        pidfd = os.pidfd_open(pid)  # not reaped before this: only _reap() reaps, in this thread
        for fd in fds:
            os.close(fd)
        try:
            socket.send_fds(control, [b"P%d" % pid], [pidfd])
        except OSError:
            return None
        finally:
            os.close(pidfd)


def _reap() -> None:
    """Collect the keepers that ended (they exit as their worker did; the host hears that from each), and
    kill every tree orphaned by a keeper's end: this server is a subreaper, and any child of its that is not
    a keeper it forked came from the tree of a keeper that was killed (by its plugin, say)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        _keepers.discard(pid)
    for orphan in tree.children(os.getpid()):
        if orphan not in _keepers:
            tree.kill_tree(orphan)


def _become_keeper(child: _Child) -> None:
    """Make this forked child what a cold start's first process is, then split off the worker below it."""
    os.setpgid(0, 0)  # a process group of its own, as a cold worker has
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(child.stdout, 1)
    os.dup2(child.stderr, 2)
    start = 0
    for fd in [*sorted({0, 1, 2, child.channel, child.status, child.host}), _max_fd()]:
        if fd > start:  # nothing of the server's stays open (closerange(n, n) would close them all)
            os.closerange(start, fd)
        start = fd + 1
    from .keeper import split

    split(None, child.channel, host_pidfd=child.host, status=child.status, scratch=child.scratch)


def _max_fd() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536
