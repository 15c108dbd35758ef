"""`greeter run --isolation process`: the Go post's os.Exit experiment, passing; upgrades while running."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from basics import wait_for
from plugins import ALPHA, ALPHA_V2, BETA, HANG, OS_EXIT, SEGFAULT, PluginSpec, greet_body
from processes import alive, kill_quietly, parent
from running import RunningGreeter

from greeter_core.worker.tree import descendants


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
def test_a_swap_to_a_plugin_that_kills_its_process_is_refused_and_the_host_greets_on(start, fault: str) -> None:
    """The Go post's failed experiment: swap to a plugin that exits (or segfaults); its worker dies while
    the swap is verified, so the swap is refused with the reason, the old plugin keeps greeting, the host lives on."""
    greeter = isolated(start)
    reply = greeter.swap(fault)
    expected = "worker exited with code 3" if fault == "exit" else "worker killed by signal SIGSEGV"
    assert reply.status == 422 and expected in reply.data["error"] and reply.data["current"] == "alpha"
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe", 3)
    status = greeter.status()
    assert (status["driver"], status["swaps"], status["errors"]) == ("beta", 1, 0)
    assert status["worker"]["state"] == "running"
    assert greeter.process.poll() is None
    assert greeter.stop() == 0


@pytest.mark.usefixtures("faults")
def test_status_shows_the_workers_state_pid_and_restarts(start) -> None:
    """/status names the worker process; a worker killed from outside is replaced and counted."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]
    assert worker["state"] == "running" and worker["restarts"] == 0
    assert worker["pid"] in descendants(greeter.process.pid)
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


