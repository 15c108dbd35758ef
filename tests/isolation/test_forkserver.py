"""The fork server: workers forked from an interpreter that imported greeter-core, never a plugin, get
everything a cold worker gets (environment, sys.path, limits, process group, nothing else open) and
depend on it for nothing once forked."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from basics import wait_for
from plugins import ALPHA, OS_EXIT, SEGFAULT, PluginSpec, greet_body, marking
from processes import alive, kill_quietly, parent

from greeter_core import LoadedPlugin, WorkerCrashedError, load
from greeter_core.worker.client import worker_sys_path
from greeter_core.worker.forkserver import ForkServer

#: Greets with what its worker was given: an environment variable, a sys.path entry and its process group.
PROBE = PluginSpec(
    "probe",
    code=greet_body(
        'return json.dumps([os.environ.get("GT_PROBE"), sys.path, os.getpgid(0)])',
        "import json, os, sys",
    ),
)
#: Imports are recorded, with the importing pid, in a file beside the plugin.
MARKED = marking("marked", "Marked")


pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="Linux only"),
    pytest.mark.plugins(ALPHA, OS_EXIT, SEGFAULT, PROBE, MARKED),
]


@pytest.fixture
def server():
    with ForkServer() as server:
        yield server


def worker(greeter: LoadedPlugin) -> dict[str, Any]:
    """An isolated plugin's status: the worker's pid, its fork server, its limits."""
    status = greeter.status()
    assert status is not None
    return status


def descriptors(pid: int) -> dict[int, str]:
    """A process's open file descriptors and what each is (``socket``, ``pipe``, ``/dev/null``, ...)."""
    fds = {}
    for entry in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{entry}")
        fds[int(entry)] = target.split(":")[0] if ":" in target else target
    return fds


def test_a_worker_is_forked_by_the_fork_server_under_a_keeper_of_its_own(plugins, server) -> None:
    """Worker -> keeper -> fork server -> this host; /status names the fork server; a second worker is
    forked by the same fork server, not a fresh interpreter."""
    first = load("alpha", isolation="process", forkserver=server)
    second = load("alpha", isolation="process", forkserver=server)
    try:
        for greeter in (first, second):
            status = worker(greeter)
            keeper = parent(status["pid"])
            assert status["forkserver"] == server.pid and parent(keeper) == server.pid
            assert greeter.greet("x") == "Alpha x"
        assert parent(server.pid) == os.getpid() and server.starts == 1
    finally:
        first.close()
        second.close()


def test_the_fork_server_never_imports_a_plugin(plugins, server) -> None:
    """Each forked worker imports its plugin itself (a module the fork server had would be inherited)."""
    workers = []
    for _ in range(2):
        # sandbox off: the plugin records its import beside its package, which a confined worker may not write
        with load("marked", isolation="process", forkserver=server, sandbox="off") as greeter:
            assert greeter.greet("x") == "Marked x"
            workers.append(worker(greeter)["pid"])
    imported = [int(pid) for pid in (plugins / "imported-marked").read_text().split()]
    assert imported == workers and server.pid not in imported


def test_the_fork_server_is_one_thread_holding_only_its_channel_and_the_hosts_pidfd(plugins, server) -> None:
    """No thread to break a fork, nothing open but stdio, its socket to the host and a pidfd of the host."""
    with load("alpha", isolation="process", forkserver=server):
        pid = server.pid
        assert pid is not None
        assert os.listdir(f"/proc/{pid}/task") == [str(pid)]
        fds = descriptors(pid)
        assert (fds.pop(0), fds.pop(1), fds.pop(2)) == ("/dev/null", "/dev/null", "pipe")
        assert sorted(fds.values()) == ["anon_inode", "socket"]


