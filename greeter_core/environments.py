"""Environments of their own: where ``greeter install`` puts a plugin, which are ready, and how a worker uses one.

A plugin whose dependencies conflict with another's lives in an environment
of its own, under ``${XDG_DATA_HOME:-~/.local/share}/greeter/envs/``::

    envs/<distribution>/current -> b-<id>      the one in use: a symlink, replaced atomically
    envs/<distribution>/b-<id>/                 a venv (Python as greeter's own), never changed once built
    envs/<distribution>/b-<id>/greeter-env.json the ready marker, written last (pre-commit's install state)

An environment is used only through ``current``, and only when its marker is
there and well-formed: a build killed midway is a directory nobody reads
(:mod:`greeter_core.installing` removes it at the next install). A build
is never changed once ready, so an upgrade is a new build and a new
``current``; a process that loaded a plugin from a build holds a shared lock
on its marker until it exits, and the installer removes only builds nobody holds.

greeter-core and what it needs (stevedore) are *provided*: the environment
has no copy of them. Its plugin runs in a worker of the host's interpreter
with ``sys.path`` = the host's standard library, the environment's
site-packages, then a directory of links to the provided distributions and
nothing else of the host's (:func:`worker_sys_path`, :func:`provided_dir`):
the environment's own dependencies come first, greeter-core and stevedore
come from the host, as the handshake checks, and no other library of the
host's is importable there.
Nothing here imports a plugin or runs an installer; this module sits below
discovery, which lists these environments' plugins beside the host's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import EnvironmentBrokenError, NeedsWorkerError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from importlib.metadata import Distribution

    from .record import PluginInfo

__all__ = [
    "CURRENT",
    "MARKER",
    "PROVIDED",
    "Environment",
    "canonical",
    "data_dir",
    "distribution",
    "environments_dir",
    "hold",
    "provided",
    "provided_dir",
    "ready",
    "refuse_in_process",
    "warn_broken",
    "watched",
    "worker_sys_path",
]

log = logging.getLogger(__name__)

#: The ready marker's file name, in the build's directory: written last, atomically.
MARKER = "greeter-env.json"

#: The symlink naming the build in use, in ``envs/<distribution>/``.
CURRENT = "current"

#: The marker's layout; a marker of another format is not ready.
FORMAT = 1

#: The distributions the host provides (with what they require): never installed into an environment.
PROVIDED = ("greeter-core",)

#: The builds this process loaded a plugin from: file descriptors of their markers, each held shared.
_held: dict[str, int] = {}


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares it (and as its environment's directory is named)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def data_dir() -> str:
    """greeter's data directory: ``$XDG_DATA_HOME/greeter``, or ``~/.local/share/greeter``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(os.path.abspath(base), "greeter")


def environments_dir() -> str:
    """Where the environments are: one directory per distribution."""
    return os.path.join(data_dir(), "envs")


def host_python() -> str:
    """The host interpreter's ``X.Y``: what an environment must have been built for."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


class Environment(NamedTuple):
    """One ready environment, as its marker describes it."""

    distribution: str
    """The plugin distribution it was built for, as installed (``greeter-a``)."""

    version: str
    """That distribution's version, as installed."""

    root: str
    """The build's directory: what a record's ``environment`` names."""

    site_packages: str
    """Its site-packages directory (absolute)."""

    python: str
    """The ``X.Y`` of the interpreter it was built with (the host's, then)."""

    interpreter: str
    """The interpreter it was built with (``sys.executable`` of the host then)."""

    requested: str
    """What was asked for: ``greeter install SPEC``."""

    def problem(self) -> str | None:
        """Why a worker cannot run it, with how to rebuild it; None when it can."""
        if not os.path.exists(os.path.join(self.root, "bin", "python")):
            why = f"the Python {self.python} it was built with ({self.interpreter}) is gone"
        elif self.python != host_python():
            why = f"it was built for Python {self.python}, and greeter runs on Python {host_python()}"
        else:
            return None
        return f"{why}; rebuild it: greeter install --upgrade {self.distribution}"


