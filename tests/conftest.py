"""Fixtures shared by the core's tests: fixture plugins, sites and venvs to install them into, the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# stevedore picks its on-disk cache directory when it is imported, and its
# cache key can miss changes made within ~2 minutes: keep it out of $HOME and
# private to this session, before anything imports stevedore.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="greeter-tests-cache-")
# pip's downloads (setuptools for isolated builds, stevedore, pytest), shared by every pip the tests run in
# this session (pytest-xdist's workers inherit the controller's), where each test otherwise has a cache of its own.
os.environ["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or tempfile.mkdtemp(prefix="greeter-tests-pip-")

# The suite sends real Ctrl-C's to the greeter it starts, and greeter's one-shot commands, as Python
# itself, leave a SIGINT they inherited ignored alone. A session a script started in the background
# (`tox &`) inherits SIGINT ignored and would pass that on: its greeters start as from a terminal instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from basics import clean_env
from plugins import ALPHA_V1, BETA, PluginFactory, PluginSpec, forget_plugins
from running import RunningGreeter, cli_runner, launcher
from wheels import Venv, WheelBuilder, build_core_wheel, core_venv, wheel_builder, wheel_of_installed

#: The temporary directories this process made, removed when its session ends: its stevedore cache, and
#: the pip cache unless it inherited it (a pytest-xdist worker, or a pip cache the user chose).
MADE = [os.environ["XDG_CACHE_HOME"]]
# What the session's subprocesses leave in the temp dir (a killed greeter's files, uv's build locks,
# Chromium's profiles) goes into one directory of the session's, removed with the rest: world-writable
# and sticky, as /tmp is, for the greeters the tests run as an ordinary user. The xdist workers inherit it.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="greeter-tests-tmp-")
    os.chmod(os.environ["TMPDIR"], 0o1777)
    MADE.append(os.environ["TMPDIR"])
if "PYTEST_XDIST_WORKER" not in os.environ and os.path.basename(os.environ["PIP_CACHE_DIR"]).startswith(
    "greeter-tests-pip-"
):
    MADE.append(os.environ["PIP_CACHE_DIR"])


def installed_core() -> str:
    """Where this interpreter's installed greeter_core is: what ``python -I`` (no cwd, no PYTHONPATH) imports."""
    found = subprocess.run(
        [sys.executable, "-I", "-c", "import greeter_core; print(greeter_core.__file__)"],
        capture_output=True,
        text=True,
    )
    return os.path.realpath(found.stdout.strip()) if found.returncode == 0 else "nowhere (not installed)"


def imported_core() -> str:
    """Where the greeter_core this session would import is (``python -m pytest`` puts the cwd first on sys.path)."""
    import importlib.util

    spec = importlib.util.find_spec("greeter_core")
    return os.path.realpath(spec.origin) if spec and spec.origin else "nowhere (not installed)"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse, in one line, a session whose in-process tests would test the source tree, not the installed copy."""
    imported, installed = imported_core(), installed_core()
    if imported != installed:
        raise pytest.UsageError(
            f"refusing to test {imported}: this interpreter's installed greeter_core is {installed}; "
            "run the tests with tox or the venv's pytest script, not python -m pytest from the checkout"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``as_nobody`` the tests that use the ``unprivileged`` venv (tests/unprivileged.py)."""
    for item in items:
        if "unprivileged" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.as_nobody)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leave nothing in the temporary directory: each process removes what it made (each worker, then the controller).

    At the session's end, not at unconfigure: pytest-xdist's workers never unconfigure.
    """
    remove_what_this_process_made()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A session refused or ended before it finished removes what it made too."""
    remove_what_this_process_made()


def remove_what_this_process_made() -> None:
    while MADE:
        shutil.rmtree(MADE.pop(), ignore_errors=True)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (tox's setting): two workers per CPU, since most tests wait on what they started.

    A test starts greeter, its workers and real signals, then waits for them;
    with one worker per CPU the CPUs stood half idle (py312 on two CPUs: 99 s
    with two workers, 66 s with four, 64 s with six).
    """
    return 2 * len(os.sched_getaffinity(0))


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> WheelBuilder:
    """Builds wheels with `uv build`, each distinct project once (once per tox run under tox)."""
    base = tmp_path_factory.getbasetemp()
    # pytest-xdist's workers each have a base of their own, in one directory they share.
    return wheel_builder((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "wheels")


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> PluginFactory:
    return PluginFactory(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(scope="session")
def core_wheels(tmp_path_factory: pytest.TempPathFactory, builder: WheelBuilder) -> tuple[Path, Path]:
    """greeter-core built from this checkout and stevedore (the copy under test, repacked): what a venv needs.

    From the checkout, not the installed copy: an edit made to the installed greeter_core (a mutant,
    a debugging print) does not reach the venvs the tests build from this wheel.
    """
    scratch = tmp_path_factory.mktemp("core")
    return build_core_wheel(builder, scratch), wheel_of_installed("stevedore", scratch)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty directory to install fixture plugins into; the CLI fixture puts it on PYTHONPATH."""
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def install(factory: PluginFactory, site: Path) -> Callable[..., None]:
    """Install fixture plugins into ``site``: ``install(PluginSpec(...), ...)``."""

    def install(*specs: PluginSpec) -> None:
        for spec in specs:
            factory.install(spec, site)

    return install


@pytest.fixture
def greeter_env(site: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: the fixture site on PYTHONPATH, a private stevedore cache."""
    return clean_env(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))


@pytest.fixture
def cli(greeter_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m greeter_core ARGS`` to completion; return the CompletedProcess (text)."""
    return cli_runner(greeter_env, tmp_path)


@pytest.fixture
def start(greeter_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., RunningGreeter]]:
    """``start(*args)`` runs `greeter run ARGS` over the fixture site; whatever still runs is killed after."""
    with launcher(greeter_env, tmp_path) as start:
        yield start


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


@pytest.fixture
def venv(tmp_path: Path, factory: PluginFactory, core_wheels: tuple[Path, Path]) -> Venv:
    """A fresh venv holding greeter-core, stevedore, greeter-alpha 1.0 and greeter-beta.

    Its greeter-core is built from this checkout (:func:`core_wheels`), not copied from the installed one.
    """
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1")
    python = core_venv(tmp_path / "venv", core_wheels, factory.wheel(ALPHA_V1), factory.wheel(BETA), env=env)
    return Venv(python, env)


@pytest.fixture
def venv_start(venv: Venv, tmp_path: Path) -> Iterator[Callable[..., RunningGreeter]]:
    """``start(*args)`` runs `greeter run ARGS` from the :func:`venv`; whatever still runs is killed after."""
    with launcher(venv.env, tmp_path, str(venv.python)) as start:
        yield start
