"""Process isolation: a plugin that exits, crashes or hangs never takes the host down."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from basics import wait_for
from plugins import ALPHA, BROKEN_IMPORT, ECHO_CONFIG, HANG, NOISY, OS_EXIT, PANIC, SEGFAULT, SYS_EXIT
from processes import alive, children, kill_quietly
from running import Lines

from greeter_core import (
    HandshakeError,
    LoadedPlugin,
    PluginCallError,
    PluginLoadError,
    PluginTimeoutError,
    WorkerCrashedError,
    find,
    load,
)
from greeter_core.worker import protocol
from greeter_core.worker.client import WorkerPlugin
from greeter_core.worker.supervision import Supervision
from greeter_core.worker.tree import descendants

FAULTS = [OS_EXIT, SEGFAULT, HANG, PANIC, SYS_EXIT, BROKEN_IMPORT, NOISY, ECHO_CONFIG, ALPHA]


#: Every fixture plugin installed and visible to this process (and so to its workers): conftest's ``plugins``.
pytestmark = pytest.mark.plugins(*FAULTS)


def test_an_isolated_greeter_greets_like_an_in_process_one(isolated) -> None:
    """Same LoadedPlugin surface, same answer; the plugin runs in another process."""
    greeter = isolated("alpha")
    assert isinstance(greeter, WorkerPlugin) and isinstance(greeter, LoadedPlugin)
    assert greeter.isolation == "process"
    assert greeter.greet("Universe") == load("alpha").greet("Universe")
    assert greeter.language == "Test"
    assert greeter.status()["pid"] not in (None, os.getpid())


def test_the_handshake_reports_the_plugins_distribution_and_version(isolated) -> None:
    """The worker tells the host which distribution and version it actually loaded."""
    greeter = isolated("alpha")
    assert (greeter.plugin.distribution, greeter.plugin.version) == ("greeter-alpha", "1.0")


def test_the_host_context_reaches_the_isolated_plugin(isolated) -> None:
    """Options and the driver name cross the process border."""
    greeter = isolated("echoconfig", config={"punctuation": "!"})
    text = greeter.greet("Worf")
    assert text.startswith("echoconfig [('punctuation', '!')] Worf ")
    assert int(text.rsplit(" ", 1)[1]) == greeter.status()["pid"]


@pytest.mark.parametrize(
    ("plugin", "error", "expected"),
    [
        ("exit", WorkerCrashedError, "worker exited with code 3"),
        ("segfault", WorkerCrashedError, "worker killed by signal SIGSEGV"),
        ("hang", PluginTimeoutError, "did not answer within 0.5 s; its worker was killed"),
    ],
    ids=["os._exit", "segfault", "hang"],
)
def test_a_worker_fault_is_one_clear_error_and_the_worker_is_gone(isolated, plugin, error, expected) -> None:
    """os._exit, a segfault and a hang each end in one error naming the plugin; no worker survives."""
    greeter = isolated(plugin, call_timeout=0.5)
    pid = greeter.status()["pid"]
    with pytest.raises(error) as caught:
        greeter.greet("Universe")
    assert expected in str(caught.value)
    assert f"plugin '{plugin}' (greeter-{plugin} 1.0)" in str(caught.value)
    wait_for(lambda: not alive(pid), what=f"worker {pid} to end")
    assert greeter.status()["state"] in ("backoff", "stopped")


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [("panic", "failed: RuntimeError: I'm gone."), ("sysexit", "failed: SystemExit: 1")],
)
def test_a_plugin_exception_is_contained_inside_the_worker(isolated, plugin, expected) -> None:
    """An exception or sys.exit() in greet() is reported, and the same worker keeps serving."""
    greeter = isolated(plugin)
    pid = greeter.status()["pid"]
    for _ in range(2):
        with pytest.raises(PluginCallError) as caught:
            greeter.greet("Universe")
        assert expected in str(caught.value)
    status = greeter.status()
    assert (status["state"], status["pid"], status["restarts"], status["crashes"]) == ("running", pid, 0, 0)


def test_a_worker_killed_from_outside_is_reported_and_replaced(isolated) -> None:
    """SIGKILL of the worker: the call in flight says so; the next call starts a fresh worker."""
    greeter = isolated("hang", call_timeout=30, supervision=Supervision(backoff_base=0.0))
    pid = greeter.status()["pid"]
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(0.5); os.kill({pid}, 9)"])
    with pytest.raises(WorkerCrashedError) as caught:
        greeter.greet("Universe")
    killer.wait()
    assert "worker killed by signal SIGKILL" in str(caught.value)
    greeter.call_timeout = 0.5
    with pytest.raises(PluginTimeoutError):
        greeter.greet("Universe")  # a fresh worker, which hangs in turn
    status = greeter.status()
    assert status["restarts"] == 1 and status["pid"] != pid


def test_after_a_crash_the_next_call_starts_a_fresh_worker(isolated) -> None:
    """Crash, then call again: a new worker (new pid) answers, and the restart is counted."""
    greeter = isolated("alpha", supervision=Supervision(backoff_base=0.0))
    first = greeter.status()["pid"]
    os.kill(first, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError):
        greeter.greet("a")
    assert greeter.greet("b") == "Alpha b"
    assert greeter.status()["restarts"] == 1 and greeter.status()["pid"] != first


def test_during_backoff_calls_fail_fast_without_starting_a_worker(isolated) -> None:
    """Repeated crashes back off: a call inside the pause fails at once and says when the restart is."""
    greeter = isolated("exit", supervision=Supervision(backoff_base=600.0))
    with pytest.raises(WorkerCrashedError):
        greeter.greet("a")
    with pytest.raises(WorkerCrashedError) as caught:
        greeter.greet("b")
    assert "its worker crashed (worker exited with code 3); the next restart is in" in str(caught.value)
    assert "the next call starts a fresh worker" not in str(caught.value)  # it does not: it fails until then
    assert greeter.status()["state"] == "backoff" and greeter.status()["restarts"] == 0


@pytest.mark.parametrize(
    ("uptime", "previous", "expected"),
    [(0.0, 0.5, 1.0), (0.0, 1.0, 2.0), (0.0, 8.0, 10.0), (0.0, 10.0, 10.0), (60.0, 10.0, 0.5), (0.0, 0.0, 0.5)],
    ids=["doubles", "doubles-again", "capped", "stays-capped", "resets-after-a-stable-run", "first-crash"],
)
def test_backoff_doubles_up_to_a_cap_and_resets_after_a_stable_run(uptime, previous, expected) -> None:
    """The pause before the next restart doubles per crash, caps, and resets once a worker stayed up."""
    assert Supervision().next_backoff(previous, uptime) == expected


def test_a_plugin_that_fails_to_import_in_the_worker_raises_load_error(plugins) -> None:
    """The worker reports the import failure over the handshake; the host gets PluginLoadError."""
    with pytest.raises(PluginLoadError) as caught:
        load("broken", isolation="process")
    assert "ModuleNotFoundError" in str(caught.value) and "greeter-broken 1.0" in str(caught.value)
    assert not [pid for pid in children(os.getpid()) if alive(pid)]


def test_plugin_output_and_logs_reach_host_logging_not_the_protocol(isolated, caplog) -> None:
    """print(), raw fd-1 writes, stderr and logging become host log records tagged with the driver."""
    with caplog.at_level(logging.INFO):
        greeter = isolated("noisy")
        assert greeter.greet("Worf") == "Hello Worf"
        greeter.close()
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("greeter.plugins.noisy", "WARNING", "about to greet Worf") in messages
    for text in (
        "stdout: import-time chatter",
        "stdout: chatter on stdout",
        "stdout: raw bytes on fd 1",
        "stderr: chatter on stderr",
    ):
        assert ("greeter.plugins.noisy", "WARNING", text) in messages


def test_closing_stops_the_worker_and_is_idempotent(isolated) -> None:
    """close() ends the worker process; closing again is harmless; using it afterwards is an error."""
    greeter = isolated("alpha")
    pid = greeter.status()["pid"]
    with greeter:
        pass
    wait_for(lambda: not alive(pid), what=f"worker {pid} to end")
    greeter.close()
    assert greeter.status()["state"] == "closed"
    with pytest.raises(WorkerCrashedError):
        greeter.greet("x")


def test_the_host_refuses_a_worker_speaking_another_protocol(plugins, tmp_path) -> None:
    """A worker answering the handshake with another protocol version is refused, by name."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text(
        textwrap.dedent("""
        import socket, sys
        from greeter_core.worker.protocol import HELLO, Channel
        channel = Channel(socket.socket(fileno=int(sys.argv[1])))
        channel.recv()
        channel.send_json(HELLO, {"protocol": 99, "api_version": 1, "plugin": {}, "pid": 0})
        channel.recv()
    """)
    )
    with pytest.raises(HandshakeError) as caught:
        WorkerPlugin(find("alpha"), call_timeout=5, command=[sys.executable, str(fake)]).start()
    assert f"the worker speaks protocol 99, this host speaks {protocol.PROTOCOL_VERSION}" in str(caught.value)


