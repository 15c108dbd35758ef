"""The venvs the process-level figures run in: identical but for the thing being measured.

``base`` holds greeter-core and the shipped plugins; ``hundred`` adds 100
plugin distributions; ``crowded`` adds 1,000 distributions, 100 of them in
``greeter.plugins``. Extra distributions are written the way an installer
lays them out (a module plus a ``*.dist-info`` with METADATA, entry points and
RECORD), which is all that discovery and stevedore ever look at.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("english", "chinese", "german", "spanish")


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
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.path / "lib" / version / "site-packages"


def build_wheels(out: Path) -> Path:
    """Wheels of the core and the shipped plugins, built through a PEP 517 front end (``uv build``).

    Without build isolation: the bench env holds setuptools (tox.ini). Each
    project is built from a copy, so no build/ or *.egg-info lands in the checkout.
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


def make_venv(path: Path, wheels: Path) -> Venv:
    """A fresh venv with greeter-core and the shipped plugins installed from *wheels*."""
    from uv import find_uv_bin

    uv = find_uv_bin()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(path)], check=True)
    packages = ["greeter-core", *(f"greeter-{language}" for language in SHIPPED)]
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(path / "bin" / "python"), "--find-links", str(wheels), *packages],
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
