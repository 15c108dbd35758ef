"""The lock file: the plugin code that may run, pinned file by file where the plugins cannot rewrite it.

``--verify`` checks a plugin's files against its ``RECORD``, but ``RECORD``
sits beside them: whoever can change a file can rewrite its line too. A lock
file, written by ``greeter lock`` when the plugins were reviewed and kept
where their installer cannot write, does not move with them (go-plugin's
``SecureConfig`` pins a plugin binary's sha256 the same way). It holds, for
every installed plugin distribution, its version, its entry points and the
sha256 of each file it installed, hashed from the files themselves.

The format is TOML, written with sorted keys and one file per line, so that
a diff of two lock files reads as a review::

    lock-version = 2

    [distributions."greeter-english"]
    version = "1.0.0"

    [distributions."greeter-english".entry-points]
    "english" = "greeter_english:EnglishGreeter"

    [distributions."greeter-english".grants."english"]
    allow-net = [443]

    [distributions."greeter-english".files]
    "greeter_english/__init__.py" = "sha256:9f86d081884c7d65..."

Version 2 also pins what runs before any plugin is chosen: greeter-core's own
files (``[core."greeter-core"]``, from its ``RECORD``) and every ``.pth`` file of
the environment's site directories (``[pth-files]``, by absolute path): Python
runs a ``.pth`` at start-up, and greeter-core's modules run in the host. Where
greeter-core cannot be pinned (an editable install, no ``RECORD``) ``greeter
lock`` says so in one line and the lock has no ``[core]`` table.

Also in version 2, a ``grants`` table holds what the operator reviewed once and
granted a plugin beyond the worker's sandbox (``greeter lock --allow-net
english=443``): a worker of a locked plugin gets exactly these and the
command line's. ``greeter lock`` carries them over when it rewrites the file.
A version 1 file (no grants) is still read.

Byte-code caches (``__pycache__``) are not pinned: each interpreter writes
its own. Instead, a cache that Python would import in place of a locked
source must hold the code compiled from that source. Editable installs are
not locked: their code lives in a source tree, not in files an installer
recorded. ``docs/operating.md`` says what this does and does not protect against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from importlib.metadata import Distribution, PackageNotFoundError, PackagePath, distribution
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from .api import GROUP
from .discovery import PluginInfo, _canonical, discover
from .environments import distribution as distribution_of
from .errors import LockMismatchError, UsageError
from .integrity import bytecode_problem, read_record, unlisted_files
from .settings import env

__all__ = ["LOCK_ENV", "LOCK_VERSION", "Difference", "LockedDistribution", "LockedGrants", "PluginLock"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The lock file to check against when ``--lock`` is not given.
LOCK_ENV = env("lock")

#: The version of the format written; a lock file of a version not in ``_READABLE`` is refused.
#: 2: ``[core]``, ``[pth-files]`` and the ``grants`` tables.
LOCK_VERSION = 2
#: 1: no grants, no ``[core]`` or ``[pth-files]`` (read as granting and pinning nothing more).
_READABLE = (1, LOCK_VERSION)

#: The distribution whose own files ``[core]`` pins.
CORE = "greeter-core"

_HEADER = """\
# greeter lock file: every installed greeter plugin distribution, its version, its entry points
# and the sha256 of each file it installed. Written by `greeter lock`; checked by --lock FILE (or
# $GREETER_LOCK) on `greeter --driver`, `greeter check` and `greeter run`; `greeter lock --check`
# lists every difference. Keep it where the plugins' installer cannot write.
"""


class LockedGrants(NamedTuple):
    """What the operator granted one locked plugin beyond its worker's sandbox (``--allow-*`` in the lock)."""

    allow_read: tuple[str, ...] = ()
    """Absolute paths its worker may read."""
    allow_write: tuple[str, ...] = ()
    """Absolute paths its worker may write (never greeter's own: the sandbox refuses those)."""
    allow_net: tuple[int, ...] = ()
    """TCP ports its worker may connect to."""

    def merged(self, other: LockedGrants) -> LockedGrants:
        """Both grants, each item once, in order (what the lock had, then what is added)."""
        return LockedGrants(
            _union(self.allow_read, other.allow_read),
            _union(self.allow_write, other.allow_write),
            _union(self.allow_net, other.allow_net),
        )

    def describe(self) -> str:
        """As flags, e.g. ``--allow-net 443``; empty when it grants nothing."""
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, values in self._asdict().items() for v in values)


