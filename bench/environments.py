"""The interpreters and venvs the figures run in: identical but for the thing being measured.

Per interpreter, one venv per size of installation: greeter-core and the
shipped plugins, plus 0, 100, 1,000 or 5,000 extra distributions, 100 of
them registering a greeter plugin (all of them at 100). Extra distributions
are written the way an installer lays them out (a module plus a
``*.dist-info`` with METADATA, entry points and RECORD), which is all that
discovery and stevedore ever look at. Everything is installed as a pip user
has it: from wheels, bytecode compiled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("english", "chinese", "german", "spanish")

#: Extra distributions per venv, and how many of them register a plugin.
SIZES = (0, 100, 1000, 5000)
PLUGINS = 100


class Venv(NamedTuple):
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def greeter(self) -> str:
        return str(self.path / "bin" / "greeter")

    @property
    def site_packages(self) -> Path:
        [site] = self.path.glob("lib/python3.*/site-packages")
        return site


def find_interpreter(version: str) -> str:
    """The CPython *version* ("3.12") to measure: pyenv's, else one on PATH, else the one uv finds."""
    root = os.environ.get("PYENV_ROOT")
    if root:
        found = sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))
        if found:
            return str(found[-1])
    on_path = shutil.which(f"python{version}")
    if on_path and subprocess.run([on_path, "-c", "pass"], capture_output=True).returncode == 0:
        return on_path
    from uv import find_uv_bin

    done = subprocess.run(
        [find_uv_bin(), "python", "find", "--no-python-downloads", version], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: no Python {version} found (pyenv, PATH, uv); install it or leave it out (--python)")
    return done.stdout.strip()


def build_wheels(out: Path) -> Path:
    """Wheels of the core and the shipped plugins, built through a PEP 517 front end (``uv build``).

    Without build isolation: the bench env holds setuptools (tox.ini). Each
    project is built from a copy, so no build/ or *.egg-info lands in the
    checkout. The wheels are pure Python: one build serves every interpreter.
    """
    from uv import find_uv_bin

    out.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info", "tests")
    sources = out / "src"
    core = sources / "greeter-core"
    shutil.copytree(REPO / "greeter_core", core / "greeter_core", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, core / name)
    projects = [core]
    for language in SHIPPED:
        projects.append(
            shutil.copytree(REPO / "plugin_packages" / f"greeter-{language}", sources / language, ignore=skip)
        )
    for project in projects:
        subprocess.run(
            [
                find_uv_bin(),
                "build",
                "-q",
                "--wheel",
                "--no-build-isolation",
                "--python",
                sys.executable,
                "--out-dir",
                str(out),
                str(project),
            ],
            check=True,
        )
    return out


def make_venv(path: Path, wheels: Path, python: str) -> Venv:
    """A fresh venv of *python* with greeter-core and the shipped plugins installed from *wheels*, compiled."""
    from uv import find_uv_bin

    uv = find_uv_bin()
    subprocess.run([uv, "venv", "-q", "--python", python, str(path)], check=True)
    packages = ["greeter-core", *(f"greeter-{language}" for language in SHIPPED)]
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--compile-bytecode",
            "--python",
            str(path / "bin" / "python"),
            "--find-links",
            str(wheels),
            *packages,
        ],
        check=True,
    )
    return Venv(path)


def add_distributions(venv: Venv, count: int, plugins: int) -> None:
    """Lay out *count* extra distributions, the first *plugins* of them registering a greeter plugin.

    A plugin module records its own import in ``$BENCH_IMPORT_MARK``, so a
    figure can prove that listing imported none of them.
    """
    site = venv.site_packages
    for i in range(count):
        name = f"benchdist_{i:04d}"
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: benchdist-{i:04d}\nVersion: 1.0\n")
        files = [f"{name}-1.0.dist-info/METADATA,,", f"{name}-1.0.dist-info/RECORD,,"]
        if i < plugins:
            (site / f"{name}.py").write_text(
                "import os\n"
                "open(os.environ.get('BENCH_IMPORT_MARK', os.devnull), 'a').write(__name__ + '\\n')\n"
                "class Plugin:\n"
                "    def __init__(self, context): pass\n"
                "    def greet(self, name): return 'bench ' + name\n"
            )
            (info / "entry_points.txt").write_text(f"[greeter.plugins]\nbench{i:04d} = {name}:Plugin\n")
            files += [f"{name}.py,,", f"{name}-1.0.dist-info/entry_points.txt,,"]
        elif i % 3 == 0:
            (info / "entry_points.txt").write_text(f"[console_scripts]\n{name} = {name}:main\n")
            files.append(f"{name}-1.0.dist-info/entry_points.txt,,")
        (info / "RECORD").write_text("\n".join(files) + "\n")


def stevedore_cache(venv: Venv, env: dict[str, str]) -> bool:
    """Whether stevedore keeps its on-disk entry-point cache for this venv's interpreter (not under /tmp, say).

    Asked of stevedore itself, in the venv: its own rule decides.
    """
    done = subprocess.run(
        [venv.python, "-c", "from stevedore import _cache; print(_cache._c._disable_caching)"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return not venv.python.startswith("/tmp")
    return done.stdout.strip() == "False"
