"""``greeter install`` and ``greeter uninstall``: a plugin distribution in an environment of its own.

pre-commit's store, tightened. pre-commit builds a hook's environment in
place and marks it installed last (a state file renamed into place); here a
build is a fresh directory beside the one in use, built with uv, checked,
marked ready last (the marker renamed into place), and only then made the
one in use by replacing the ``current`` symlink (one ``rename``). An install
killed at any point leaves either the old ``current`` or the new one, never
half of one; what it left behind is a directory no one reads, removed by the
next install. Installs serialise on an ``flock`` of ``install.lock`` in the
data directory. Layout and use: :mod:`greeter_core.environments`.

greeter-core and stevedore are *provided*: before uv resolves, the new
environment gets a metadata-only ``*.dist-info`` of each provided
distribution at the host's version, and a constraint pinning it there. uv
then evaluates every requirement on them by PEP 440 itself, and a plugin
that needs ``greeter-core>=2`` on a host of 1.0.0 fails to resolve, with
uv's own explanation; afterwards the stand-ins are removed, so the
environment holds no copy of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from .api import GROUP
from .environments import (
    CURRENT,
    FORMAT,
    MARKER,
    Environment,
    canonical,
    current,
    data_dir,
    environments_dir,
    host_python,
    provided,
)
from .errors import InstallError, NotInstalledError, ProvidedVersionError, UsageError

if TYPE_CHECKING:
    import argparse

#: The Python API (``greeter_core.install(...)``); the CLI's parsers and handlers stay module functions.
__all__ = ["Installed", "install", "uninstall"]

log = logging.getLogger(__name__)

#: Which uv to run; by default the ``uv`` package's (``greeter-core[install]``), else ``uv`` on ``PATH``.
UV_ENV = "GREETER_UV"

#: What the metadata-only stand-ins of provided distributions say installed them.
_STAND_IN = "greeter-provided"

#: The constraints file of a build in progress (removed before it is marked ready).
_CONSTRAINTS = ".greeter-constraints.txt"


class Installed(NamedTuple):
    """What ``greeter install`` did for one distribution."""

    distribution: str
    version: str
    plugins: tuple[str, ...]
    environment: str
    built: bool
    """False: an environment for the same request was ready and healthy, nothing was built."""

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


def find_uv(distribution: str) -> str:
    """The uv executable: ``$GREETER_UV``, the ``uv`` package's, or ``uv`` on ``PATH``."""
    chosen = os.environ.get(UV_ENV)
    if chosen:
        return chosen
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    on_path = shutil.which("uv")
    if on_path is None:
        raise InstallError(
            distribution,
            "greeter install builds environments with uv, which is not installed: "
            "pip install 'greeter-core[install]', or put uv on PATH, or set GREETER_UV",
        )
    return on_path


