"""The README is executable: CI runs its test command, and its plugin example really works."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, clean_env, core_venv

README = (REPO / "README.md").read_text(encoding="utf-8")


def code_block_after(marker: str) -> str:
    """The first fenced code block following *marker* in the README."""
    start = README.index(marker)
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(README, start)
    assert match, marker
    return match.group(1)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """`.ci/run` calls the very command the README gives for the test matrix."""
    command = code_block_after("Run the whole test matrix").strip()
    assert command in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_the_plugin_written_from_the_readme_greets(tmp_path: Path, site: Path, cli, builder) -> None:
    """The 'Writing a plugin' example, copied as written, builds, installs and greets."""
    project = tmp_path / "greeter-esperanto"
    (project / "greeter_esperanto").mkdir(parents=True)
    (project / "pyproject.toml").write_text(code_block_after("`pyproject.toml`:"), encoding="utf-8")
    (project / "greeter_esperanto" / "__init__.py").write_text(
        code_block_after("`greeter_esperanto/__init__.py`:"), encoding="utf-8"
    )
    wheel = builder.wheel(project)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)

    assert cli("--driver", "esperanto").stdout == "Saluton Universo\n"
    assert cli("--driver", "esperanto", "--name", "Zamenhof").stdout == "Saluton Zamenhof\n"
    assert cli("check", "esperanto").returncode == 0


@pytest.mark.packaging
def test_the_three_plugin_author_commands_make_a_tested_installable_plugin(tmp_path: Path, core_wheels) -> None:
    """The README's three commands, run as written in a venv with greeter, scaffold, install and pass."""
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never")
    venv = core_venv(tmp_path / "venv", core_wheels, env=env, seed=True).parent.parent
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    commands = [line for line in code_block_after("### A new plugin in three commands").splitlines() if line.strip()]
    assert len(commands) == 3
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    greeting = subprocess.run(
        ["greeter", "--driver", "esperanto"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert greeting.stdout == "Saluton Universe\n"
