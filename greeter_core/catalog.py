"""The installed plugins, remembered: a scan is used again until something it was read from changed.

A scan of the installed metadata (:func:`~greeter_core.discovery.scan`)
reads every distribution on ``sys.path``, about a second with 5,000 of them
installed. ``greeter run`` looks a name up on every swap and ``greeter list``
lists on every run, so both keep their last scan, with a :class:`Snapshot`
of what it was read from, and use it again while the snapshot holds:

- **every** ``sys.path`` **entry** (``""`` read as the current directory).
  Installing, uninstalling or upgrading a distribution adds or removes a
  ``*.dist-info`` directory there, which changes the entry's own
  modification and change times, whatever the installer.
- **the metadata of every plugin distribution** (and of every distribution
  that could not be read): its ``*.dist-info`` directory, ``entry_points.txt``
  and ``METADATA`` (``PKG-INFO``), for an edit made in place.
- **the environments of their own** (``greeter install``): their directory
  and each ``envs/<name>/``, whose ``current`` an install or uninstall replaces.
- **thorough snapshots only: every** ``entry_points.txt`` on ``sys.path``,
  for an edit in place that gives a plugin to a distribution that had none.
  That is a stat per installed distribution (15 ms with 5,000), which
  ``greeter list`` and ``GET /plugins`` pay and a swap does not: a name the
  kept scan does not know is looked up in a fresh scan before it is refused.

Each file is compared by device, inode, size, and modification and change
times in nanoseconds: a change a second later is a different stamp (unlike a
time rounded to a 32-bit float, which stays the same for about two minutes).
A file system stamps times at a coarse granularity (a kernel tick; one or two
seconds on some), so a change made right after a scan, within the tick of
one made right before it, could leave the stamp as it was: a snapshot of
files modified less than :data:`RACY_NS` before it began is used for the
scan it was taken with and never again (git calls such index entries "racily
clean", for the same reason).

``greeter run`` keeps its scan in memory (:class:`Catalog`). The one-shot
``greeter list`` keeps it on disk (:func:`listed`), in a file of its own user
under ``$XDG_CACHE_HOME/greeter``: a file that anyone else can write is
ignored, and whatever is read is checked field by field. The file only ever
lists and names plugins; nothing is loaded from it.

Not seen: a distribution found by a finder other than the standard path
finder (then nothing is kept), an edit that restores every stamp (the change
time cannot be set back), and ``RECORD``, which discovery never reads
(``--verify`` and ``greeter lock`` read it fresh every time).
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
import sys
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple

from .discovery import PluginInfo, Scan, scan
from .errors import NoSuchDriverError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["RACY_NS", "Catalog", "Snapshot", "cache_file", "cache_key", "listed"]

log = logging.getLogger(__name__)

#: Files changed less than this many nanoseconds before a snapshot make it good for one use only.
RACY_NS = 2_000_000_000

#: Largest cache file read; a bigger one is not greeter's (5,000 distributions take about 0.5 MB).
MAX_CACHE_BYTES = 16 * 1024 * 1024

#: What the cache file's layout is; a file of another format is not read.
_FORMAT = 2

#: ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of a file, or None where there is none.
Stamp = tuple[int, int, int, int, int] | None

#: The files of a distribution's metadata directory a snapshot watches (the directory itself: "").
_WATCHED = ("", "entry_points.txt", "METADATA", "PKG-INFO")


def _stamp(path: str, folder: int | None = None) -> Stamp:
    try:
        st = os.stat(path, dir_fd=folder)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _search_path() -> tuple[str, ...]:
    """``sys.path`` as the metadata finder reads it now: relative entries (``""`` too) from the current directory."""
    return tuple(os.path.abspath(entry or os.curdir) for entry in sys.path if isinstance(entry, str))


def _watched_path() -> tuple[str, ...]:
    """What a snapshot stamps as directories: ``sys.path``, then the environments of their own
    (``greeter install`` and ``uninstall`` change ``envs/`` or an ``envs/<name>/``)."""
    from .environments import watched

    return (*_search_path(), *watched())


def _only_the_path_finder() -> bool:
    """Whether every distribution comes from the standard path finder, the only one a snapshot can watch."""
    from importlib.machinery import PathFinder

    return all(finder is PathFinder or not hasattr(finder, "find_distributions") for finder in sys.meta_path) and all(
        isinstance(entry, str) for entry in sys.path
    )


def _entry_points(path: Iterable[str]) -> tuple[Stamp, ...]:
    """The stamp of every distribution's ``entry_points.txt`` on *path*, in directory order.

    The names need not be kept: a distribution added, removed or renamed
    changes its ``sys.path`` entry's own stamp. Each is looked up from the
    entry's open directory, which halves the cost of a stat.
    """
    stamps: list[Stamp] = []
    for entry in path:
        try:
            folder = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ValueError):
            continue
        try:
            for name in os.listdir(folder):
                if name.endswith((".dist-info", ".egg-info")):
                    stamps.append(_stamp(f"{name}/entry_points.txt", folder))
        except OSError:
            continue
        finally:
            os.close(folder)
    return tuple(stamps)


class Snapshot(NamedTuple):
    """What a scan was read from, stamped just before and just after it; compare with :meth:`holds`."""

    path: tuple[str, ...]
    """``sys.path``, resolved, when it was taken."""

    entries: tuple[Stamp, ...]
    """The stamp of each ``sys.path`` entry."""

    sources: tuple[tuple[str, Stamp], ...]
    """The stamp of each watched metadata file of a plugin distribution (or one that could not be read)."""

    entry_points: tuple[Stamp, ...] | None
    """Thorough snapshots: the stamp of every ``entry_points.txt`` on ``sys.path``; otherwise None."""

    trusted: bool
    """False when it can serve only the scan it was taken with (racy times, or a finder it cannot watch)."""

    @classmethod
    def around(cls, read: Callable[[], Scan], *, thorough: bool) -> tuple[Snapshot, Scan]:
        """Run the scan *read* and snapshot what it read from: ``sys.path`` before it, its sources after.

        A change made while it reads is newer than the scan's start, so it
        makes the snapshot untrusted (see :data:`RACY_NS`).
        """
        started = time.time_ns()
        path = _watched_path()
        entries = tuple(map(_stamp, path))
        entry_points = _entry_points(path) if thorough else None
        found = read()
        sources = tuple((file, _stamp(file)) for file in _watched(found.sources))
        stamps = [*entries, *(file_stamp for _, file_stamp in sources), *(entry_points or ())]
        newest = max((file_stamp[3] for file_stamp in stamps if file_stamp is not None), default=0)
        trusted = newest < started - RACY_NS and _only_the_path_finder()
        return cls(path, entries, sources, entry_points, trusted), found

    def holds(self, *, thorough: bool = False) -> bool:
        """Whether everything it watched is as it was (and, *thorough*, every ``entry_points.txt`` too)."""
        if not self.trusted or (thorough and self.entry_points is None):
            return False
        path = _watched_path()
        if path != self.path or tuple(map(_stamp, path)) != self.entries:
            return False
        if any(_stamp(file) != file_stamp for file, file_stamp in self.sources):
            return False
        return not thorough or _entry_points(path) == self.entry_points


def _watched(folders: Iterable[str]) -> list[str]:
    """The files a snapshot watches for the metadata directories *folders*."""
    return [os.path.join(folder, name) if name else folder for folder in folders for name in _WATCHED]


def _fresh(*, thorough: bool) -> tuple[Snapshot, Scan]:
    importlib.invalidate_caches()  # importlib.metadata's and the import system's own directory caches
    return Snapshot.around(scan, thorough=thorough)


class Catalog:
    """One process's scan of the installed plugins, used again while its snapshot holds; thread-safe.

    ``greeter run`` keeps one for its whole life: a swap costs a few dozen
    stats instead of a scan of every installed distribution.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[Snapshot, Scan] | None = None

    def scan(self, *, thorough: bool = False) -> Scan:
        """The installed plugins as they are now: the kept scan, or a fresh one if anything it read changed."""
        with self._lock:
            if self._kept is None or not self._kept[0].holds(thorough=thorough):
                self._kept = _fresh(thorough=thorough)
            return self._kept[1]

    def find(self, name: str) -> PluginInfo:
        """The one plugin called *name*, as :func:`~greeter_core.discovery.find` finds it.

        A name the kept scan does not know is looked up in a fresh scan before
        it is refused: an edit in place of a distribution that registered no
        plugin is what a swap's snapshot does not watch.
        """
        try:
            return self.scan().find(name)
        except NoSuchDriverError:
            with self._lock:
                self._kept = _fresh(thorough=False)
                found = self._kept[1]
            return found.find(name)


