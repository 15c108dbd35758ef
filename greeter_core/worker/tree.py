"""A worker's process tree: keep every descendant in it, and end all of them at once.

A process group does not hold a plugin's child that calls ``setsid()``, and
an orphan normally goes to init, out of reach. So the worker's processes
are *subreapers* (``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan anywhere
below them is re-parented to them instead, and stays findable through
``/proc/<pid>/task/<tid>/children``. :func:`kill_tree` stops every process
of a tree first (a stopped process cannot fork away), each the moment a walk
finds it, and walks again until a walk finds no new member and every member
has stopped, then kills them all. There is no small cap on the walks: a fork
bomb is bounded by ``--worker-processes`` (:func:`count`), so the walks are
cheap and a fork-and-exit loop is caught; only a last-resort deadline ends
the walking. Where the tree has a cgroup (:mod:`~greeter_core.worker.cgroup`)
it is frozen and killed in one go instead. Linux only, like greeter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["become_subreaper", "children", "count", "descendants", "kill_tree", "watch_processes"]

_PR_SET_CHILD_SUBREAPER = 36

#: Seconds :func:`kill_tree` walks a tree that keeps changing before it kills what it stopped: a last
#: resort, never reached by a tree within ``--worker-processes`` (a walk of 500 processes takes ~10 ms).
WALK_DEADLINE = 10.0


#: In a worker, its end of the pipe on which it tells its keeper what to watch (set by the keeper's fork);
#: closed, and None, once it has.
watch_pipe: int | None = None


def watch_processes(limit: int) -> None:
    """Ask the keeper to end the tree once it holds more than *limit* processes and threads (0: do not watch).

    Called once by the worker before any plugin code runs; the pipe is closed
    after, so a plugin cannot say anything on it.
    """
    global watch_pipe
    if watch_pipe is None:
        return
    with contextlib.suppress(OSError):
        os.write(watch_pipe, limit.to_bytes(4, "big"))
    with contextlib.suppress(OSError):
        os.close(watch_pipe)
    watch_pipe = None


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children, not init's; False if the kernel refused."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is *pid* now."""
    return _children(pid)


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


def count(pid: int) -> int:
    """Processes and threads of the tree under *pid* (itself left out): what ``--worker-processes`` bounds."""
    return sum(_threads(member) for member in descendants(pid))


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def kill_tree(root: int, *, include_root: bool = True) -> None:
    """SIGKILL *root* (optionally) and every process below it, stopping all of them first.

    The tree's cgroup, where it has one, is frozen, killed and removed first;
    then the walk finds whatever is left (nothing, unless the cgroup was refused).
    """
    from .cgroup import TreeGroup

    group = TreeGroup.paths(root if include_root else os.getpid())
    if group is not None and group.exists():
        group.end()
    stopped: set[int] = set()
    if include_root:
        _signal(root, signal.SIGSTOP)
        stopped.add(root)
    deadline = time.monotonic() + WALK_DEADLINE
    while time.monotonic() < deadline:
        if not _stop_walk(root, stopped):
            # Done once every process we stopped has really stopped: until then it may still fork.
            if all(_halted(pid) for pid in stopped if pid != os.getpid()):
                break
            time.sleep(0.001)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)


def _stop_walk(root: int, stopped: set[int]) -> bool:
    """One walk of the tree, SIGSTOP-ing each new member as soon as it is read; True if it found any."""
    found = False
    frontier = [root]
    while frontier:
        children = []
        for parent in frontier:
            for child in _children(parent):
                if child not in stopped:
                    _signal(child, signal.SIGSTOP)
                    stopped.add(child)
                    found = True
                children.append(child)
        frontier = children
    return found


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