def test_a_worker_refuses_a_host_speaking_another_protocol(plugins, monkeypatch) -> None:
    """The worker checks the host's versions too, and says which side speaks what."""
    ours = protocol.PROTOCOL_VERSION
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", 99)
    with pytest.raises(HandshakeError) as caught:
        load("alpha", isolation="process")
    assert f"the host speaks protocol 99, this worker speaks {ours}" in str(caught.value)


def test_a_worker_started_by_hand_says_what_it_is(greeter_env, tmp_path) -> None:
    """Without the host's cookie the worker explains itself and exits 2 instead of hanging."""
    result = subprocess.run(
        [sys.executable, "-m", "greeter_core.worker", "0"],
        env=greeter_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "started by greeter for --isolation process" in result.stderr


# A host process: load the plugin in a worker, say the worker's pid, then greet (the plugin's log
# record "sleeping" on stderr says the call is in flight), sit idle, or exit (once its stdin closes:
# the test has seen the worker by then).
HOST = """
import logging, sys, time
from greeter_core import load
logging.basicConfig(format="%(name)s: %(message)s")
greeter = load(sys.argv[1], isolation="process", call_timeout=600)
print(greeter.status()["pid"], flush=True)
if sys.argv[2] == "greet":
    greeter.greet("x")
elif sys.argv[2] == "idle":
    time.sleep(600)
else:
    sys.stdin.read()
"""


@pytest.mark.parametrize(
    ("plugin", "action", "how"),
    [
        ("alpha", "exit", None),
        ("hang", "greet", signal.SIGTERM),
        ("hang", "greet", signal.SIGKILL),
        ("alpha", "idle", signal.SIGKILL),
    ],
    ids=["host-exits-normally", "host-sigterm-mid-call", "host-sigkill-mid-call", "host-sigkill-idle"],
)
def test_no_worker_outlives_its_host(plugins, greeter_env, tmp_path, plugin, action, how) -> None:
    """Whether the host exits, is terminated or is killed, mid-call or idle, its worker goes too."""
    env = {**greeter_env, "PYTHONPATH": str(plugins)}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, plugin, action],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = Lines(host.stderr)  # type: ignore[arg-type]
    worker = int(host.stdout.readline())  # type: ignore[union-attr]
    assert alive(worker) and worker in descendants(host.pid)
    host.stdin.close()  # type: ignore[union-attr]
    if action == "greet":
        stderr.search("^greeter.plugins.hang: sleeping$")
    if how is not None:
        kill_quietly(host.pid, how)
    host.wait(timeout=60)
    host.stdout.close()  # type: ignore[union-attr]
    stderr.join()
    wait_for(lambda: not alive(worker), what=f"worker {worker} to end with its host")


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("exit", "plugin 'exit' (greeter-exit 1.0) crashed its worker: worker exited with code 3"),
        ("segfault", "crashed its worker: worker killed by signal SIGSEGV"),
        ("hang", "did not answer within 1 s; its worker was killed"),
    ],
)
def test_the_cli_survives_the_fault_and_says_so_in_one_line(cli, install, driver, expected) -> None:
    """`greeter --driver X --isolation process`: the Go post's os.Exit experiment, passing."""
    install(OS_EXIT, SEGFAULT, HANG)
    result = cli("--driver", driver, "--isolation", "process", "--call-timeout", "1")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("greeter: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_check_in_isolation_reports_each_fault_and_the_healthy_plugins(cli, install) -> None:
    """`greeter check --isolation process` survives every fault and still checks the good plugin."""
    install(ALPHA, OS_EXIT, SEGFAULT, PANIC)
    result = cli("check", "alpha", "exit", "segfault", "panic", "--isolation", "process")
    rows = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert rows == {"alpha": "ok", "exit": "failed", "segfault": "failed", "panic": "failed"}
    assert result.returncode == 1


def test_greeting_in_isolation_prints_only_the_greeting_on_stdout(cli, install) -> None:
    """A chatty plugin's prints go to the log on stderr; stdout carries only the greeting."""
    install(NOISY)
    result = cli("--driver", "noisy", "--isolation", "process", "--name", "Worf")
    assert (result.returncode, result.stdout) == (0, "Hello Worf\n")
    assert "greeter.plugins.noisy: stdout: chatter on stdout" in result.stderr
    assert "greeter.plugins.noisy: about to greet Worf" in result.stderr
