"""Fixtures shared by the core's tests: fixture plugins, sites to install them into, the CLI."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# stevedore picks its on-disk cache directory when it is imported, and its
# cache key can miss changes made within ~2 minutes: keep it out of $HOME and
# private to this session, before anything imports stevedore.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="greeter-tests-cache-")

from plugin_factory import PluginFactory, PluginSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> PluginFactory:
    return PluginFactory(tmp_path_factory.mktemp("plugins"))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty directory to install fixture plugins into; the CLI fixture puts it on PYTHONPATH."""
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def install(factory: PluginFactory, site: Path):
    """Install fixture plugins into ``site``: ``install(PluginSpec(...), ...)``."""

    def install(*specs: PluginSpec) -> None:
        for spec in specs:
            factory.install(spec, site)

    return install


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a greeter subprocess: no inherited Python or greeter settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
    env.update(PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


@pytest.fixture
def greeter_env(site: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: the fixture site on PYTHONPATH, a private stevedore cache."""
    return clean_env(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))


@pytest.fixture
def cli(greeter_env: dict[str, str], tmp_path: Path):
    """Run ``python -m greeter_core ARGS`` to completion; return the CompletedProcess (text)."""

    def run(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "greeter_core", *args],
            env=greeter_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            **kwargs,  # type: ignore[arg-type]
        )

    return run


def forget_plugins() -> None:
    """Make this process see the installed plugins as they are now.

    stevedore keeps entry points per process and never refreshes them (that
    is what greeter's fresh-metadata fallback is for); tests that change
    sys.path start from a clean slate instead of relying on the fallback.
    """
    from stevedore import _cache
    from stevedore.extension import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()
    _cache._c._internal.clear()
    importlib.invalidate_caches()


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put ``site`` on this process's sys.path, for in-process API tests."""
    monkeypatch.syspath_prepend(str(site))
    forget_plugins()
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith("gt_"):
            del sys.modules[name]
    monkeypatch.undo()
    forget_plugins()
