"""greeter lock pins what runs before any plugin: greeter-core's own files (its byte-code caches checked
against their sources) and the environment's .pth files; a poisoned core .pyc or a new .pth is refused."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from basics import clean_env
from plugins import PluginSpec
from wheels import core_venv

PLAIN = PluginSpec("lockcore")

#: What the venv's interpreter says about its greeter_core.printable: the source and the cache Python reads.
WHERE = (
    "import json, importlib.util, site, greeter_core.printable as p; "
    "print(json.dumps([p.__file__, importlib.util.cache_from_source(p.__file__), site.getsitepackages()[0]]))"
)


class Env:
    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python = root, python
        self.env = clean_env(XDG_CACHE_HOME=str(root / "cache"))
        self.lock = root / "greeter.lock"
        source, cache, site = json.loads(self.run_python("-c", WHERE).stdout)
        self.source, self.cache, self.site = Path(source), Path(cache), Path(site)

    def run_python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args], env=self.env, cwd=self.root, capture_output=True, text=True, timeout=60
        )

    def greeter(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run_python("-m", "greeter_core", *args)


@pytest.fixture
def venv(tmp_path: Path, factory, core_wheels) -> Env:
    root = tmp_path / "venv"
    python = core_venv(root, core_wheels, factory.wheel(PLAIN), env=clean_env(UV_NO_CONFIG="1"))
    env = Env(tmp_path, python)
    assert env.greeter("lock", "--output", str(env.lock)).returncode == 0
    return env


def poison(env: Env) -> None:
    """Write greeter_core/__pycache__/printable.*.pyc from other code, with the real source's mtime and size."""
    evil = env.root / "printable.py"
    evil.write_text(env.source.read_text() + "\nPOISONED = True\n")
    compiled = env.root / "evil.pyc"
    assert (
        env.run_python("-c", f"import py_compile; py_compile.compile({str(evil)!r}, {str(compiled)!r})").returncode == 0
    )
    info = env.source.stat()
    data = bytearray(compiled.read_bytes())
    data[8:16] = (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + info.st_size.to_bytes(4, "little")
    env.cache.parent.mkdir(exist_ok=True)
    env.cache.write_bytes(bytes(data))
    shown = env.run_python("-c", "import greeter_core.printable as p; print(getattr(p, 'POISONED', False))")
    assert shown.stdout.strip() == "True", "the planted cache is what Python imports"


def test_the_lock_pins_greeter_cores_own_files_and_the_pth_files(venv: Env) -> None:
    """The lock has a [core] table with greeter-core's sources and a [pth-files] table of the venv's .pth files."""
    data = tomllib.loads(venv.lock.read_text())
    core = data["core"]["greeter-core"]
    assert "greeter_core/printable.py" in core["files"]
    assert not [path for path in core["files"] if "__pycache__" in path]
    assert set(data["pth-files"]) == {str(path) for path in venv.site.glob("*.pth")}


def test_a_poisoned_byte_code_cache_of_greeter_core_is_refused_by_check_and_lock(venv: Env) -> None:
    """A greeter_core .pyc holding other code than its source (header forged to match) fails lock --check and --lock."""
    poison(venv)
    checked = venv.greeter("lock", "--check", "--output", str(venv.lock))
    assert checked.returncode == 1, checked.stderr
    assert "greeter-core: greeter_core/__pycache__/printable." in checked.stdout + checked.stderr
    refused = venv.greeter("--driver", "lockcore", "--lock", str(venv.lock))
    assert refused.returncode != 0 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and "__pycache__/printable." in refused.stderr


def test_a_new_pth_file_is_refused_by_check_and_lock(venv: Env) -> None:
    """A .pth dropped into site-packages after the lock was written is a difference, and --lock refuses."""
    (venv.site / "zz-dropped.pth").write_text("import sys\n")
    checked = venv.greeter("lock", "--check", "--output", str(venv.lock))
    assert checked.returncode == 1
    assert "zz-dropped.pth: is not in the lock" in checked.stdout + checked.stderr
    refused = venv.greeter("--driver", "lockcore", "--lock", str(venv.lock))
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1 and "zz-dropped.pth" in refused.stderr


def test_the_control_case_an_untouched_environment_passes(venv: Env) -> None:
    """Without the attacks, lock --check passes and --lock greets."""
    assert venv.greeter("lock", "--check", "--output", str(venv.lock)).returncode == 0
    assert venv.greeter("--driver", "lockcore", "--lock", str(venv.lock)).stdout.strip() == "Hi Universe"