# -- on disk, for the one-shot commands ------------------------------------------------------------


def cache_file(key: dict[str, object] | None = None) -> str:
    """The cache file of this interpreter and ``sys.path`` (of *key*, from :func:`cache_key`); it need not exist."""
    import zlib

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    text = repr(cache_key() if key is None else key).encode("utf-8", "surrogateescape")
    # crc32 only names the file: the file holds its whole key, which must match when it is read.
    return os.path.join(base, "greeter", f"plugins-{zlib.crc32(text):08x}.json")


def cache_key() -> dict[str, object]:
    """What a cache file is for: this greeter, this interpreter, this ``sys.path``."""
    from . import __version__

    return {
        "format": _FORMAT,
        "greeter": __version__,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "path": list(_search_path()),
    }


def listed() -> Scan:
    """The installed plugins for ``greeter list`` and the one-shot messages: from the cache file while a
    thorough snapshot holds, else a fresh scan (then written to the cache file, when its snapshot is trusted).

    Never for loading: what is loaded is looked up fresh (``greeter run``: in its own :class:`Catalog`).
    """
    key = cache_key()
    path = cache_file(key)
    kept = _read(path, key)
    if kept is not None and kept[0].holds(thorough=True):
        log.debug("installed plugins read from %s", path)
        kept[1].warn()
        return kept[1]
    snapshot, found = _fresh(thorough=True)
    if snapshot.trusted:
        _write(path, key, snapshot, found)
    return found


