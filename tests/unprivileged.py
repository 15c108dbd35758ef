"""greeter as an ordinary user: a venv every user can read, and commands run as ``nobody``.

CI runs as root, and root's ``CAP_SYS_PTRACE`` reaches into any process: what
a same-user worker may do to its host (ptrace, ``/proc/<pid>/mem``) shows only
as another user. pyenv's interpreters live in ``/root`` (mode 0700), which
``nobody`` cannot enter; Debian's ``/usr/bin/python3.11`` is world-readable,
so the venv is built from it, in a world-traversable directory, with the
greeter-core wheel under test and the fixture plugins a test installs.
Use the session fixture :func:`unprivileged` (import it into the test module).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from basics import clean_env
from plugins import PluginFactory, PluginSpec
from wheels import uv

#: The interpreter the venv is built from: one every user can run.
SYSTEM_PYTHON = Path("/usr/bin/python3.11")

#: The ordinary user the commands run as.
USER = "nobody"


def missing() -> str | None:
    """Why greeter cannot be run as an ordinary user here, or None."""
    if os.geteuid() != 0:
        return "switching to the user 'nobody' needs root (the suite runs as root in CI)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no world-readable interpreter at {SYSTEM_PYTHON} to build a venv for 'nobody' from"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER!r} on this machine"
    return None


class Unprivileged:
    """A venv at *root* that ``nobody`` can run, and ways to run greeter from it as ``nobody``."""

    def __init__(self, root: Path, factory: PluginFactory, core: tuple[Path, ...]) -> None:
        user = pwd.getpwnam(USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.root = root
        self.factory = factory
        self.python = root / "venv" / "bin" / "python"
        self.home = root / "home"
        self.home.mkdir()
        os.chown(self.home, self.uid, self.gid)
        self._build_env = clean_env(UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1", UV_CACHE_DIR=str(root / "uv"))
        uv("venv", "--quiet", "--python", SYSTEM_PYTHON, root / "venv", env=self._build_env)
        self._installed: set[PluginSpec] = set()
        self._pip(*core)

    def _pip(self, *wheels: Path) -> None:
        uv(
            "pip",
            "install",
            "--quiet",
            "--offline",
            "--no-index",
            "--python",
            self.python,
            *wheels,
            env=self._build_env,
        )

    def install(self, *specs: PluginSpec) -> None:
        """Install fixture plugins into the shared venv (each once per session)."""
        wanted = [spec for spec in specs if spec not in self._installed]
        if wanted:
            self._pip(*(self.factory.wheel(spec) for spec in wanted))
            self._installed.update(wanted)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a greeter run as ``nobody``: its own home and caches."""
        return clean_env(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / "cache"), USER=USER, **extra)

    def popen(self, *args: str, **options: object) -> subprocess.Popen[str]:
        """``python -m greeter_core ARGS`` as ``nobody``, from the venv (stdout, stderr piped unless *options* say)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [str(self.python), "-m", "greeter_core", *args],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd=self.home,
            env=self.env(),
            text=True,
            encoding="utf-8",
            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options},
        )

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``python -m greeter_core ARGS`` as ``nobody``, to completion."""
        with self.popen(*args) as process:
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="session")
def unprivileged(factory: PluginFactory, core_wheels: tuple[Path, Path]) -> Iterator[Unprivileged]:
    """greeter-core (this checkout) in a venv of /usr/bin/python3.11 that ``nobody`` runs; skipped, with the
    reason, where the suite is not root or that interpreter is missing."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="greeter-unprivileged-", dir="/tmp"))
    root.chmod(0o755)  # mkdtemp makes it 0700: nobody could not enter it
    try:
        yield Unprivileged(root, factory, core_wheels)
    finally:
        shutil.rmtree(root, ignore_errors=True)
