"""toxfile.py: uv finds pyenv's interpreters and nothing else changes; a missing interpreter is named in one line."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from basics import REPO


@pytest.fixture(scope="module")
def toxfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("greeter_toxfile", REPO / "toxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pyenv(tmp_path: Path) -> Path:
    """A pyenv root with three installed versions and its shims directory."""
    for version in ("2.7.18", "3.9.18", "3.11.7", "3.12.1", "3.13.0"):
        (tmp_path / "versions" / version / "bin").mkdir(parents=True)
    (tmp_path / "shims").mkdir()
    return tmp_path


def test_pyenv_root_comes_from_pyenv_root_not_from_home(toxfile: ModuleType, pyenv: Path) -> None:
    """$PYENV_ROOT names pyenv's root, wherever it is; ~/.pyenv is never guessed."""
    assert toxfile.pyenv_root({"PYENV_ROOT": str(pyenv), "HOME": "/nowhere", "PATH": ""}) == pyenv
    assert toxfile.pyenv_root({"HOME": str(pyenv.parent), "PATH": ""}) is None


def test_pyenv_shims_are_replaced_by_each_installed_version(toxfile: ModuleType, pyenv: Path) -> None:
    """uv's search path is PATH with pyenv's shims swapped for each CPython 3's bin, in place; no Python 2."""
    path = os.pathsep.join(["/usr/local/bin", str(pyenv / "shims"), "/usr/bin"])
    found = toxfile.search_path({"PATH": path}, pyenv)
    assert found.split(os.pathsep) == [
        "/usr/local/bin",
        *(str(pyenv / "versions" / version / "bin") for version in ("3.9.18", "3.11.7", "3.12.1", "3.13.0")),
        "/usr/bin",
    ]


def test_without_shims_on_path_the_versions_come_after_path(toxfile: ModuleType, pyenv: Path) -> None:
    """With pyenv not initialised in the shell, PATH still wins and pyenv's versions are searched after it."""
    found = toxfile.search_path({"PATH": "/usr/bin"}, pyenv)
    assert found.split(os.pathsep)[0] == "/usr/bin" and len(found.split(os.pathsep)) == 5


@pytest.mark.parametrize(
    ("environ", "root"),
    [({"PATH": "/usr/bin"}, None), ({"PATH": "/usr/bin", "UV_PYTHON_SEARCH_PATH": "/opt/python/bin"}, "pyenv")],
    ids=["no-pyenv", "set-by-the-user"],
)
def test_nothing_changes_without_pyenv_or_when_the_user_chose(
    toxfile: ModuleType, pyenv: Path, environ: dict[str, str], root: str | None
) -> None:
    """No pyenv, or a search path the user set: uv's default is left alone (None: nothing to set)."""
    assert toxfile.search_path(environ, pyenv if root else None) is None


def test_the_toxfile_never_turns_python_downloads_off(toxfile: ModuleType) -> None:
    """Whether uv may download an interpreter is the user's setting (CI sets it in .ci/run), not the product's."""
    assert "UV_PYTHON_DOWNLOADS" not in (REPO / "toxfile.py").read_text(encoding="utf-8")
    assert "UV_PYTHON_DOWNLOADS=never" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("spec", "root", "line"),
    [
        (
            "cpython3.14",
            Path("/opt/pyenv"),
            "no Python 3.14 found (uv searched PATH, uv's own Pythons and /opt/pyenv/versions) and none "
            "could be downloaded; install one (pyenv install 3.14, or `uv python install 3.14` where the network "
            "allows), or run the other environments: tox -e NAME",
        ),
        (
            "cpython3.14",
            None,
            "no Python 3.14 found (uv searched PATH, uv's own Pythons) and none could be downloaded; install "
            "one (your system's python3.14 package, or `uv python install 3.14` where the network allows), or run "
            "the other environments: tox -e NAME",
        ),
    ],
    ids=["pyenv", "no-pyenv"],
)
def test_a_missing_interpreter_is_one_line_naming_it_and_how_to_get_it(
    toxfile: ModuleType, spec: str, root: Path | None, line: str
) -> None:
    """The line tox prints for an env whose interpreter uv cannot find or fetch."""
    assert toxfile.missing_interpreter(spec, root) == line