def _union(first: tuple[_T, ...], second: tuple[_T, ...]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys((*first, *second)))


class LockedDistribution(NamedTuple):
    """One plugin distribution as the lock file pins it (or as it is installed now)."""

    name: str
    version: str
    entry_points: Mapping[str, str]
    """Entry-point name -> target (``module:attr``) in ``greeter.plugins``."""

    files: Mapping[str, str]
    """Path as ``RECORD`` spells it -> ``"sha256:<hex>"`` ("" when it cannot be read)."""

    grants: Mapping[str, LockedGrants] = MappingProxyType({})
    """Entry-point name -> what the operator granted that plugin (none: the sandbox's defaults only)."""


class Difference(NamedTuple):
    """One way in which what is installed differs from the lock file."""

    distribution: str
    path: str
    """The file it is about, or "" when it is about the distribution itself."""

    problem: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.distribution}: {where}{self.problem}"

    def as_dict(self) -> dict[str, str]:
        return self._asdict()


class PluginLock:
    """A parsed lock file: :meth:`check` a plugin before loading it, or list every :meth:`differences`."""

    def __init__(
        self,
        distributions: Iterable[LockedDistribution],
        path: str = "",
        core: LockedDistribution | None = None,
        pth_files: Mapping[str, str] | None = None,
    ) -> None:
        self.distributions = {_canonical(d.name): d for d in distributions}
        #: Where it was read from, as the user named it (for the messages).
        self.path = path
        #: greeter-core's own files, or None where they could not be pinned.
        self.core = core
        #: Every ``.pth`` file of the environment (absolute path -> sha256), or None: not pinned.
        self.pth_files = pth_files

    # -- reading and writing -------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> PluginLock:
        """Parse the lock file at *path*; a missing or malformed one is a :class:`UsageError` (exit 2)."""
        shown = os.fspath(path)
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except OSError as error:
            raise UsageError(f"cannot read the lock file {shown!r}: {error.strerror or error}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"the lock file {shown!r} is not valid TOML: {error}") from None
        try:
            return cls(_parse(data), shown, *_parse_environment(data))
        except ValueError as error:
            raise UsageError(f"the lock file {shown!r} is not a greeter lock file: {error}") from None

    @classmethod
    def snapshot(cls) -> PluginLock:
        """Every installed plugin distribution as it is now: what ``greeter lock`` writes.

        An editable install is left out with a warning: it cannot be locked.
        """
        locked = []
        for dist in _plugin_distributions():
            if _editable(dist):
                log.warning(
                    "%s is an editable install: its code lives in a source tree, not in files an installer "
                    "recorded, so it cannot be locked; it is left out (under --lock it will be refused)",
                    dist.metadata["Name"],
                )
                continue
            if read_record(dist) is None:
                log.warning(
                    "%s has no RECORD, so greeter cannot tell which files it installed; it is left out "
                    "(under --lock it will be refused)",
                    dist.metadata["Name"],
                )
                continue
            current = _installed(dist, ())
            for path in current.files:
                if path.endswith(".pth"):
                    log.warning(
                        "%s installs %s: Python runs .pth files at start-up, before greeter checks anything; "
                        "the lock detects a change to it only afterwards",
                        current.name,
                        path,
                    )
            locked.append(current)
        return cls(locked, core=_core_snapshot(), pth_files=_pth_files())

    def with_grants(self, granted: Mapping[str, LockedGrants], previous: PluginLock | None = None) -> PluginLock:
        """This lock with *previous*'s grants carried over (for plugins it still locks) and *granted* added.

        A grant for a plugin this lock has no entry point of is a :class:`UsageError`:
        a grant is reviewed for the code it is locked with.
        """
        owners = {name: key for key, dist in self.distributions.items() for name in dist.entry_points}
        unknown = sorted(set(granted) - set(owners))
        if unknown:
            raise UsageError(
                f"cannot grant plugin {unknown[0]!r}: no plugin of that name is installed and locked "
                "(see: greeter list)"
            )
        grants: dict[str, dict[str, LockedGrants]] = {key: {} for key in self.distributions}
        for key, dist in (previous.distributions if previous is not None else {}).items():
            for name, grant in dist.grants.items():
                if owners.get(name) == key:  # the same plugin of the same distribution
                    grants[key][name] = grant
        for name, grant in granted.items():
            grants[owners[name]][name] = grants[owners[name]].get(name, LockedGrants()).merged(grant)
        distributions = [d._replace(grants=grants[k]) for k, d in self.distributions.items()]
        return PluginLock(distributions, self.path, core=self.core, pth_files=self.pth_files)

    def grants(self, plugin: PluginInfo) -> LockedGrants:
        """What the lock grants *plugin* (checked against it by :meth:`check`); nothing if it grants none."""
        locked = self.distributions.get(_canonical(plugin.distribution))
        return locked.grants.get(plugin.name, LockedGrants()) if locked is not None else LockedGrants()

    def dumps(self) -> str:
        """The lock file's text: TOML, sorted, one file per line."""
        lines = [_HEADER, f"lock-version = {LOCK_VERSION}"]
        for _, dist in sorted(self.distributions.items()):
            table = f"distributions.{_quote(dist.name)}"
            lines += ["", f"[{table}]", f"version = {_quote(dist.version)}", "", f"[{table}.entry-points]"]
            lines += [f"{_quote(name)} = {_quote(target)}" for name, target in sorted(dist.entry_points.items())]
            for name, grant in sorted(dist.grants.items()):
                lines += ["", f"[{table}.grants.{_quote(name)}]"]
                lines += [
                    f"{key.replace('_', '-')} = {_array(values)}" for key, values in grant._asdict().items() if values
                ]
            lines += ["", f"[{table}.files]"]
            lines += [f"{_quote(path)} = {_quote(digest)}" for path, digest in sorted(dist.files.items())]
        if self.core is not None:
            table = f"core.{_quote(self.core.name)}"
            lines += ["", f"[{table}]", f"version = {_quote(self.core.version)}", "", f"[{table}.files]"]
            lines += [f"{_quote(path)} = {_quote(digest)}" for path, digest in sorted(self.core.files.items())]
        if self.pth_files is not None:
            lines += ["", "[pth-files]"]
            lines += [f"{_quote(path)} = {_quote(digest)}" for path, digest in sorted(self.pth_files.items())]
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the lock file atomically: a reader never sees half of it."""
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "x", encoding="utf-8", newline="\n") as file:
                file.write(self.dumps())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    # -- checking ------------------------------------------------------------------------------

    def check(self, plugin: PluginInfo) -> None:
        """Raise :class:`LockMismatchError` naming the first difference, before any plugin code runs."""
        differences = self.environment_differences() + self.compare(plugin)
        if not differences:
            return
        first, more = differences[0], len(differences) - 1
        problem = first.problem
        if more:
            problem += f" (and {more} more difference{'s' if more > 1 else ''}; greeter lock --check lists them)"
        raise LockMismatchError(plugin.name, plugin, self.path or "(in memory)", first.path, problem)

    def compare(self, plugin: PluginInfo) -> list[Difference]:
        """How *plugin*'s distribution differs from the lock, most telling first; [] when it matches."""
        locked = self.distributions.get(_canonical(plugin.distribution))
        try:
            dist = distribution_of(plugin)  # in its own environment (greeter install) or the host's
        except PackageNotFoundError:
            return [Difference(plugin.distribution, "", "is no longer installed")]
        if locked is None:
            return [_not_locked(plugin.distribution, dist)]
        differences = _compare(locked, dist)
        target = locked.entry_points.get(plugin.name)
        if target != plugin.target:
            locked_as = f"the lock has {target}" if target else "the lock has no such entry point"
            differences.insert(
                0, Difference(locked.name, "", f"entry point {plugin.name} = {plugin.target}, but {locked_as}")
            )
        return differences

    def environment_differences(self) -> list[Difference]:
        """How greeter-core's own files and the environment's ``.pth`` files differ from the lock (where pinned)."""
        found: list[Difference] = []
        if self.core is not None:
            try:
                found += _compare(self.core, distribution(self.core.name))
            except PackageNotFoundError:
                found.append(Difference(self.core.name, "", "is locked but not installed"))
        if self.pth_files is not None:
            current = _pth_files()
            for path in sorted(set(current) | set(self.pth_files)):
                want, have = self.pth_files.get(path), current.get(path)
                if want is None:
                    found.append(Difference(".pth files", path, "is not in the lock (Python runs it at every start)"))
                elif have is None:
                    found.append(Difference(".pth files", path, "is locked but missing"))
                elif have != want:
                    found.append(Difference(".pth files", path, "sha256 differs from the lock"))
        return found

    def differences(self) -> list[Difference]:
        """Every difference between the lock and every installed plugin distribution (``greeter lock --check``)."""
        found: list[Difference] = self.environment_differences()
        installed = {_canonical(d.metadata["Name"]): d for d in _plugin_distributions()}
        for key in sorted(set(self.distributions) | set(installed)):
            locked, dist = self.distributions.get(key), installed.get(key)
            if locked is None:
                assert dist is not None
                found.append(_not_locked(dist.metadata["Name"], dist))
            elif dist is None:
                try:
                    found += _compare(locked, distribution(locked.name))
                except PackageNotFoundError:
                    found.append(Difference(locked.name, "", "is locked but not installed"))
            else:
                found += _compare(locked, dist)
        return found


def _plugin_distributions() -> list[Distribution]:
    """Each installed distribution that registers a greeter plugin, once, by canonical name."""
    records = {_canonical(p.distribution): p for p in discover()}
    return [distribution_of(record) for _, record in sorted(records.items())]


def _editable(dist: Distribution) -> bool:
    """PEP 610: an editable install says so in ``direct_url.json``."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        return bool(info.get("dir_info", {}).get("editable", False))
    except (ValueError, AttributeError):
        return False


def _not_locked(name: str, dist: Distribution) -> Difference:
    why = "is not in the lock file"
    if _editable(dist):
        why += " (an editable install, which cannot be locked: its code lives in a source tree)"
    return Difference(name, "", why)


def _is_bytecode_cache(path: str) -> bool:
    return "__pycache__" in path.split("/")


def _installed(dist: Distribution, also: Iterable[str]) -> LockedDistribution:
    """*dist* as it is now: every file its RECORD lists, the paths in *also*, and any module dropped
    into its packages unrecorded, each hashed from the file."""
    files = [f for f in read_record(dist) or () if not _is_bytecode_cache(str(f))]
    listed = {str(f) for f in files}
    files += [PackagePath(path) for path in also if path not in listed]
    base = Path(str(dist.locate_file("")))
    paths = {str(f) for f in files}
    paths |= {Path(os.path.relpath(stray, base)).as_posix() for stray in unlisted_files(dist, files)}
    entry_points = {ep.name: ep.value for ep in dist.entry_points if ep.group == GROUP}
    return LockedDistribution(
        dist.metadata["Name"],
        dist.version,
        entry_points,
        {path: _digest(Path(str(dist.locate_file(path)))) for path in sorted(paths)},
    )


def _digest(path: Path) -> str:
    """``sha256:<hex>`` of a regular file; "" for anything else. RECORD is as untrusted as the files
    it lists: a line naming a FIFO or ``/dev/zero`` must not hang the check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return ""
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        try:
            return "sha256:" + hashlib.file_digest(file, "sha256").hexdigest()
        except OSError:
            return ""


def _compare(locked: LockedDistribution, dist: Distribution) -> list[Difference]:
    """How *dist* differs from *locked*: version, entry points, then code files, then metadata files."""
    name = locked.name
    current = _installed(dist, locked.files)
    found = []
    if current.version != locked.version:
        found.append(Difference(name, "", f"version {current.version} is installed, the lock has {locked.version}"))
    if dict(current.entry_points) != dict(locked.entry_points):
        shown = ", ".join(f"{n} = {t}" for n, t in sorted(current.entry_points.items())) or "none"
        found.append(Difference(name, "", f"its entry points differ from the lock (installed: {shown})"))

    def code_first(path: str) -> tuple[bool, str]:
        return (".dist-info/" in path, path)

    base = Path(str(dist.locate_file("")))
    for path in sorted(set(current.files) | set(locked.files), key=code_first):
        want, have = locked.files.get(path), current.files.get(path)
        if want is None:
            found.append(Difference(name, path, "is not in the lock (added since the lock was written)"))
        elif not have:
            found.append(Difference(name, path, "is locked but missing (or unreadable)"))
        elif have != want:
            found.append(Difference(name, path, "sha256 differs from the lock"))
        elif path.endswith(".py"):
            problem = bytecode_problem(base / path)
            if problem:
                found.append(Difference(name, _cache_of(base / path, base), problem))
    return found


def _cache_of(source: Path, base: Path) -> str:
    from importlib.util import cache_from_source

    return Path(os.path.relpath(cache_from_source(str(source)), base)).as_posix()


def _core_snapshot() -> LockedDistribution | None:
    """greeter-core's own files as they are now, or None (said in one line) where they cannot be pinned."""
    try:
        dist = distribution(CORE)
    except PackageNotFoundError:
        dist = None
    if dist is None or _editable(dist) or read_record(dist) is None:
        why = "not installed" if dist is None else "an editable install" if _editable(dist) else "without a RECORD"
        log.warning("%s is %s: its own files are not pinned in the lock", CORE, why)
        return None
    return _installed(dist, ())


def _site_dirs() -> list[Path]:
    """The directories whose ``.pth`` files Python runs at start-up in this environment."""
    import site

    dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [Path(each) for each in dict.fromkeys(dirs) if os.path.isdir(each)]


def _pth_files() -> dict[str, str]:
    """Every ``.pth`` file of the environment's site directories, absolute path -> sha256."""
    return {str(path): _digest(path) for directory in _site_dirs() for path in sorted(directory.glob("*.pth"))}


def _parse_environment(data: Mapping[str, object]) -> tuple[LockedDistribution | None, dict[str, str] | None]:
    """The ``[core]`` and ``[pth-files]`` tables (None where absent: not pinned); ValueError when malformed."""
    core = data.get("core")
    locked = None
    if core is not None:
        if not isinstance(core, dict) or len(core) != 1:
            raise ValueError("[core] must hold one distribution table")
        (locked,) = _parse({"lock-version": LOCK_VERSION, "distributions": core})
    pth = data.get("pth-files")
    if pth is not None and not (isinstance(pth, dict) and all(isinstance(v, str) for v in pth.values())):
        raise ValueError("[pth-files] must be a table of strings")
    return locked, pth


def _parse(data: Mapping[str, object]) -> list[LockedDistribution]:
    """The distributions of a parsed lock file; ValueError says what is wrong."""
    version = data.get("lock-version")
    if type(version) is not int or version not in _READABLE:  # TOML's true and 1.0 equal 1 in Python
        raise ValueError(f"expected lock-version = {LOCK_VERSION} (or 1), found {data.get('lock-version')!r}")
    tables = data.get("distributions", {})
    if not isinstance(tables, dict):
        raise ValueError("[distributions] must be a table")
    parsed = []
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("version"), str):
            raise ValueError(f"distribution {name!r} needs a version")
        entry_points, files = table.get("entry-points", {}), table.get("files", {})
        for what, mapping in (("entry-points", entry_points), ("files", files)):
            if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                raise ValueError(f"distribution {name!r}: {what} must be a table of strings")
        grants = table.get("grants", {})
        if not isinstance(grants, dict):
            raise ValueError(f"distribution {name!r}: grants must be a table of plugin names")
        parsed.append(
            LockedDistribution(
                name,
                table["version"],
                entry_points,
                files,
                {plugin: _grant(name, plugin, grant) for plugin, grant in grants.items()},
            )
        )
    return parsed


