"""A worker's tree is stopped in a way no fork outruns, and it may hold only --worker-processes processes and threads.

Each attacker is a real plugin distribution. Each writes the pid of every process it starts to the file its
greeting is asked for (``--name``), and stops forking by itself after a few seconds: a test that fails
leaves nothing running for long, and every test asserts that none of those processes is left. The
sandbox stays on: ``--allow-write`` grants the log's directory, and the bound holds with a grant too.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from basics import one_line, wait_for
from plugins import PluginSpec, greet_body
from processes import alive, kill_quietly
from unprivileged import Unprivileged, unprivileged  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux only")


def log_in(directory: Path, name: str = "pids") -> Path:
    """Where an attacker logs its pids: a directory of its own, owned as *directory* is, that the test grants
    with ``--allow-write`` (greeter refuses a grant over its own files: the test's site, its cache)."""
    out = directory / f"{name}.d"
    out.mkdir(exist_ok=True)
    owner = directory.stat()
    os.chown(out, owner.st_uid, owner.st_gid)
    return out / name


#: Seconds an attacker's processes live (or fork) at most, by themselves.
LIFE = 20

LOG = f"""
import os, threading, time

LIFE = {LIFE}

def log(path, pid):
    with open(path, "a") as file:
        file.write(f"{{pid}}\\n")
"""

#: Starts 500 processes as fast as it can, each sleeping out its life; greets with how many it started.
SPAWN = PluginSpec(
    "spawn500",
    code=greet_body(
        """started = 0
for _ in range(500):
    pid = os.fork()
    if pid == 0:
        time.sleep(LIFE)
        os._exit(0)
    log(name, pid)
    started += 1
return f"started {started}\"""",
        LOG,
    ),
)

#: One process that forks and exits in a loop (each generation a new pid, re-parented to a subreaper), then
#: 2,000 idle threads that make every walk of the tree slow; greets once both are under way.
THREADS_AND_FORKER = PluginSpec(
    "forker",
    code=greet_body(
        """if os.fork() == 0:
    end = time.monotonic() + LIFE
    while time.monotonic() < end:
        try:
            if os.fork() != 0:
                os._exit(0)
        except OSError:
            continue
        log(name, os.getpid())
    os._exit(0)
threading.stack_size(65536)
for _ in range(2000):
    threading.Thread(target=time.sleep, args=(LIFE,), daemon=True).start()
return "threads and a forker\"""",
        LOG,
    ),
)

#: Disarms the worker's own tree kill, leaves a setsid'd grandchild, and SIGKILLs its keeper.
KEEPER_KILLER = PluginSpec(
    "keeperkill",
    code=greet_body(
        """import signal
from greeter_core.worker import tree
tree.kill_tree = lambda *args, **kwargs: None
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        log(name, os.getpid())
        time.sleep(LIFE)
    os._exit(0)
time.sleep(0.2)
os.kill(os.getppid(), signal.SIGKILL)
time.sleep(LIFE)
return "still here\"""",
        LOG,
    ),
)


def logged(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def heartbeat(path: Path) -> int:
    """The forker's generations so far (one line each)."""
    return len(logged(path))


def none_left(path: Path, seconds: float = 10.0) -> None:
    """Every process an attacker logged ends within *seconds* (killed after, so a failure leaves none)."""
    pids = logged(path)
    try:
        wait_for(lambda: not any(alive(pid) for pid in pids), seconds, f"the attacker's {len(pids)} processes to end")
    finally:
        for pid in pids:
            kill_quietly(pid, signal.SIGKILL)


def spawning(pids: Path, limit: int) -> tuple[str, ...]:
    """The command line of a SPAWN greeting under ``--worker-processes`` *limit*, logging to *pids* (granted)."""
    return (
        "--driver", "spawn500", "--isolation", "process", "--allow-write", str(pids.parent),
        "--worker-processes", str(limit), "--name", str(pids),
    )  # fmt: skip


# -- the bound: --worker-processes ------------------------------------------------------------------------------


def test_a_plugin_starting_500_processes_is_stopped_at_the_limit_in_one_line(cli, install, tmp_path) -> None:
    """As root, 500 forks in one greeting meet --worker-processes (a cgroup's pids.max): the greeting fails in
    one line naming the limit, and none of what it started is left."""
    install(SPAWN)
    pids = log_in(tmp_path)
    done = cli(*spawning(pids, 64))
    assert done.returncode != 0
    assert "--worker-processes 64" in one_line(done.stderr), done.stderr
    assert 0 < len(logged(pids)) < 64
    none_left(pids)


def test_an_ordinary_users_plugin_starting_500_processes_is_stopped_at_the_limit(
    unprivileged: Unprivileged,  # noqa: F811
) -> None:
    """As an ordinary user (no cgroup; RLIMIT_NPROC and the keeper's count), the same plugin is stopped at
    the limit, in one line naming it, and leaves nothing."""
    unprivileged.install(SPAWN)
    pids = log_in(unprivileged.home)
    done = unprivileged.run(*spawning(pids, 64))
    assert done.returncode != 0
    assert "--worker-processes 64" in one_line(done.stderr), done.stderr
    assert 0 < len(logged(pids)) <= 64
    none_left(pids)


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_with_no_limit_500_processes_are_all_stopped_when_the_host_stops(
    who: str,
    cli,
    install,
    tmp_path,
    unprivileged: Unprivileged,  # noqa: F811
) -> None:
    """With --worker-processes 0 the tree is as big as the plugin makes it; the host's stop still ends all of it."""
    if who == "root":
        install(SPAWN)
        pids = log_in(tmp_path)
        done = cli(*spawning(pids, 0))
    else:
        unprivileged.install(SPAWN)
        pids = log_in(unprivileged.home, "pids-unlimited")
        done = unprivileged.run(*spawning(pids, 0))
    started = time.monotonic()
    assert done.stdout.strip() == "started 500", done.stderr
    assert len(logged(pids)) == 500
    none_left(pids)
    print(f"{who}: 500 processes gone {time.monotonic() - started:.3f} s after the host's exit")


# -- the stop: nothing outruns it --------------------------------------------------------------------------------


def forker_outlives(pids: Path) -> None:
    """The forker's generations stop growing once the host has stopped the worker, and none of them is left."""
    before = heartbeat(pids)
    time.sleep(0.5)
    after = heartbeat(pids)
    assert after == before, f"the forker forked {after - before} more times after its worker was stopped"
    none_left(pids)


def test_2000_threads_are_refused_at_the_limit_in_one_line(cli, install, tmp_path) -> None:
    """At --worker-processes 64 the 2,000 threads are refused: one line naming the limit, the forker ended."""
    install(THREADS_AND_FORKER)
    pids = log_in(tmp_path)
    done = cli(
        "--driver",
        "forker",
        "--isolation",
        "process",
        "--allow-write",
        str(pids.parent),
        "--worker-processes",
        "64",
        "--name",
        str(pids),
    )
    assert "--worker-processes 64" in one_line(done.stderr), done.stderr
    forker_outlives(pids)


def test_a_forker_behind_2000_threads_does_not_survive_the_hosts_stop(start, install, tmp_path) -> None:
    """With no limit, 2,000 idle threads and a fork-and-exit loop under a running host: SIGTERM to the host
    ends the forker at once."""
    install(THREADS_AND_FORKER)
    pids = log_in(tmp_path)
    greeter = start(
        "--driver",
        "forker",
        "--isolation",
        "process",
        "--allow-write",
        str(pids.parent),
        "--interval",
        "60",
        "--worker-processes",
        "0",
        "--name",
        str(pids),
    )
    greeter.wait_greetings("threads and a forker")
    assert heartbeat(pids) > 0
    assert greeter.stop() == 0
    forker_outlives(pids)


def test_a_forker_behind_2000_threads_does_not_survive_the_swap_back(start, install, tmp_path) -> None:
    """Swapped into a running loop and back, the forker's worker is retired, and the forker with it."""
    install(THREADS_AND_FORKER)
    pids = log_in(tmp_path)
    greeter = start(
        "--driver",
        "english",
        "--isolation",
        "process",
        "--allow-write",
        str(pids.parent),
        "--interval",
        "0.2",
        "--control",
        "127.0.0.1:0",
        "--worker-processes",
        "0",
        "--name",
        str(pids),
    )
    assert greeter.swap("forker").status == 200
    wait_for(lambda: heartbeat(pids) > 0, what="the forker to fork")
    assert greeter.swap("english").status == 200
    wait_for(lambda: greeter.status()["driver"] == "english", what="the swap back")
    time.sleep(0.5)  # the retired worker is closed in a thread of its own
    forker_outlives(pids)
    assert greeter.stop() == 0


@pytest.mark.parametrize("mode", ["one-shot", "run"])
def test_a_plugin_that_kills_its_keeper_leaves_no_setsid_process(cli, start, install, tmp_path, mode) -> None:
    """As root, a plugin that disarms the worker's tree kill and SIGKILLs its keeper leaves no process behind:
    the tree's cgroup is named after the keeper, and the host ends it."""
    install(KEEPER_KILLER)
    pids = log_in(tmp_path)
    if mode == "one-shot":
        done = cli(
            "--driver", "keeperkill", "--isolation", "process", "--allow-write", str(pids.parent), "--name", str(pids)
        )
        assert done.returncode != 0
    else:
        greeter = start(
            "--driver",
            "keeperkill",
            "--isolation",
            "process",
            "--allow-write",
            str(pids.parent),
            "--count",
            "1",
            "--name",
            str(pids),
        )
        greeter.wait()
    assert len(logged(pids)) == 1
    none_left(pids, seconds=3)


def test_an_ordinary_users_plugin_that_kills_its_keeper_leaves_no_setsid_process(
    unprivileged: Unprivileged,  # noqa: F811
) -> None:
    """As an ordinary user (no cgroup) in a long run, the fork server is the orphaned tree's subreaper, and
    ends what its killed keeper left. ``--sandbox off``: confined, the plugin cannot signal its keeper at all
    (Landlock's signal scope), so only an unconfined worker shows the sweep beneath."""
    unprivileged.install(KEEPER_KILLER)
    pids = log_in(unprivileged.home, "keeper-pids")
    with unprivileged.popen(
        "run",
        "--driver",
        "keeperkill",
        "--isolation",
        "process",
        "--sandbox",
        "off",
        "--interval",
        "0.5",
        "--name",
        str(pids),
    ) as greeter:
        try:
            wait_for(lambda: logged(pids), what="the setsid'd process")
            none_left(pids, seconds=5)
        finally:
            greeter.send_signal(signal.SIGTERM)
            greeter.communicate(timeout=60)
