"""The process table, read from ``/proc/<pid>/stat``: whether a process lives, its parent, its children.

These read ``stat`` on their own, apart from greeter's :mod:`greeter_core.worker.tree` (which reads
``/proc/<pid>/task/*/children``): a test that asserts nothing is left under a process does not take the
code under test's word for it. Every process below one: ``greeter_core.worker.tree.descendants``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while *pid* is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of *pid*, from the process table."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent(int(entry.name)) == pid:
                    kids.append(int(entry.name))
            except OSError:
                continue
    return kids


def parent(pid: int) -> int:
    """*pid*'s parent (a worker's is its keeper; a keeper's is the fork server or the host)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def kill_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
