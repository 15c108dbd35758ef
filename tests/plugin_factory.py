"""Build real plugin distributions for the tests: source tree -> wheel -> installed copy.

Wheels are built by flit_core's PEP 517 backend, in process (tens of
milliseconds each). "Installing" into a directory unpacks the wheel as an
installer does, ``RECORD`` hashes included; that directory then goes on
``PYTHONPATH`` (subprocesses) or ``sys.path`` (in-process tests). Tests that
need a real venv install the same wheels with pip or uv.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

GREETING = '''
from greeter_core import Greeter


class Plugin(Greeter):
    language = "Test"

    def greet(self, name):
        return "{word} " + (name or "Universe")
'''


def greeter_code(word: str) -> str:
    """Source of a well-behaved plugin whose greeting starts with *word*."""
    return GREETING.replace("{word}", word)


@dataclass(frozen=True)
class PluginSpec:
    """What a fixture plugin distribution is: its driver name, code and metadata."""

    driver: str
    code: str = field(default=GREETING.replace("{word}", "Hi"))
    version: str = "1.0"
    distribution: str = ""
    attr: str = "Plugin"
    extra_files: tuple[tuple[str, str], ...] = ()
    dependencies: tuple[str, ...] = ()
    module_name: str = ""
    """Fix the module name, e.g. for two versions of one plugin (default: unique per code)."""

    @property
    def dist(self) -> str:
        return self.distribution or f"greeter-{self.driver}"

    @property
    def module(self) -> str:
        # Unique per distribution and code, so two fixture plugins never share
        # a module name in one process.
        if self.module_name:
            return self.module_name
        digest = hashlib.sha256(f"{self.dist}{self.version}{self.code}".encode()).hexdigest()[:8]
        return f"gt_{re.sub(r'[^a-z0-9]', '_', self.dist.lower())}_{digest}"

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def write_project(self, root: Path) -> Path:
        """Write a flit project for this plugin under *root*; return its pyproject.toml."""
        root.mkdir(parents=True, exist_ok=True)
        package = root / self.module
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text(
            '"""A greeter plugin built by the tests."""\n' + textwrap.dedent(self.code), encoding="utf-8"
        )
        for name, text in self.extra_files:
            (package / name).write_text(text, encoding="utf-8")
        deps = ", ".join(f'"{d}"' for d in self.dependencies)
        pyproject = root / "pyproject.toml"
        pyproject.write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["flit_core>=3.9,<5"]
                build-backend = "flit_core.buildapi"

                [project]
                name = "{self.dist}"
                version = "{self.version}"
                description = "fixture plugin {self.driver}"
                dependencies = [{deps}]

                [project.entry-points."greeter.plugins"]
                {self.driver} = "{self.target}"

                [tool.flit.module]
                name = "{self.module}"
                """
            ),
            encoding="utf-8",
        )
        return pyproject


class PluginFactory:
    """Builds each fixture plugin's wheel once per test session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._wheels: dict[PluginSpec, Path] = {}

    def wheel(self, spec: PluginSpec) -> Path:
        if spec not in self._wheels:
            from flit_core.wheel import make_wheel_in

            project = self.workdir / "src" / f"{spec.module}-{len(self._wheels)}"
            pyproject = spec.write_project(project)
            out = self.workdir / "wheels" / spec.module
            out.mkdir(parents=True, exist_ok=True)
            self._wheels[spec] = Path(make_wheel_in(pyproject, out).file)
        return self._wheels[spec]

    def install(self, spec: PluginSpec, site: Path) -> Path:
        """Unpack the plugin's wheel into *site*, as an installer would; return the dist-info."""
        site.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(self.wheel(spec)) as wheel:
            wheel.extractall(site)
        [dist_info] = site.glob(f"{spec.dist.replace('-', '_')}-{spec.version}.dist-info")
        return dist_info


def build_core_wheel(repo: Path, out: Path) -> Path:
    """A wheel of greeter-core from the repository, for tests that build their own venvs."""
    from flit_core.wheel import make_wheel_in

    out.mkdir(parents=True, exist_ok=True)
    return Path(make_wheel_in(repo / "pyproject.toml", out).file)


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
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{dist_info.removesuffix('.dist-info')}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in files:
            data = file.read_binary()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            archive.writestr(file.as_posix(), data)
            record.append(f"{file.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def uv(*args: str | Path, env: dict[str, str]) -> None:
    """Run uv (a test dependency) quietly; fail the test with its output if it fails."""
    from uv import find_uv_bin

    subprocess.run([find_uv_bin(), *map(str, args)], env=env, check=True, capture_output=True, text=True)


def core_venv(root: Path, *wheels: Path, env: dict[str, str], seed: bool = False) -> Path:
    """A fresh venv at *root* with greeter-core from this checkout, stevedore and *wheels*; its python.

    Offline: stevedore is the copy under test, repacked. ``seed`` adds pip.
    """
    from conftest import REPO

    uv("venv", "--quiet", *(["--seed"] if seed else []), "--python", sys.executable, root, env=env)
    python = root / "bin" / "python"
    built = root.parent / f"{root.name}-wheels"
    core = [build_core_wheel(REPO, built), wheel_of_installed("stevedore", built)]
    uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", python, *core, *wheels, env=env)
    return python
