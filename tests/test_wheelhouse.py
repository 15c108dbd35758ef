"""The wheelhouse: the documented command builds every wheel; a plugin installs from it alone, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from basics import REPO, clean_env
from docblocks import block_after, copy_checkout, sh

pytestmark = pytest.mark.packaging

DEVELOPMENT = REPO / "docs" / "development.md"


def test_a_plugin_installs_from_the_wheelhouse_into_an_empty_venv(tmp_path: Path) -> None:
    """The docs' two commands, as written: `pip wheel` builds the wheelhouse; `pip install --no-index` uses it alone."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    builder = tmp_path / "builder"
    subprocess.run([sys.executable, "-m", "venv", builder], check=True)
    [build] = block_after(DEVELOPMENT, "One command builds wheels").commands()
    done = sh(build, {**env, "PATH": f"{builder / 'bin'}{os.pathsep}{env['PATH']}"}, checkout)
    assert done.returncode == 0, done.stdout[-3000:]
    names = sorted(p.name.split("-")[0] for p in (checkout / "wheelhouse").glob("*.whl"))
    assert {"greeter_core", "greeter_chinese", "greeter_english", "stevedore"} <= set(names)

    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "venv", target], check=True)
    in_target = {**env, "PATH": f"{target / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(target)}
    [install] = block_after(DEVELOPMENT, "Any plugin then installs from it alone").commands()
    done = sh(install, in_target, checkout)
    assert done.returncode == 0, done.stdout[-3000:]
    installed = sh("pip list --format=freeze", in_target, checkout).stdout
    assert "greeter-core==" in installed and "stevedore==" in installed and "greeter-english" not in installed
    assert sh("greeter --driver chinese", in_target, tmp_path).stdout == "你好宇宙\n"
