"""The wheelhouse: one documented command builds every wheel; a plugin installs from it alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, clean_env

pytestmark = pytest.mark.packaging


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True, env=env, cwd=cwd)


def test_a_plugin_installs_from_the_wheelhouse_into_an_empty_venv(tmp_path: Path) -> None:
    """`pip install --no-index --find-links wheelhouse greeter-chinese` pulls greeter-core and stevedore."""
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    builder = tmp_path / "builder"
    run(sys.executable, "-m", "venv", builder)
    wheelhouse = tmp_path / "wheelhouse"
    # The README's command, verbatim but for the glob, which the shell would expand.
    plugins = sorted(str(p) for p in (REPO / "plugin_packages").glob("greeter-*"))
    run(builder / "bin" / "python", "-m", "pip", "wheel", "--wheel-dir", wheelhouse, ".", *plugins, cwd=REPO, env=env)
    names = sorted(p.name.split("-")[0] for p in wheelhouse.glob("*.whl"))
    assert {"greeter_core", "greeter_chinese", "greeter_english", "stevedore"} <= set(names)

    target = tmp_path / "target"
    run(sys.executable, "-m", "venv", target)
    run(
        target / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        wheelhouse,
        "greeter-chinese",
        env=env,
    )
    installed = run(target / "bin" / "python", "-m", "pip", "list", "--format=freeze", env=env).stdout
    assert "greeter-core==" in installed and "stevedore==" in installed
    result = run(target / "bin" / "greeter", "--driver", "chinese", env=env, cwd=tmp_path)
    assert result.stdout == "你好宇宙\n"
    assert not os.path.exists(target / "lib" / "greeter_english")
