"""`greeter run --isolation process`: the Go post's os.Exit experiment, passing; upgrades while running."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

import pytest
from helpers import (
    ALPHA,
    ALPHA_V2,
    BETA,
    OS_EXIT,
    SEGFAULT,
    RunningGreeter,
    alive,
    children,
    wait_for,
)


def isolated(start: Callable[..., RunningGreeter], driver: str = "alpha") -> RunningGreeter:
    greeter = start("--driver", driver, "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process")
    greeter.wait_greetings(f"{driver.capitalize()} Universe")
    return greeter


@pytest.fixture
def faults(install) -> None:
    """The fixture plugins alpha, beta, exit and segfault, installed."""
    install(ALPHA, BETA, OS_EXIT, SEGFAULT)


@pytest.mark.parametrize("fault", ["exit", "segfault"])
@pytest.mark.usefixtures("faults")
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


@pytest.mark.usefixtures("faults")
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


@pytest.mark.usefixtures("faults")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_greeter_run(start, how: signal.Signals) -> None:
    """Whether `greeter run` is stopped or killed, its worker does not survive it."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]["pid"]
    greeter.send(how)
    greeter.wait()
    wait_for(lambda: not alive(worker), what=f"worker {worker} to end with greeter run")


@pytest.mark.parametrize("how", ["POST /reload", "SIGHUP"])
def test_an_upgrade_is_picked_up_by_a_reload_under_isolation(venv, venv_start, factory, how: str) -> None:
    """pip install a newer version mid-run, reload: the new version's code greets and /status says 2.0."""
    greeter = venv_start(
        "--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process"
    )
    greeter.wait_greetings("Alpha Universe")
    venv.install(factory.wheel(ALPHA_V2))
    if how == "SIGHUP":
        greeter.send(signal.SIGHUP)
    else:
        assert greeter.request("POST", "/reload").status == 200
    greeter.wait_greetings("Alpha two Universe", 3)
    status = greeter.wait_status(lambda s: s["reloads"] == 1)
    assert (status["driver"], status["version"], status["swaps"]) == ("alpha", "2.0", 0)


def test_in_process_reload_is_refused_and_says_why(venv_start) -> None:
    """Without isolation a reload cannot load new code: 409, naming the reason and the way out."""
    greeter = venv_start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    reply = greeter.request("POST", "/reload")
    assert reply.status == 409
    assert "Python cannot unload a module" in reply.data["error"] and "--isolation process" in reply.data["error"]


def test_in_process_status_reports_the_code_that_runs_after_an_upgrade(venv, venv_start, factory) -> None:
    """Upgraded in place and swapped back to, the old module still runs: /status says 1.0, with a warning."""
    greeter = venv_start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    venv.install(factory.wheel(ALPHA_V2))
    assert greeter.swap("beta").status == 200
    reply = greeter.swap("alpha")
    assert reply.status == 200 and reply.data["new"]["version"] == "1.0"
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.status()["version"] == "1.0"
    greeter.stderr.search(r"greeter-alpha 2\.0 is installed, but this process still runs the 1\.0 code")
