"""`greeter run --isolation process`: the Go post's os.Exit experiment, passing; upgrades while running."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import clean_env
from isolation_helpers import EXIT, SEGFAULT, alive, children, wait_until
from plugin_factory import PluginFactory, PluginSpec, core_venv, greeter_code, uv
from run_helpers import ALPHA, BETA, RunningGreeter, launcher

ALPHA_1 = PluginSpec("alpha", code=greeter_code("Alpha"), version="1.0", module_name="greeter_alpha_mod")
ALPHA_2 = PluginSpec("alpha", code=greeter_code("Alpha two"), version="2.0", module_name="greeter_alpha_mod")


@pytest.fixture
def start(install, greeter_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., RunningGreeter]]:
    """``start(*args)`` runs `greeter run ARGS` over the fixture plugins alpha, beta, exit and segfault."""
    install(ALPHA, BETA, EXIT, SEGFAULT)
    with launcher(greeter_env, tmp_path) as start:
        yield start


def isolated(start: Callable[..., RunningGreeter], driver: str = "alpha") -> RunningGreeter:
    greeter = start("--driver", driver, "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process")
    greeter.wait_greetings(f"{driver.capitalize()} Universe")
    return greeter


@pytest.mark.parametrize("fault", ["exit", "segfault"])
def test_swapping_through_a_plugin_that_kills_its_process_and_back_keeps_greeting(start, fault: str) -> None:
    """The Go post's failed experiment: swap to a plugin that exits (or segfaults), then back; the host lives on."""
    greeter = isolated(start)
    assert greeter.swap(fault).status == 200
    greeter.wait_status(lambda s: s["errors"] >= 2)
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe", 3)
    status = greeter.status()
    assert status["driver"] == "beta" and status["worker"]["state"] == "running"
    expected = "worker exited with code 3" if fault == "exit" else "worker killed by signal SIGSEGV"
    assert expected in greeter.stderr.text
    assert greeter.process.poll() is None
    assert greeter.stop() == 0


def test_status_shows_the_workers_state_pid_and_restarts(start) -> None:
    """/status names the worker process; a worker killed from outside is replaced and counted."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]
    assert worker["state"] == "running" and worker["restarts"] == 0
    assert worker["pid"] in children(greeter.process.pid)
    subprocess.run(["kill", "-KILL", str(worker["pid"])], check=True)
    status = greeter.wait_status(lambda s: s["worker"]["restarts"] >= 1 and s["worker"]["state"] == "running")
    assert status["worker"]["pid"] != worker["pid"] and status["errors"] >= 1
    greeter.wait_greetings("Alpha Universe", 3)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_greeter_run(start, how: signal.Signals) -> None:
    """Whether `greeter run` is stopped or killed, its worker does not survive it."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]["pid"]
    greeter.send(how)
    greeter.wait()
    assert wait_until(lambda: not alive(worker)), f"worker {worker} outlived greeter run"


@pytest.fixture
def venv(tmp_path: Path, factory: PluginFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding greeter-core, stevedore, greeter-alpha 1.0 and greeter-beta."""
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1")
    return core_venv(tmp_path / "venv", factory.wheel(ALPHA_1), factory.wheel(BETA), env=env), env


def upgrade_alpha(venv: tuple[Path, dict[str, str]], factory: PluginFactory) -> None:
    python, env = venv
    uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", python, factory.wheel(ALPHA_2), env=env)


@pytest.mark.parametrize("how", ["POST /reload", "SIGHUP"])
def test_an_upgrade_is_picked_up_by_a_reload_under_isolation(venv, factory, tmp_path, how: str) -> None:
    """pip install a newer version mid-run, reload: the new version's code greets and /status says 2.0."""
    python, env = venv
    with launcher(env, tmp_path, str(python)) as start:
        greeter = start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0",
                        "--isolation", "process")
        greeter.wait_greetings("Alpha Universe")
        upgrade_alpha(venv, factory)
        if how == "SIGHUP":
            greeter.send(signal.SIGHUP)
        else:
            assert greeter.request("POST", "/reload").status == 200
        greeter.wait_greetings("Alpha two Universe", 3)
        status = greeter.wait_status(lambda s: s["reloads"] == 1)
        assert (status["driver"], status["version"], status["swaps"]) == ("alpha", "2.0", 0)


def test_in_process_reload_is_refused_and_says_why(venv, tmp_path) -> None:
    """Without isolation a reload cannot load new code: 409, naming the reason and the way out."""
    python, env = venv
    with launcher(env, tmp_path, str(python)) as start:
        greeter = start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0")
        greeter.wait_greetings("Alpha Universe")
        reply = greeter.request("POST", "/reload")
        assert reply.status == 409
        assert "Python cannot unload a module" in reply.data["error"] and "--isolation process" in reply.data["error"]


def test_in_process_status_reports_the_code_that_runs_after_an_upgrade(venv, factory, tmp_path) -> None:
    """Upgraded in place and swapped back to, the old module still runs: /status says 1.0, with a warning."""
    python, env = venv
    with launcher(env, tmp_path, str(python)) as start:
        greeter = start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0")
        greeter.wait_greetings("Alpha Universe")
        upgrade_alpha(venv, factory)
        assert greeter.swap("beta").status == 200
        reply = greeter.swap("alpha")
        assert reply.status == 200 and reply.data["new"]["version"] == "1.0"
        greeter.wait_greetings("Alpha Universe", 3)
        assert greeter.status()["version"] == "1.0"
        greeter.stderr.search(r"greeter-alpha 2\.0 is installed, but this process still runs the 1\.0 code")
