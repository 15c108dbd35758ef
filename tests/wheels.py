"""Wheels and venvs: fixture projects built once through a PEP 517 front end, greeter-core from this checkout,
and real venvs (uv, offline) to install them into."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from basics import REPO, clean_env


def package_init(docstring: str, code: str) -> str:
    """A fixture package's ``__init__.py``: its docstring, then its code."""
    return f'"""{docstring}"""\n' + textwrap.dedent(code)


def write_project(
    root: Path,
    *,
    name: str,
    version: str,
    package: str,
    code: str,
    description: str,
    docstring: str,
    dependencies: Sequence[str] = (),
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    extra_files: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write a setuptools project of one package under *root*; return its pyproject.toml.

    The package's ``__init__.py`` is *docstring* and *code*; *entry_points* maps a group to its names and targets.
    """
    root.mkdir(parents=True, exist_ok=True)
    directory = root / package
    directory.mkdir(exist_ok=True)
    (directory / "__init__.py").write_text(package_init(docstring, code), encoding="utf-8")
    for file, text in extra_files:
        (directory / file).write_text(text, encoding="utf-8")
    deps = ", ".join(f'"{d}"' for d in dependencies)
    groups = "".join(
        f'\n[project.entry-points."{group}"]\n' + "".join(f'{key} = "{value}"\n' for key, value in points.items())
        for group, points in (entry_points or {}).items()
    )
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            description = "{description}"
            dependencies = [{deps}]
            """
        )
        + groups
        + f'\n[tool.setuptools]\npackages = ["{package}"]\n',
        encoding="utf-8",
    )
    return pyproject


#: Set by tox to one directory for all its envs: a fixture wheel is then built once per tox run.
WHEEL_CACHE_ENV = "GREETER_TEST_WHEELS"