def _private_directory(directory: str) -> bool:
    """Whether *directory* is a real directory of this user that nobody else can write to."""
    try:
        st = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _read(path: str, key: dict[str, object]) -> tuple[Snapshot, Scan] | None:
    """The snapshot and scan in the cache file *path*, if it is this user's own, of this *key*, and well-formed."""
    import json

    if not _private_directory(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.debug("not reading %s: not a regular file of this user that only this user can write", path)
            return None
        if st.st_size > MAX_CACHE_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            data = json.loads(file.read(MAX_CACHE_BYTES + 1))
        return _decode(data, key)
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        log.debug("not reading %s: %s", path, error)
        return None
    finally:
        os.close(fd)


def _decode(data: Any, key: dict[str, object]) -> tuple[Snapshot, Scan] | None:
    """The cache file's content, checked field by field; ``ValueError`` for anything malformed."""
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    plugins = tuple(PluginInfo(*_record(record)) for record in _list(data["plugins"]))
    unreadable = data["unreadable"]
    if not isinstance(unreadable, dict) or not all(isinstance(v, str) for v in unreadable.values()):
        raise ValueError("unreadable: not an object of strings")
    problems = tuple((where, problem) for where, problem in (_strings(item, 2) for item in _list(data["problems"])))
    folders = tuple(_strings(data["folders"], None))
    files = _watched(folders)
    stamps = _list(data["stamps"])
    path = tuple(_strings(data["path"], None))
    entries = tuple(_stamp_of(value) for value in _list(data["entries"]))
    if len(stamps) != len(files) or len(entries) != len(path):
        raise ValueError("not one stamp per file watched")
    entry_points = tuple(_stamp_of(value) for value in _list(data["entry_points"]))
    snapshot = Snapshot(path, entries, tuple(zip(files, map(_stamp_of, stamps), strict=True)), entry_points, True)
    return snapshot, Scan(plugins, dict(unreadable), problems, folders)


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _strings(value: object, count: int | None) -> list[str]:
    items = [_string(item) for item in _list(value)]
    if count is not None and len(items) != count:
        raise ValueError(f"expected {count} strings, got {len(items)}")
    return items


def _record(value: object) -> list[str]:
    """A plugin's record: four strings, and a fifth for one in an environment of its own."""
    items = _strings(value, None)
    if len(items) not in (len(PluginInfo._fields) - 1, len(PluginInfo._fields)):
        raise ValueError(f"a plugin record is {len(PluginInfo._fields)} strings, not {len(items)}")
    return items


def _stamp_of(value: object) -> Stamp:
    if value is None:
        return None
    items = _list(value)
    if len(items) != 5 or not all(type(item) is int for item in items):
        raise ValueError("a stamp is five integers or null")
    return (items[0], items[1], items[2], items[3], items[4])


def _write(path: str, key: dict[str, object], snapshot: Snapshot, found: Scan) -> None:
    """Write the cache file at once (a temporary file renamed over it); a failure only costs the next scan."""
    import json

    directory = os.path.dirname(path)
    data = {
        "key": key,
        "path": snapshot.path,
        "entries": snapshot.entries,
        "folders": found.sources,
        "stamps": [file_stamp for _, file_stamp in snapshot.sources],
        "entry_points": snapshot.entry_points,
        "plugins": found.plugins,
        "unreadable": dict(found.unreadable),
        "problems": found.problems,
    }
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _private_directory(directory):
            log.debug("not writing %s: its directory is not this user's alone", path)
            return
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, ensure_ascii=False)
        os.replace(temporary, path)
    except OSError as error:
        log.debug("could not write %s: %s", path, error)
        with suppress(OSError):
            os.unlink(temporary)