def _marker(root: str) -> Environment | None:
    """The environment whose build is *root*, if its marker is there and well-formed; None otherwise."""
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as file:
            data: Any = json.load(file)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        values = {field: data[field] for field in Environment._fields if field not in ("root", "site_packages")}
        if not all(isinstance(value, str) and value for value in values.values()):
            return None
        site = data["site_packages"]
        if not isinstance(site, str) or os.path.isabs(site) or ".." in site.split("/"):
            return None
    except (OSError, ValueError, KeyError) as error:
        log.debug("not an environment: %s (%s)", root, error)
        return None
    return Environment(root=root, site_packages=os.path.join(root, site), **values)


def current(distribution: str) -> Environment | None:
    """The ready environment of *distribution* (any spelling), or None."""
    folder = os.path.join(environments_dir(), canonical(distribution))
    try:
        build = os.readlink(os.path.join(folder, CURRENT))
    except OSError:
        return None
    if os.sep in build or build.startswith("."):  # only ever a sibling build of ours
        return None
    return _marker(os.path.join(folder, build))


def ready() -> tuple[Environment, ...]:
    """Every ready environment, by distribution: a directory listing, a readlink and a small file each."""
    try:
        names = sorted(os.listdir(environments_dir()))
    except OSError:
        return ()
    found = (current(name) for name in names if not name.startswith("."))
    return tuple(env for env in found if env is not None)


def watched() -> tuple[str, ...]:
    """The directories a cache of the installed plugins watches for ``greeter install``/``uninstall``.

    ``envs/`` changes when an environment comes or goes, ``envs/<name>/``
    when its ``current`` is replaced; a build itself never changes.
    """
    top = environments_dir()
    try:
        names = sorted(name for name in os.listdir(top) if not name.startswith("."))
    except OSError:
        return (top,)
    return (top, *(os.path.join(top, name) for name in names))


# -- what the host provides -------------------------------------------------------------------------------


def provided() -> dict[str, Distribution]:
    """The host's provided distributions, by canonical name: greeter-core and what it requires, recursively."""
    import importlib.metadata as metadata

    found: dict[str, Distribution] = {}
    todo = list(PROVIDED)
    while todo:
        name = canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement behind a marker this host does not meet
        found[name] = dist
        for requirement in dist.requires or ():
            if "extra ==" not in requirement.replace("extra==", "extra =="):
                todo.append(re.split(r"[\s;\[<>=!~(@]", requirement.strip(), maxsplit=1)[0])
    return found


#: The provided directory of this host, once made (:func:`provided_dir`).
_provided_dir: list[str] = []


def _provided_entries() -> dict[str, str]:
    """What the provided distributions put on ``sys.path``: each top-level package, module and metadata
    directory (by name), with where it is in the host's environment."""
    from . import __file__ as core_file

    core = os.path.dirname(os.path.abspath(core_file))
    entries = {os.path.basename(core): core}
    for dist in provided().values():
        for file in dist.files or ():
            top = file.parts[0] if file.parts else ""
            if not top or top in entries or top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            where = os.path.abspath(str(dist.locate_file(top)))
            metadata = top.endswith((".dist-info", ".egg-info"))
            package = os.path.exists(os.path.join(where, "__init__.py"))
            module = top.endswith((".py", ".so", ".pyd")) and os.path.isfile(where)
            if metadata or package or module:
                entries[top] = where
    return entries


def provided_dir() -> str:
    """A directory of symlinks to what the provided distributions put on ``sys.path``, and nothing else.

    A worker of a plugin in its own environment has it on its ``sys.path``
    instead of the host's site-packages: greeter-core and stevedore come from
    the host, and another library of the host's is not importable there (a
    plugin that forgot to declare it fails at once, as it would anywhere
    else). Made once per host environment and set of provided versions, under
    ``provided/`` in the data directory, atomically (a rename).
    """
    if _provided_dir:
        return _provided_dir[0]
    import hashlib

    entries = _provided_entries()
    key = hashlib.sha256(json.dumps([sys.prefix, sorted(entries.items())]).encode()).hexdigest()[:16]
    top = os.path.join(data_dir(), "provided")
    folder = os.path.join(top, key)
    try:
        if not os.path.isdir(folder):
            os.makedirs(top, mode=0o755, exist_ok=True)
            _links(entries, os.path.join(top, f".{key}-{os.getpid()}"), folder)
    except OSError as error:  # a data directory this user cannot write: links of this process's own
        import atexit
        import tempfile

        log.info("cannot make %s (%s): using a temporary one", folder, error.strerror or error)
        folder = tempfile.mkdtemp(prefix="greeter-provided-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _links(entries, os.path.join(folder, ".staging"), os.path.join(folder, "links"))
        folder = os.path.join(folder, "links")
    _provided_dir.append(folder)
    return folder


def _links(entries: dict[str, str], staging: str, folder: str) -> None:
    """Make *folder*: a symlink per entry, made in *staging* and renamed into place (whole, or not at all)."""
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging)
    for name, where in entries.items():
        os.symlink(where, os.path.join(staging, name))
    try:
        os.rename(staging, folder)
    except OSError:  # another process made it first: the same links
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(folder):
            raise