class WheelBuilder:
    """Builds wheels through a PEP 517 front end (``uv build``), each distinct project once.

    The build runs in this test environment, which holds setuptools (the
    ``test`` extra), without build isolation: creating an isolated build
    environment per wheel would cost more than the build. Wheels are kept by
    a digest of the project's files and the setuptools version, so a cache
    shared across sessions and interpreters (the wheels are pure Python)
    can never serve a stale one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def wheel(self, project: Path) -> Path:
        """The wheel of the project in directory *project*, built unless an identical one was."""
        done = self.root / _digest(project)
        # One build per project even when pytest-xdist's workers ask for it at once: the others wait.
        with open(f"{done}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_dir():
                scratch = Path(tempfile.mkdtemp(prefix=f"{done.name}.", dir=self.root))
                # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
                source = shutil.copytree(project, scratch / "src", ignore=_NOT_SOURCE)
                uv("build", "--quiet", "--wheel", "--no-build-isolation", "--python", sys.executable,
                   "--out-dir", scratch / "dist", source, env=clean_env(UV_NO_CONFIG="1"))  # fmt: skip
                (scratch / "dist").rename(done)
                shutil.rmtree(scratch, ignore_errors=True)
        [wheel] = done.glob("*.whl")
        return wheel


_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info")


def _digest(project: Path) -> str:
    from importlib.metadata import version

    digest = hashlib.sha256(f"setuptools {version('setuptools')}".encode())
    for directory, dirs, files in os.walk(project):
        dirs[:] = sorted(set(dirs) - _NOT_SOURCE(directory, dirs))
        for name in sorted(set(files) - _NOT_SOURCE(directory, files)):
            path = Path(directory, name)
            digest.update(b"\0" + path.relative_to(project).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def wheel_builder(session_dir: Path) -> WheelBuilder:
    """The session's builder: tox's shared directory when tox set one, else *session_dir*."""
    shared = os.environ.get(WHEEL_CACHE_ENV)
    return WheelBuilder(Path(shared) if shared else session_dir)


#: What a wheel of greeter-core is built from.
CORE_SOURCES = ("greeter_core", "pyproject.toml", "README.md")


def build_core_wheel(builder: WheelBuilder, scratch: Path) -> Path:
    """A wheel of greeter-core from this checkout (built once per content), for tests that build venvs."""
    source = Path(tempfile.mkdtemp(prefix="greeter-core-", dir=scratch))
    for name in CORE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=_NOT_SOURCE)
        else:
            shutil.copy2(REPO / name, source / name)
    return builder.wheel(source)


def wheel_of_installed(distribution: str, out: Path) -> Path:
    """Repack an installed pure-Python distribution (here: stevedore) as a wheel, so that a test
    venv gets the very version under test without a network or an index."""
    from importlib.metadata import distribution as find_distribution

    dist = find_distribution(distribution)
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [
        f for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts and f.name not in skipped
    ]
    [dist_info] = {f.parts[0] for f in files if f.parts[0].endswith(".dist-info")}
    return pack_wheel(out, dist_info, {file.as_posix(): file.read_binary() for file in files})


def pack_wheel(out: Path, dist_info: str, files: Mapping[str, bytes]) -> Path:
    """Zip *files* (dist-info included, RECORD aside) into a pure-Python wheel in *out*, its RECORD written."""
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{dist_info.removesuffix('.dist-info')}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            archive.writestr(name, data)
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def write_wheel(
    out: Path,
    *,
    name: str,
    version: str,
    package: str,
    code: str,
    description: str,
    docstring: str,
    dependencies: Sequence[str] = (),
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    extra_files: Sequence[tuple[str, str]] = (),
) -> Path:
    """The wheel :func:`write_project` and setuptools would make of the same arguments, written directly.

    A fixture plugin only has to be a distribution installers and
    ``importlib.metadata`` accept (as pip's own tests make theirs); a PEP 517
    build of each of the suite's ~160 fixture plugins cost more CPU than any
    other step of the py311 env. Building through setuptools is tested where
    it is the subject: the scaffold, the shipped plugins, greeter-core.
    """
    stem = f"{name.replace('-', '_')}-{version}"
    dist_info = f"{stem}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {description}\n" + "".join(
        f"Requires-Dist: {requirement}\n" for requirement in dependencies
    )
    groups = "".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items()) + "\n"
        for group, points in (entry_points or {}).items()
    )
    files = {
        f"{package}/{file}": text.encode()
        for file, text in [("__init__.py", package_init(docstring, code)), *extra_files]
    }
    wheel = "Wheel-Version: 1.0\nGenerator: greeter-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist_info}/METADATA"] = metadata.encode()
    files[f"{dist_info}/WHEEL"] = wheel.encode()
    files[f"{dist_info}/entry_points.txt"] = groups.encode()
    files[f"{dist_info}/top_level.txt"] = f"{package}\n".encode()
    return pack_wheel(out, dist_info, files)


def uv(*args: str | Path, env: dict[str, str]) -> None:
    """Run uv (a test dependency) quietly; fail the test with its output if it fails."""
    from uv import find_uv_bin

    subprocess.run([find_uv_bin(), *map(str, args)], env=env, check=True, capture_output=True, text=True)


class Venv(NamedTuple):
    """A real venv built for one test, and the environment to run its programs in."""

    python: Path
    env: dict[str, str]

    def install(self, *wheels: Path) -> None:
        """Install (or upgrade to) *wheels*, offline, as `pip install` would, while greeter may be running."""
        uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", self.python, *wheels, env=self.env)


def core_venv(root: Path, core: Sequence[Path], *wheels: Path, env: dict[str, str], seed: bool = False) -> Path:
    """A fresh venv at *root* holding the *core* wheels (greeter-core and stevedore) and *wheels*; its python.

    Offline: no index is asked. ``seed`` adds pip.
    """
    uv("venv", "--quiet", *(["--seed"] if seed else []), "--python", sys.executable, root, env=env)
    python = root / "bin" / "python"
    uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", python, *core, *wheels, env=env)
    return python