def test_a_forked_worker_holds_what_a_cold_one_holds_and_nothing_of_the_fork_server(plugins, server) -> None:
    """stdin /dev/null, stdout and stderr pipes to the host, its channel, a pidfd of its keeper: as a cold worker."""
    with load("alpha", isolation="process", forkserver=server) as forked, load("alpha", isolation="process") as cold:
        shapes = [sorted(descriptors(worker(greeter)["pid"]).items()) for greeter in (forked, cold)]
        expected = ["/dev/null", "pipe", "pipe", "anon_inode", "socket"]  # anon_inode: the keeper's pidfd
        assert [[kind for _, kind in shape] for shape in shapes] == [expected] * 2
        assert all([fd for fd, _ in shape][:3] == [0, 1, 2] for shape in shapes)


def test_a_forked_worker_gets_its_environment_sys_path_limits_and_process_group(plugins, server) -> None:
    """--worker-env, the host's sys.path, the rlimits and a process group of its own, as a cold worker."""
    options = {"worker_env": {"GT_PROBE": "given"}, "worker_memory": 300, "worker_files": 100}
    with load("probe", isolation="process", forkserver=server, **options) as greeter:  # type: ignore[arg-type]
        pid = worker(greeter)["pid"]
        env, path, group = json.loads(greeter.greet("x"))
        assert (env, path) == ("given", worker_sys_path()) and str(plugins) in path
        assert group == parent(pid) != os.getpgid(0)
        assert b"GT_PROBE=given" in Path(f"/proc/{pid}/environ").read_bytes()
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert f"Max data size             {300 * 1024 * 1024}" in limits
        assert "Max open files            100" in limits


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [("exit", "worker exited with code 3"), ("segfault", "worker killed by signal SIGSEGV")],
)
def test_a_forked_workers_end_is_reported_as_a_cold_ones(plugins, server, plugin, expected) -> None:
    """The host is not a forked keeper's parent; it still hears the exit code or signal, by name."""
    greeter = load(plugin, isolation="process", forkserver=server)
    try:
        with pytest.raises(WorkerCrashedError) as caught:
            greeter.greet("x")
        assert expected in str(caught.value)
    finally:
        greeter.close()


def test_a_plugin_installed_after_the_fork_server_started_is_found(install, on_path, server) -> None:
    """The fork server's import caches are not the worker's: a plugin installed a moment ago loads."""
    install(ALPHA)
    with load("alpha", isolation="process", forkserver=server) as greeter:
        assert greeter.greet("x") == "Alpha x"
    install(PROBE)
    with load("probe", isolation="process", forkserver=server) as greeter:
        assert json.loads(greeter.greet("x"))[0] is None


def test_killing_the_fork_server_ends_no_worker_and_a_fresh_one_forks_the_next(plugins, server, caplog) -> None:
    """Its workers do not depend on it; the next worker comes from a fresh fork server, said in one line."""
    greeter = load("alpha", isolation="process", forkserver=server)
    try:
        killed = server.pid
        assert killed is not None
        kill_quietly(killed, signal.SIGKILL)
        wait_for(lambda: not alive(killed), what=f"fork server {killed} to end")
        assert greeter.greet("x") == "Alpha x"
        with load("alpha", isolation="process", forkserver=server) as fresh:
            assert fresh.greet("y") == "Alpha y"
            assert worker(fresh)["forkserver"] == server.pid not in (None, killed)
    finally:
        greeter.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "greeter_core.worker.forkserver"]
    assert lines == [f"the fork server (pid {killed}) ended (killed by signal SIGKILL); starting a fresh one"]


def test_closing_the_fork_server_leaves_its_workers_running(plugins) -> None:
    """Closing ends the fork server only; a worker it forked answers until it is closed itself."""
    with ForkServer() as server:
        greeter = load("alpha", isolation="process", forkserver=server)
        pid = server.pid
    try:
        assert pid is not None and server.pid is None
        wait_for(lambda: not alive(pid), what=f"fork server {pid} to end")
        assert greeter.greet("x") == "Alpha x"
        with load("alpha", isolation="process", forkserver=server) as cold:
            assert worker(cold)["forkserver"] is None  # a closed fork server forks nothing: a cold start
    finally:
        greeter.close()