def _standard_library() -> list[str]:
    """The host's ``sys.path`` entries of the standard library (below ``sys.base_prefix``, no site-packages)."""
    bases = tuple(os.path.abspath(prefix) + os.sep for prefix in {sys.base_prefix, sys.base_exec_prefix})
    return [
        os.path.abspath(entry)
        for entry in sys.path
        if entry
        and os.path.abspath(entry).startswith(bases)
        and os.path.basename(entry) not in ("site-packages", "dist-packages")
    ]


def worker_sys_path(plugin: PluginInfo) -> list[str]:
    """A worker's ``sys.path`` for a plugin in its own environment: the standard library, the environment's
    site-packages (its own dependencies win), then the provided distributions (:func:`provided_dir`)."""
    env = _marker(plugin.environment)
    if env is None:
        raise EnvironmentBrokenError(plugin, "its environment is no longer there (uninstalled since?)")
    path = _standard_library()
    for entry in (env.site_packages, provided_dir()):
        if entry not in path:
            path.append(entry)
    return path


# -- using one ---------------------------------------------------------------------------------------------


def refuse_in_process(plugin: PluginInfo) -> None:
    """Raise :class:`NeedsWorkerError` if *plugin* lives in an environment of its own (its code is not on
    this process's path: importing it here would run the host's copies of what it needs, or fail)."""
    if plugin.environment:
        raise NeedsWorkerError(plugin)


def hold(plugin: PluginInfo) -> None:
    """Make sure *plugin*'s environment can run, and keep its build from removal while this process lives.

    A shared ``flock`` on the build's marker, held until exit: ``greeter
    install --upgrade`` replaces ``current`` but removes an old build only
    when it can lock it exclusively, so a running ``greeter run`` keeps
    the build its workers import from (``/reload`` moves to the new one).
    """
    import fcntl

    env = _marker(plugin.environment)
    problem = "its environment is no longer there (uninstalled since?)" if env is None else env.problem()
    if problem is not None:
        raise EnvironmentBrokenError(plugin, problem)
    if plugin.environment in _held:
        return
    try:
        fd = os.open(os.path.join(plugin.environment, MARKER), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise EnvironmentBrokenError(plugin, f"its marker cannot be opened: {error.strerror}") from None
    fcntl.flock(fd, fcntl.LOCK_SH)
    if os.fstat(fd).st_nlink == 0:  # removed by an install between our lookup and the lock
        os.close(fd)
        raise EnvironmentBrokenError(plugin, "it was replaced just now; look it up again (greeter list)")
    _held[plugin.environment] = fd


def warn_broken(plugins: Iterable[PluginInfo]) -> list[str]:
    """Log a warning for each environment of its own among *plugins* that cannot run; return the messages."""
    messages = []
    for root in sorted({plugin.environment for plugin in plugins if plugin.environment}):
        env = _marker(root)
        problem = "it is no longer there" if env is None else env.problem()
        if problem is not None:
            name = env.distribution if env is not None else root
            messages.append(f"the environment of {name} ({root}) cannot run: {problem}")
            log.warning("%s", messages[-1])
    return messages


def distribution(plugin: PluginInfo) -> Distribution:
    """The installed distribution of *plugin*, in its own environment or in the host's (``PackageNotFoundError``
    if it is gone): what ``greeter lock`` and ``--lock`` read its files from."""
    import importlib.metadata as metadata

    if not plugin.environment:
        return metadata.distribution(plugin.distribution)
    env = _marker(plugin.environment)
    found = None
    if env is not None:
        found = next(iter(metadata.distributions(name=plugin.distribution, path=[env.site_packages])), None)
    if found is None:
        raise metadata.PackageNotFoundError(plugin.distribution)
    return found
