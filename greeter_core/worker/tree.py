"""A worker's process tree: keep every descendant in it, and end all of them at once.

A process group does not hold a plugin's child that calls ``setsid()``, and
an orphan normally goes to init, out of reach. So the worker's processes
are *subreapers* (``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan anywhere
below them is re-parented to them instead, and stays findable through
``/proc/<pid>/task/<tid>/children``. :func:`kill_tree` stops every process
of a tree first (a stopped process cannot fork away), walks it again until
nothing new appears, then kills them all. Linux only, like greeter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["become_subreaper", "descendants", "kill_tree"]

_PR_SET_CHILD_SUBREAPER = 36

#: Walks of a tree that keeps changing before giving up on finding more (a fork bomb outruns anything).
_MAX_WALKS = 50


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children, not init's; False if the kernel refused."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as file:
                found.extend(map(int, file.read().split()))
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{task}"):
                continue  # the thread ended
            return _children_from_stat(pid)  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return found


def _children_from_stat(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    if int(file.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below *pid*, as the process table says now."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for parent in frontier for child in _children(parent) if child not in found]
        found.extend(children)
        frontier = children
    return found


def kill_tree(root: int, *, include_root: bool = True) -> None:
    """SIGKILL *root* (optionally) and every process below it, stopping all of them first."""
    stopped: set[int] = set()
    if include_root:
        _signal(root, signal.SIGSTOP)
        stopped.add(root)
    for _ in range(_MAX_WALKS):
        new = [pid for pid in descendants(root) if pid not in stopped]
        for pid in new:
            _signal(pid, signal.SIGSTOP)
            stopped.add(pid)
        if not new:
            # Done once every process we stopped has really stopped: until then it may still fork.
            if all(_halted(pid) for pid in stopped if pid != os.getpid()):
                break
            time.sleep(0.001)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)


def _halted(pid: int) -> bool:
    """True once *pid* is stopped, dead or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"T", b"t", b"Z", b"X")


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
