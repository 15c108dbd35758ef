"""The suite itself: it tests the installed greeter-core, never the source tree by accident, and leaves no litter."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from basics import REPO, clean_env
from packaging.requirements import Requirement
from wheels import core_venv, wheel_of_installed

#: A small in-process test file that needs nothing but pytest and greeter-core.
SMALL = "tests/test_contract.py"


def with_dependencies(*names: str) -> list[str]:
    """*names* and every distribution they require here (markers evaluated), each once."""
    found: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.append(name)
        for line in distribution(name).requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def session_env(tmp_path: Path) -> dict[str, str]:
    """A pytest session's environment with a temp dir of its own, and none of this session's caches."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(TMPDIR=str(temp))
    for inherited in ("XDG_CACHE_HOME", "PIP_CACHE_DIR", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(inherited, None)
    return env


@pytest.mark.packaging
def test_python_m_pytest_from_the_checkout_is_refused_in_one_line(core_wheels, tmp_path: Path) -> None:
    """``python -m pytest`` puts the checkout first on sys.path: the session refuses instead of testing the source."""
    env = session_env(tmp_path)
    # greeter-core built from this checkout, as every venv the tests build: not the copy this session tests
    repacked = [wheel_of_installed(name, tmp_path / "wheels") for name in with_dependencies("pytest", "pytest-xdist")]
    python = core_venv(tmp_path / "venv", core_wheels, *repacked, env=env)
    args = ["-p", "no:cacheprovider", "--basetemp", str(tmp_path / "base"), SMALL]

    refused = subprocess.run(
        [python, "-m", "pytest", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    installed = tmp_path / "venv" / "lib"
    assert line.startswith(f"ERROR: refusing to test {REPO / 'greeter_core' / '__init__.py'}: ")
    assert f"installed greeter_core is {installed}" in line and "not python -m pytest from the checkout" in line
    assert os.listdir(env["TMPDIR"]) == []

    # the venv's own pytest script, from the same directory, tests what the venv has installed
    tested = subprocess.run(
        [python.parent / "pytest", "-q", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_session_leaves_nothing_in_the_temp_dir(tmp_path: Path) -> None:
    """A session's stevedore and pip caches (the controller's, an xdist worker's) and its subprocesses' temp dir go."""
    env = session_env(tmp_path)
    pytest_script = Path(sys.executable).parent / "pytest"
    args = ["-q", "-p", "no:cacheprovider", "-n", "1", "--basetemp", str(tmp_path / "base"), SMALL]
    result = subprocess.run([pytest_script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.listdir(env["TMPDIR"]) == []