def _grant(distribution: str, plugin: str, table: object) -> LockedGrants:
    """One plugin's grants table; ValueError says what is wrong (a path must be absolute, a port 1-65535)."""
    where = f"distribution {distribution!r}: grants of {plugin!r}"
    keys = {"allow-read", "allow-write", "allow-net"}
    if not isinstance(table, dict) or not set(table) <= keys:
        raise ValueError(f"{where} must be a table of {', '.join(sorted(keys))}")
    reads, writes, ports = (table.get(key, []) for key in ("allow-read", "allow-write", "allow-net"))
    if not all(isinstance(v, list) for v in (reads, writes, ports)):
        raise ValueError(f"{where}: each grant is an array")
    if not all(isinstance(p, str) and os.path.isabs(p) for p in (*reads, *writes)):
        raise ValueError(f"{where}: a path must be absolute")
    if not all(type(p) is int and 0 < p < 65536 for p in ports):
        raise ValueError(f"{where}: a port is a whole number 1-65535")
    return LockedGrants(tuple(reads), tuple(writes), tuple(ports))


def _array(values: Iterable[str | int]) -> str:
    """*values* as a TOML array on one line."""
    return "[" + ", ".join(_quote(v) if isinstance(v, str) else str(v) for v in values) + "]"


def _quote(text: str) -> str:
    """*text* as a TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped) + '"'
