"""The keeper: the first process of a worker's tree, which outlives the worker so that nothing else does.

A worker runs plugin code, so it can end any way at all (``os._exit``, a
segfault, a kill from outside); a worker cannot clean up after its own
sudden end. So the process the host starts forks right away: the child
becomes the worker, and the parent stays behind as its keeper. The keeper is
a subreaper (see :mod:`~greeter_core.worker.tree`), so whatever a plugin
starts stays in its tree even after ``setsid()`` and a double fork. When the
worker ends, however it ends, the keeper kills what is left of the tree and
exits *the way the worker did* (same exit code, same signal), so the host
reports the worker's end as it was. When the host goes away, the keeper kills
the whole tree. Once the tree is gone it removes the worker's scratch
directory (:mod:`~greeter_core.worker.sandbox`), which the host removes too
when it stops the worker: a host that was killed cannot. It runs no plugin
code and holds no channel.

Where a cgroup can be had (:mod:`~greeter_core.worker.cgroup`), the keeper
makes one for the tree and the worker joins it before it runs plugin code;
where the worker found nothing that bounds its tree (see
:func:`greeter_core.worker.main.bound_processes`), it tells the keeper its
``--worker-processes`` once, on a pipe, and the keeper counts the tree on each
look and ends it past the limit, exiting :data:`OVER_PROCESSES`.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import NoReturn

from ..guard import this_is_greeter, undumpable
from . import tree
from .cgroup import TreeGroup
from .tree import become_subreaper, count, kill_tree

__all__ = ["OVER_PROCESSES", "host_request", "split", "start"]

#: How often the keeper checks that the host is still its parent (and counts the tree, when it watches it).
POLL_SECONDS = 0.2

#: The keeper's exit code when it ended a tree over its ``--worker-processes`` (the host names the limit).
OVER_PROCESSES = 125


def start(argv: list[str]) -> int:
    """A started worker process (``FD [SCRATCH]``): split off the keeper first, while the process is still
    small, then be the worker (:func:`greeter_core.worker.main.main`, which checks that greeter started it)."""
    if len(argv) in (1, 2) and argv[0].isdigit():
        split(os.getppid(), int(argv[0]), scratch=argv[1] if len(argv) == 2 else "")
        argv = argv[:1]
    from .main import main

    return main(argv)


def split(
    host: int | None, channel: int, *, host_pidfd: int | None = None, status: int | None = None, scratch: str = ""
) -> None:
    """Fork off the worker, which returns from here; this process stays behind as its keeper for good.

    The keeper watches the host: its parent *host*, or, forked by the fork
    server, the host's *host_pidfd*. With *status*, it writes there how the
    worker ended before it exits (its parent is then not the host, who cannot
    wait for it); the worker keeps neither. *scratch*, the worker's scratch
    directory the host made (empty: none), is removed when the tree is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's to handle
    undumpable()  # the worker below inherits it: no other worker of this user reaches into either
    become_subreaper()
    group = TreeGroup.create(os.getpid())
    told, tree.watch_pipe = os.pipe()
    worker = os.fork()
    if worker == 0:
        this_is_greeter()  # the worker is greeter's own fork, not a plugin's copy of a host
        if group is not None:
            group.join()
        for fd in (host_pidfd, status, told):
            if fd is not None:
                os.close(fd)
        return
    os.close(channel)  # the worker's alone: when the worker ends, the host sees the channel close
    os.close(tree.watch_pipe)
    tree.watch_pipe = None
    if host_pidfd is not None:
        pidfd = host_pidfd
        _keep(worker, lambda: bool(select.select([pidfd], [], [], 0)[0]), status, told, scratch)
    _keep(worker, lambda: os.getppid() != host, status, told, scratch)


def _keep(worker: int, host_gone: Callable[[], bool], status: int | None, told: int, scratch: str) -> NoReturn:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    limit: int | None = None  # not told yet
    while True:
        if host_gone():  # whatever ended it
            _end_tree(scratch)
            os._exit(0)
        signal.sigtimedwait({signal.SIGCHLD}, POLL_SECONDS)
        if limit is None and select.select([told], [], [], 0)[0]:
            data = os.read(told, 4)
            os.close(told)
            limit = struct.unpack("!I", data)[0] if len(data) == 4 else 0
        if limit and count(os.getpid()) > limit:
            if status is not None:
                with contextlib.suppress(OSError):
                    os.write(status, struct.pack("!i", OVER_PROCESSES))
            _end_tree(scratch)
            os._exit(OVER_PROCESSES)
        for pid, ended in _reaped():
            if pid == worker:
                if status is not None:
                    with contextlib.suppress(OSError):
                        os.write(status, struct.pack("!i", os.waitstatus_to_exitcode(ended)))
                _end_tree(scratch)
                _exit_as(ended)


def _reaped() -> list[tuple[int, int]]:
    """Every child that ended since the last look (orphans adopted from deeper down included)."""
    ended: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, status))


def _end_tree(scratch: str) -> None:
    """Kill everything below the keeper and reap it (bounded: a process we may not kill is left behind), then
    remove the worker's *scratch*: nothing of the tree writes there any more."""
    kill_tree(os.getpid(), include_root=False)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.005)
        except ChildProcessError:
            break
    if scratch:
        from .sandbox import remove_scratch  # preloaded in a forked keeper; a cold one imports it only here

        remove_scratch(scratch)


def _exit_as(status: int) -> NoReturn:
    """End this process as the worker ended: with its exit code, or by its signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(ValueError, OSError):
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the worker's fault, not worth a core of ours
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal that does not end a process by default
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


def host_request(control: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]] | None:
    """The fork server's next request and its descriptors, like ``socket.recv_fds``; None if the host did not send it.

    The host's end of the fork server's channel is a descriptor, and a
    descriptor can be copied (``pidfd_getfd``, a leak into a child): whoever
    holds a copy could have workers forked outside any worker's tree and
    limits. So the kernel says who sent each request (``SO_PASSCRED``, set by
    the host before the fork server starts), and only the fork server's parent,
    the host, is served. A refused request's descriptors are closed and it gets
    no answer (an answer could be read by the host as its own); one line says so.
    A sender with ``CAP_SYS_ADMIN`` (root) can claim any pid: there, only the
    sandbox helps.
    """
    ancillary = socket.CMSG_SPACE(maxfds * 4) + socket.CMSG_SPACE(_CREDENTIALS.size)
    message, cmsgs, _, _ = control.recvmsg(bufsize, ancillary)
    fds: list[int] = []
    sender = 0
    for level, kind, data in cmsgs:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", data[: len(data) - len(data) % 4])
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _CREDENTIALS.size:
            sender = _CREDENTIALS.unpack_from(data)[0]
    if not message or sender == os.getppid():
        return message, fds
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.write(2, f"greeter fork server: refused a request from pid {sender}, not the host\n".encode())
    return None