#: Greets, except while the file named by its option "flag" exists: then it kills its own process.
FLAKY = PluginSpec(
    "flaky",
    code=greet_body(
        'if os.path.exists(self.context.config["flag"]):\n    os._exit(3)\nreturn "Flaky " + (name or "Universe")',
        "import os",
    ),
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_a_hung_isolated_greeting_stops_at_once(start, install, how) -> None:
    """SIGTERM or Ctrl-C while a worker hangs: greeter run stops long before the call timeout, exit 0, summary."""
    install(HANG)
    greeter = start("--driver", "hang", "--isolation", "process", "--call-timeout", "600", "--control", "127.0.0.1:0")
    worker = greeter.status()["worker"]["pid"]
    greeter.stderr.search("greeter.plugins.hang: sleeping$")
    greeter.send(how)
    assert greeter.wait(timeout=60) == 0  # the call timeout is 600 s: only an immediate stop gets here
    assert greeter.summary() == (0, 0, 0, 0)
    wait_for(lambda: not alive(worker), what=f"worker {worker} to be killed")


@pytest.mark.parametrize("passed", [False, True], ids=["default", "--worker-env"])
def test_the_control_token_and_host_variables_never_reach_the_worker(start, install, passed: bool) -> None:
    """/proc/<worker>/environ holds neither the control token nor other host variables, unless passed."""
    install(ALPHA)
    extra = ["--worker-env", "GT_PRIVATE"] if passed else []
    greeter = start(
        "--driver", "alpha", "--isolation", "process", "--control", "127.0.0.1:0", *extra,
        env_extra={"GREETER_CONTROL_TOKEN": "s3cret-token", "GT_PRIVATE": "private"},
    )  # fmt: skip
    worker = greeter.status(headers={"Authorization": "Bearer s3cret-token"})["worker"]["pid"]
    environ = Path(f"/proc/{worker}/environ").read_bytes()
    assert b"s3cret-token" not in environ and b"GREETER_CONTROL_TOKEN" not in environ
    assert (b"GT_PRIVATE=private" in environ) == passed
    assert b"\0PATH=" in b"\0" + environ


@pytest.mark.usefixtures("faults")
def test_crashes_in_backoff_are_one_line_and_one_error_each_not_one_per_tick(start) -> None:
    """At --interval 0 a worker that keeps crashing: the loop waits out each backoff; one line, one error per crash."""
    greeter = start("--driver", "exit", "--interval", "0", "--isolation", "process", "--control", "127.0.0.1:0")
    greeter.stderr.wait_for(lambda lines: sum("crashed its worker" in line for line in lines) >= 3)
    assert greeter.stop() == 0
    greetings, errors, _, _ = greeter.summary()
    lines = [line for line in greeter.stderr.lines if line.startswith("ERROR ")]
    assert greetings == 0 and 3 <= errors <= 6
    assert len(lines) == errors and all("crashed its worker: worker exited with code 3" in line for line in lines)


def test_a_worker_healthy_again_after_crashes_is_said_once(start, install, tmp_path) -> None:
    """A plugin crashes for a while, then greets again: one line per crash, one line when it answers again."""
    install(FLAKY)
    flag = tmp_path / "crash"
    flag.touch()
    greeter = start(
        "--driver", "flaky", "--interval", "0", "--isolation", "process", "--option", f"flag={flag}",
        "--control", "127.0.0.1:0",
    )  # fmt: skip
    greeter.stderr.wait_for(lambda lines: sum("crashed its worker" in line for line in lines) >= 2)
    flag.unlink()
    greeter.wait_greetings("Flaky Universe", 3)
    status = greeter.status()
    assert greeter.stop() == 0
    again = [line for line in greeter.stderr.lines if "answers again" in line]
    assert len(again) == 1 and again[0].startswith("INFO greeter_core.worker.client: plugin 'flaky' (greeter-flaky")
    crashed = [line for line in greeter.stderr.lines if "crashed its worker" in line]
    assert len(crashed) == status["worker"]["crashes"] == status["errors"]


def test_a_swap_is_published_only_once_the_new_worker_answered(start, install, tmp_path) -> None:
    """Verified swap: a plugin whose worker dies on its first greeting is refused; once healthy it is taken."""
    install(ALPHA, FLAKY)
    flag = tmp_path / "crash"
    flag.touch()
    greeter = start(
        "--driver", "alpha", "--interval", "0.02", "--isolation", "process", "--option", f"flag={flag}",
        "--control", "127.0.0.1:0",
    )  # fmt: skip
    reply = greeter.request("POST", "/driver", '{"driver": "flaky"}', {"Content-Type": "application/json"})
    assert reply.status == 422 and "plugin 'flaky' (greeter-flaky 1.0) crashed its worker" in reply.data["error"]
    assert greeter.status()["driver"] == "alpha"
    greeter.wait_greetings("Alpha Universe", 3)
    flag.unlink()
    assert greeter.request("POST", "/driver", '{"driver": "flaky"}', {"Content-Type": "application/json"}).status == 200
    greeter.wait_greetings("Flaky Universe", 3)


@pytest.mark.usefixtures("faults")
def test_status_shows_an_open_circuit_and_a_swap_clears_it(start) -> None:
    """After 5 crashes in 60 s the circuit opens (once in the log, visible in /status); a swap starts afresh."""
    greeter = start("--driver", "exit", "--interval", "0", "--isolation", "process", "--control", "127.0.0.1:0")
    status = greeter.wait_status(lambda s: s["worker"]["circuit"] == "open")
    assert status["worker"]["state"] == "circuit-open" and status["worker"]["crashes"] == 5
    assert status["worker"]["retry_in"] > 0 and status["errors"] == 5
    greeter.stderr.search(r"circuit open for plugin 'exit' \(greeter-exit 1\.0\) after 5 crashes in 60 s")
    assert greeter.swap("alpha").status == 200
    greeter.wait_greetings("Alpha Universe", 3)
    worker = greeter.status()["worker"]
    assert (worker["circuit"], worker["crashes"], worker["state"]) == ("closed", 0, "running")
    assert sum("circuit open for" in line for line in greeter.stderr.lines) == 1


def test_worker_limits_from_the_command_line_are_applied_and_shown_in_status(start, install) -> None:
    """--worker-memory/-cpu/-files/-processes become the worker's limits (its /proc/<pid>/limits) and /status
    shows them, with what bounds the processes."""
    install(ALPHA)
    greeter = start(
        "--driver", "alpha", "--isolation", "process", "--control", "127.0.0.1:0",
        "--worker-memory", "300", "--worker-cpu", "50", "--worker-files", "100", "--worker-processes", "40",
    )  # fmt: skip
    worker = greeter.status()["worker"]
    bound_by = worker["limits"].pop("processes_bound_by")
    assert worker["limits"] == {"memory_mib": 300, "cpu_seconds": 50, "files": 100, "processes": 40}
    assert isinstance(bound_by, str) and bound_by
    table = Path(f"/proc/{worker['pid']}/limits").read_text().splitlines()
    limits = {line[:26].strip(): line[26:].split()[:2] for line in table}
    assert limits["Max data size"] == [str(300 * 1024 * 1024)] * 2
    assert limits["Max open files"] == ["100", "100"]
    soft, hard = map(int, limits["Max cpu time"])
    assert 50 <= soft <= 52 and hard == soft + 1


@pytest.mark.usefixtures("faults")
def test_a_swap_forks_its_worker_from_the_fork_server_started_with_the_run(start) -> None:
    """The run's fork server (a child of greeter run) existed before the swap, and forks the new worker."""
    greeter = isolated(start)
    before = greeter.status()["worker"]
    server = before["forkserver"]
    assert isinstance(server, int) and alive(server) and parent(server) == greeter.process.pid
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe")
    worker = greeter.status()["worker"]
    assert worker["forkserver"] == server and worker["pid"] != before["pid"]
    assert parent(parent(worker["pid"])) == server  # worker -> its keeper -> the fork server
    assert greeter.stop() == 0
    wait_for(lambda: not alive(server), what=f"fork server {server} to end with greeter run")


@pytest.mark.usefixtures("faults")
def test_killing_the_fork_server_ends_no_worker_and_the_next_swap_gets_a_fresh_one(start) -> None:
    """The current worker greets on; the next swap starts a fresh fork server, with one line saying so."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]
    subprocess.run(["kill", "-KILL", str(worker["forkserver"])], check=True)
    wait_for(lambda: not alive(worker["forkserver"]), what="the fork server to be killed")
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.status()["worker"]["pid"] == worker["pid"]
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe")
    fresh = greeter.status()["worker"]["forkserver"]
    assert fresh not in (None, worker["forkserver"]) and parent(fresh) == greeter.process.pid
    assert greeter.stop() == 0
    said = [line for line in greeter.stderr.lines if "fork server" in line]
    ended = f"the fork server (pid {worker['forkserver']}) ended (killed by signal SIGKILL)"
    assert len(said) == 1 and ended in said[0]


@pytest.mark.usefixtures("faults")
@pytest.mark.parametrize("server_killed", [False, True], ids=["fork-server-up", "fork-server-killed-first"])
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_keeper_or_fork_server_outlives_greeter_run(start, how: signal.Signals, server_killed: bool) -> None:
    """Stopped or killed, greeter run leaves nothing behind, even when its fork server was killed before it."""
    greeter = isolated(start)
    worker = greeter.status()["worker"]
    processes = [worker["pid"], parent(worker["pid"]), worker["forkserver"]]
    if server_killed:
        subprocess.run(["kill", "-KILL", str(worker["forkserver"])], check=True)
        wait_for(lambda: not alive(worker["forkserver"]), what="the fork server to be killed")
    greeter.send(how)
    greeter.wait()
    for pid in processes:
        wait_for(lambda: not alive(pid), what=f"process {pid} to end with greeter run")  # noqa: B023


# -- the host trusts nothing a worker says (issue 20) -------------------------------------------------------

#: Claims in its hello a pid that is not its own: the process group in GT_VICTIM (negated), else the host's
#: pid; and takes 5 s to close, so that a swap away from it reaches the shutdown ladder's signal.
LIAR = PluginSpec(
    "liar",
    code="""
import os, time
from greeter_core import Greeter

def _host():
    pid = os.getppid()
    while b"greeter_core.worker" in open(f"/proc/{pid}/cmdline", "rb").read():
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    return pid

_claim = -int(os.environ["GT_VICTIM"]) if "GT_VICTIM" in os.environ else _host()
os.getpid = lambda: _claim

class Plugin(Greeter):
    language = "Liar"
    def greet(self, name):
        return "Liar " + (name or "Universe")
    def close(self):
        time.sleep(5)
""",
)


@pytest.mark.parametrize("claim", ["the-hosts-pid", "a-negative-pid"])
def test_a_pid_a_worker_claims_is_never_signalled(start, install, claim: str) -> None:
    """A worker whose hello names the host (or -pgid of another process group) as its pid: swapping to it
    and away signals neither; greeter run greets on and the other group lives."""
    install(ALPHA, LIAR)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        env = {"GT_VICTIM": str(victim.pid)} if claim == "a-negative-pid" else {}
        greeter = start(
            "--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process",
            *(["--worker-env", "GT_VICTIM"] if env else []),
            env_extra=env,
        )  # fmt: skip
        greeter.wait_greetings("Alpha Universe")
        settled = len(descendants(greeter.process.pid))  # the fork server, a keeper and its worker
        greeter.swap("liar")
        assert greeter.swap("alpha").status == 200
        wait_for(
            lambda: greeter.process.poll() is not None or len(descendants(greeter.process.pid)) <= settled,
            what="the liar's worker to be retired (its whole shutdown ladder)",
        )
        assert greeter.process.poll() is None, greeter.stderr.lines
        assert victim.poll() is None
        greeter.wait_greetings("Alpha Universe", 3)
        assert greeter.stop() == 0
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.usefixtures("faults")
def test_a_stopped_fork_server_costs_a_swap_a_cold_start_said_in_one_line(start) -> None:
    """SIGSTOP on the fork server: the next swap gives up on it, starts its worker cold and says so once."""
    greeter = isolated(start)
    server = greeter.status()["worker"]["forkserver"]
    os.kill(server, signal.SIGSTOP)
    try:
        assert greeter.swap("beta").status == 200
        greeter.wait_greetings("Beta Universe", 3)
        worker = greeter.status()["worker"]
        assert worker["state"] == "running" and worker["forkserver"] is None  # started cold
        said = [line for line in greeter.stderr.lines if "fork server" in line]
        assert len(said) == 1 and said[0].startswith("WARNING") and "starting this worker cold" in said[0], said
        assert f"the fork server (pid {server}) did not answer within" in said[0]
        assert greeter.stop() == 0
    finally:
        kill_quietly(server, signal.SIGCONT)