def requested_name(spec: str) -> str:
    """The distribution *spec* names: a requirement (``greeter-a>=1``) or a wheel's path."""
    if spec.endswith(".whl"):
        return canonical(os.path.basename(spec).split("-", 1)[0])
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if match is None:
        raise UsageError(f"not a distribution to install: {spec!r} (a requirement such as greeter-x>=1, or a wheel)")
    return canonical(match.group(1))


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the installers' lock (``flock`` on ``install.lock``): one install or uninstall at a time."""
    import fcntl

    os.makedirs(environments_dir(), mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(data_dir(), "install.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install(
    spec: str,
    *,
    find_links: Sequence[str] = (),
    index_url: str | None = None,
    no_index: bool = False,
    upgrade: bool = False,
) -> Installed:
    """Install *spec* into an environment of its own and make it the one in use; :class:`InstallError` if not.

    Without *upgrade*, a ready, healthy environment built for the same
    *spec* is kept as it is. With it (or for another *spec*), a new build
    replaces the one in use atomically; a process using the old one keeps it.
    """
    name = requested_name(spec)
    folder = os.path.join(environments_dir(), name)
    with locked():
        os.makedirs(folder, mode=0o755, exist_ok=True)
        collect(folder)
        existing = current(name)
        if existing is not None and not upgrade and existing.requested == spec and existing.problem() is None:
            plugins = _plugins(existing.site_packages)
            return Installed(existing.distribution, existing.version, plugins, existing.root, False)
        build = os.path.join(folder, f"b-{time.time_ns():x}-{os.getpid()}")
        try:
            env = _build(build, spec, name, find_links=find_links, index_url=index_url, no_index=no_index)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # nothing was ever installed for it: no trace
            raise
        _switch(folder, build)
        collect(folder)
    return Installed(env.distribution, env.version, _plugins(env.site_packages), env.root, True)


def uninstall(distribution: str) -> str:
    """Remove *distribution*'s environment from use (its plugins are gone at once); return its directory.

    Its builds are deleted unless a running greeter still holds one; that
    one goes at the next install or uninstall after it exits.
    """
    name = requested_name(distribution)
    folder = os.path.join(environments_dir(), name)
    with locked():
        try:
            os.unlink(os.path.join(folder, CURRENT))
        except FileNotFoundError:
            installed = False  # never installed, or uninstalled already (a build still in use may be left)
        else:
            installed = True
        if os.path.isdir(folder):
            collect(folder)
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when nothing in it is still in use
        if not installed:
            raise NotInstalledError(distribution)
    return folder


def collect(folder: str) -> list[str]:
    """Delete the builds in *folder* no one uses: not ``current``, and not held by a running greeter.

    A build without a marker is one an install was killed in: never used, so
    deleted. A marked build is deleted only while this holds an exclusive
    ``flock`` of its marker (a greeter that loaded from it holds it shared).
    Call with the installers' lock held. Returns what it kept.
    """
    import fcntl

    try:
        in_use = os.readlink(os.path.join(folder, CURRENT))
    except OSError:
        in_use = None
    kept = []
    for entry in os.listdir(folder):
        path = os.path.join(folder, entry)
        if entry.startswith(".current-"):
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        if entry in (CURRENT, in_use) or not entry.startswith("b-"):
            continue
        try:
            fd = os.open(os.path.join(path, MARKER), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            log.info("removing %s: an install did not finish it", path)
            shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            kept.append(path)
        else:
            os.unlink(os.path.join(path, MARKER))  # first: a greeter locking it after this sees it gone
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
    return kept


def _run(command: list[str], distribution: str) -> None:
    """Run an installer step; its failure is :class:`InstallError` with the installer's reason, on one line."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    env.pop("VIRTUAL_ENV")
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False)
    except OSError as error:
        raise InstallError(distribution, f"cannot run {command[0]}: {error.strerror or error}") from None
    if done.returncode != 0:
        raise InstallError(distribution, f"{os.path.basename(command[0])}: {_reason(done.stderr, done.returncode)}")


def _reason(stderr: str, code: int) -> str:
    """An installer's error output as one line: its own words, without the noise and the indentation."""
    noise = ("Using Python", "Using CPython", "Resolved ", "Prepared ", "Audited ")
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.strip().startswith(noise)]
    text = " ".join(line.removeprefix("error: ").removeprefix("cause: ") for line in lines)
    return (text or f"exited with status {code}")[:600]


def _site_packages() -> str:
    """Where a venv of the host's Python keeps its distributions, relative to the venv."""
    return os.path.join("lib", f"python{host_python()}", "site-packages")


def _build(
    build: str, spec: str, name: str, *, find_links: Sequence[str], index_url: str | None, no_index: bool
) -> Environment:
    """Build *spec* into the new directory *build* and mark it ready; :class:`InstallError` if anything fails."""
    uv = find_uv(name)
    _run([uv, "venv", "--quiet", "--no-project", "--python", sys.executable, build], name)
    site = os.path.join(build, _site_packages())
    hosted = provided()
    constraints = os.path.join(build, _CONSTRAINTS)
    with open(constraints, "w", encoding="utf-8") as file:
        for dist in hosted.values():
            file.write(f"{dist.metadata['Name']}=={dist.version}\n")
            _stand_in(site, dist.metadata["Name"], dist.version)
    command = [uv, "pip", "install", "--quiet", "--python", os.path.join(build, "bin", "python")]
    command += ["--constraints", constraints]
    for links in find_links:
        command += ["--find-links", os.path.abspath(links) if os.path.isdir(links) else links]
    if index_url is not None:
        command += ["--index-url", index_url]
    if no_index:
        command.append("--no-index")
    try:
        _run([*command, spec], name)
    except InstallError as error:
        stand_ins = [dist.metadata["Name"] for dist in hosted.values()]
        if any(re.search(rf"\b{re.escape(n)}\b", error.reason, re.I) for n in stand_ins):
            host = ", ".join(f"{dist.metadata['Name']} {dist.version}" for dist in hosted.values())
            raise ProvidedVersionError(
                name,
                f"it requires a version of what greeter's environment provides ({host}) that it does not have: "
                f"{error.reason}",
            ) from None
        raise
    os.unlink(constraints)
    return _mark(build, spec, name, site)


def _stand_in(site: str, distribution: str, version: str) -> None:
    """A metadata-only ``*.dist-info``: the resolver sees the host's version as installed, and nothing else."""
    folder = os.path.join(site, f"{distribution.replace('-', '_')}-{version}.dist-info")
    os.makedirs(folder)
    with open(os.path.join(folder, "METADATA"), "w", encoding="utf-8") as file:
        file.write(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    with open(os.path.join(folder, "INSTALLER"), "w", encoding="utf-8") as file:
        file.write(_STAND_IN + "\n")
    open(os.path.join(folder, "RECORD"), "w").close()


def _mark(build: str, spec: str, name: str, site: str) -> Environment:
    """Check what was installed, remove the stand-ins, and write the ready marker, last and atomically."""
    from importlib.metadata import distributions

    found = None
    for dist in distributions(path=[site]):
        dist_name = canonical(dist.metadata["Name"] or "")
        if (dist.read_text("INSTALLER") or "").strip() == _STAND_IN:
            shutil.rmtree(str(dist._path), ignore_errors=True)  # type: ignore[attr-defined]
        elif dist_name in provided():
            raise InstallError(name, f"the installer put a copy of {dist_name} into it, which the host provides")
        elif dist_name == name:
            found = dist
    if found is None:
        raise InstallError(name, f"the installer did not install {name} (is {spec!r} its name?)")
    if not found.entry_points.select(group=GROUP):
        raise InstallError(name, f"{name} registers no plugin in {GROUP!r}: it is not a greeter plugin")
    data = {
        "format": FORMAT,
        "distribution": found.metadata["Name"],
        "version": found.version,
        "python": host_python(),
        "interpreter": sys.executable,
        "requested": spec,
        "site_packages": _site_packages(),
    }
    staging = os.path.join(build, f".{MARKER}.staging")
    with open(staging, "w", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(staging, os.path.join(build, MARKER))
    return Environment(found.metadata["Name"], found.version, build, site, host_python(), sys.executable, spec)


def _switch(folder: str, build: str) -> None:
    """Make *build* the one in use: a new symlink renamed over ``current``, one atomic step."""
    link = os.path.join(folder, f".current-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(os.path.basename(build), link)
    os.replace(link, os.path.join(folder, CURRENT))
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _plugins(site: str) -> tuple[str, ...]:
    from importlib.metadata import distributions

    entry_points = (dist.entry_points.select(group=GROUP) for dist in distributions(path=[site]))
    return tuple(sorted({ep.name for selected in entry_points for ep in selected}))


# -- the commands ------------------------------------------------------------------------------------------


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    parser = Parser(prog=prog, description=description)
    parser.add_argument("--json", action="store_true", help="print a JSON array of what was done")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def install_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(
        f"{prog} install",
        "Install each plugin distribution into an environment of its own (built with uv), under "
        "${XDG_DATA_HOME:-~/.local/share}/greeter/envs; greeter-core and stevedore come from greeter's own "
        "environment. Its plugins run with --isolation process. See docs/environments.md.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="a requirement (greeter-x, greeter-x>=1) or a wheel")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR", help="a wheelhouse (repeatable)")
    parser.add_argument("--index-url", metavar="URL", help="the package index (default: uv's, PyPI)")
    parser.add_argument("--no-index", action="store_true", help="use no index: the wheelhouses only (offline)")
    parser.add_argument("--upgrade", action="store_true", help="build anew even when installed (newest versions)")
    return parser


def uninstall_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(f"{prog} uninstall", "Remove plugin distributions installed with greeter install.")
    parser.add_argument("names", nargs="+", metavar="NAME", help="the distribution, e.g. greeter-x")
    return parser


def cmd_install(args: argparse.Namespace) -> int:
    done = []
    for spec in args.specs:
        result = install(
            spec, find_links=args.find_links, index_url=args.index_url, no_index=args.no_index, upgrade=args.upgrade
        )
        done.append(result)
        if not args.json:
            what = "installed" if result.built else "already installed"
            plugins = ", ".join(result.plugins)
            print(f"{what} {result.distribution} {result.version} (plugins: {plugins}) in {result.environment}")
    if args.json:
        print(json.dumps([result.as_dict() for result in done], ensure_ascii=False, indent=2))
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    removed = [{"distribution": name, "environment": uninstall(name)} for name in args.names]
    if args.json:
        print(json.dumps(removed, ensure_ascii=False, indent=2))
    else:
        for entry in removed:
            print(f"uninstalled {entry['distribution']} (was in {entry['environment']})")
    return 0
