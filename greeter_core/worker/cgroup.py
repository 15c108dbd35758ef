"""A cgroup per worker tree, where one can be had: it holds every process, counts them, and ends them at once.

A process cannot leave its cgroup by ``setsid()`` or a double fork, and the
kernel refuses a fork or a thread past ``pids.max``. A cgroup's freezer stops
every member in one write, so a fork-and-exit loop cannot outrun the kill that
follows. Two layouts are used: a cgroup2 hierarchy whose root offers the
``pids`` controller (``cgroup.kill`` ends all members in one write), or the
cgroup v1 ``pids`` and ``freezer`` hierarchies side by side. Creating one needs
write access to the hierarchy, which in practice means root: an ordinary user
gets ``None`` and the fallbacks of :mod:`~greeter_core.worker.tree`.

A tree's cgroup is named after its keeper's pid, under the cgroup the keeper
started in, so the host finds it from the keeper's pid alone (the host knows
its keeper; it never asks the worker) and can end the tree when the keeper is
gone. The keeper creates it before it forks the worker, the worker joins it
before any plugin code runs, and whoever ends the tree removes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["TreeGroup"]

ROOT = Path("/sys/fs/cgroup")

#: A tree's cgroup is this and its keeper's pid.
PREFIX = "greeter-tree-"

#: Seconds to wait for a frozen cgroup to say FROZEN, and for a killed one to empty.
SETTLE_SECONDS = 5.0


def _own(hierarchy: str) -> str | None:
    """This process's cgroup in *hierarchy* (``pids``, ``freezer``, or ``""`` for cgroup2), from /proc."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if (controllers == "" and number == "0") if not hierarchy else hierarchy in controllers.split(","):
            return path
    return None


def _base(path: str) -> str:
    """The cgroup trees are made in: *path*, or its parent when *path* is a tree's own cgroup."""
    parent, _, last = path.rstrip("/").rpartition("/")
    return parent if last.startswith(PREFIX) else path


def _write(path: Path, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


class TreeGroup:
    """The cgroup (one, or a v1 pids and freezer pair) of the tree under keeper *keeper*."""

    def __init__(self, keeper: int, dirs: tuple[Path, ...], unified: bool) -> None:
        self.keeper = keeper
        self.dirs = dirs
        self.unified = unified

    @property
    def where(self) -> str:
        """Which cgroup limits the tree, for the one line that says so."""
        return f"pids.max of cgroup {self.dirs[0]}"

    @classmethod
    def paths(cls, keeper: int) -> TreeGroup | None:
        """Where the tree of *keeper* has its cgroup if it has one (beside this process's own), else None."""
        name = f"{PREFIX}{keeper}"
        unified = _own("")
        if unified is not None:
            base = ROOT / "unified" / _base(unified).lstrip("/")
            if "pids" in _read(base / "cgroup.subtree_control").split():
                return cls(keeper, (base / name,), True)
        pids, freezer = _own("pids"), _own("freezer")
        if pids is None or freezer is None:
            return None
        dirs = (ROOT / "pids" / _base(pids).lstrip("/") / name, ROOT / "freezer" / _base(freezer).lstrip("/") / name)
        return cls(keeper, dirs, False)

    @classmethod
    def create(cls, keeper: int) -> TreeGroup | None:
        """Make the cgroup of *keeper*'s tree; None where this process may not (an ordinary user, no hierarchy)."""
        group = cls.paths(keeper)
        if group is None:
            return None
        made: list[Path] = []
        try:
            for path in group.dirs:
                path.mkdir()
                made.append(path)
        except OSError:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            return None
        return group

    @classmethod
    def of_this_process(cls) -> TreeGroup | None:
        """The tree cgroup this process is in (a worker asks before it sets its limit), else None."""
        for hierarchy in ("", "pids"):
            last = (_own(hierarchy) or "").rstrip("/").rpartition("/")[2]
            if last.startswith(PREFIX) and last[len(PREFIX) :].isdigit():
                group = cls.paths(int(last[len(PREFIX) :]))
                if group is not None and group.dirs[0].name == last and group.exists():
                    return group
        return None

    def exists(self) -> bool:
        return self.dirs[0].is_dir()

    def join(self) -> bool:
        """Move this process into the tree's cgroup (the worker, before any plugin code); False if refused."""
        try:
            for path in self.dirs:
                _write(path / "cgroup.procs", "0")
        except OSError:
            return False
        return True

    def limit(self, processes: int) -> bool:
        """Let the tree have at most *processes* tasks (threads count); False if refused."""
        try:
            _write(self.dirs[0] / "pids.max", str(processes) if processes else "max")
        except OSError:
            return False
        return True

    def members(self) -> list[int]:
        """Every task in the cgroup now."""
        return [int(pid) for pid in _read(self.dirs[-1] / ("cgroup.threads" if self.unified else "tasks")).split()]

    def end(self) -> None:
        """Freeze the tree, kill every member, wait for it to empty and remove the cgroup (bounded waits)."""
        if not self.exists():
            return
        if self.unified:
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", "1")
        else:
            freezer = self.dirs[1]
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "FROZEN")
            _settle(lambda: _read(freezer / "freezer.state").strip() != "FREEZING")
            for pid in self.members():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "THAWED")
        _settle(lambda: not self.members())
        for path in self.dirs:
            with contextlib.suppress(OSError):
                path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _settle(done: object, seconds: float = SETTLE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.002)


def process_bound(limit: int) -> str:
    """What bounds a worker's ``--worker-processes`` *limit* on this host, in one line (for ``/status``).

    The host's view of what :func:`greeter_core.worker.main.bound_processes` does:
    a cgroup where this process may make one, else the keeper's count (and, for
    an ordinary user, ``RLIMIT_NPROC`` shared with the user's other processes).
    """
    if not limit:
        return "no limit"
    group = TreeGroup.paths(os.getpid())
    if group is not None and all(os.access(path.parent, os.W_OK) for path in group.dirs):
        return "pids.max of a cgroup per worker"
    if os.geteuid() != 0:
        return "RLIMIT_NPROC (shared with this user's other processes) and the keeper's count"
    return "the keeper's count of the tree, every 0.2 s"
