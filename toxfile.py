"""tox's inline plugin: let uv find the interpreters pyenv installed, and name a missing one in one line.

tox-uv asks uv for ``cpython3.12`` and the like, and uv looks for
``python3.12`` on PATH. Under pyenv that name is a shim that fails for every
version but the selected ones, and uv stops at the first failure: so tox
reported ``pyenv: python3.12: command not found`` although 3.12 is installed.
When pyenv is in use ($PYENV_ROOT, or else ``pyenv root``), uv's own search
path for interpreters (``UV_PYTHON_SEARCH_PATH``, uv >= 0.11.8) becomes PATH
with pyenv's shims replaced by each ``$PYENV_ROOT/versions/*/bin``. PATH
itself, and everything else, is left alone: without pyenv nothing changes,
a search path the user set wins, and uv still downloads a missing
interpreter where its settings and the network allow.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SEARCH_PATH = "UV_PYTHON_SEARCH_PATH"


def pyenv_root(environ: Mapping[str, str]) -> Path | None:
    """Where pyenv keeps its interpreters, if pyenv is in use: $PYENV_ROOT, else what ``pyenv root`` says."""
    if environ.get("PYENV_ROOT"):
        return Path(environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv", path=environ.get("PATH"))
    if pyenv is None:
        return None
    done = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def search_path(environ: Mapping[str, str], root: Path | None) -> str | None:
    """uv's interpreter search path for this environment, or None to leave uv's default (PATH) alone."""
    if root is None or environ.get(SEARCH_PATH):
        return None
    # CPython 3 only: uv stops at an interpreter it cannot inspect, such as a Python 2.
    installed = sorted((root / "versions").glob("3.*/bin"), key=lambda path: _version_key(path.parent.name))
    versions = [str(path) for path in installed if path.is_dir()]
    if not versions:
        return None
    shims = str(root / "shims")
    entries = [entry for entry in environ.get("PATH", "").split(os.pathsep) if entry]
    if shims in entries:
        at = entries.index(shims)
        entries[at : at + 1] = versions
        entries = [entry for entry in entries if entry != shims]
    else:
        entries += versions
    return os.pathsep.join(entries)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)[:3])


def missing_interpreter(spec: str, root: Path | None) -> str:
    """The one line that says which interpreter an env lacks and how to get it (tox puts the env's name first)."""
    version = spec.removeprefix("cpython").removeprefix("py")
    if version.isdigit() and len(version) > 1:
        version = f"{version[0]}.{version[1:]}"
    where = "PATH, uv's own Pythons" + (f" and {root}/versions" if root is not None else "")
    get = f"pyenv install {version}" if root is not None else f"your system's python{version} package"
    return (
        f"no Python {version} found (uv searched {where}) and none could be downloaded; "
        f"install one ({get}, or `uv python install {version}` where the network allows), "
        f"or run the other environments: tox -e NAME"
    )


try:
    from tox.plugin import impl
except ImportError:  # imported by the tests, which check the functions above without tox

    def impl(function: Any) -> Any:
        return function


_ROOT: Path | None = None


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    """Once, as tox starts: point uv's interpreter search at pyenv's versions, if pyenv is in use."""
    global _ROOT
    _ROOT = pyenv_root(os.environ)
    if (path := search_path(os.environ, _ROOT)) is not None:
        os.environ[SEARCH_PATH] = path


@impl
def tox_env_teardown(tox_env: Any) -> None:
    """After an env whose virtualenv could not be made: if uv finds no interpreter for it, say so in one line."""
    venv_dir = getattr(tox_env, "venv_dir", None)
    if venv_dir is None or (Path(venv_dir) / "bin" / "python").exists():
        return
    try:
        spec = tox_env.env_version_spec()
        uv = tox_env.uv
    except Exception:  # not a tox-uv env, or no spec: nothing to say
        return
    found = subprocess.run([uv, "python", "find", "--no-python-downloads", spec], capture_output=True, check=False)
    if found.returncode != 0:
        logging.getLogger(__name__).error("%s", missing_interpreter(spec, _ROOT))
