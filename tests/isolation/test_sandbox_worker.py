"""The sandbox wired into the worker: hostile plugins through the CLI are refused in one line, grants open them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from basics import REPO, wait_for
from docblocks import block_after, matches
from plugins import PluginSpec, greet_body
from unprivileged import Unprivileged, unprivileged  # noqa: F401  (the session fixture)

from greeter_core.worker import sandbox as sb

pytestmark = pytest.mark.skipif(sb.probe().landlock_abi < 6, reason="needs Landlock ABI 6 (Linux 6.12)")

CONNECT = PluginSpec(
    "dialer",
    code=greet_body(
        "import socket\nsocket.create_connection(('127.0.0.1', int(self.context.config['port'])), timeout=2).close()\n"
        "return 'connected'"
    ),
)
READ = PluginSpec("reader", code=greet_body("return open(self.context.config['path']).read()"))
KILL = PluginSpec(
    "killer", code=greet_body("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn 'killed'")
)
SCRATCH = PluginSpec(
    "scribbler",
    code=greet_body(
        "import os, tempfile\nscratch = tempfile.gettempdir()\n"
        "open(os.path.join(scratch, 'f'), 'w').write('x')\nreturn scratch"
    ),
)


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_a_refused_connect_names_the_grant_and_the_grant_opens_it(install, cli, listener: int) -> None:
    """TCP connect to a listener on 127.0.0.1: refused in one line naming --allow-net PORT; granted, it connects."""
    install(CONNECT)
    args = ("--driver", "dialer", "--isolation", "process", "--option", f"port={listener}")
    refused = cli(*args)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "greeter: error: plugin 'dialer' (greeter-dialer 1.0) failed: refused network access "
        f"(connect 127.0.0.1:{listener}); grant it with --allow-net {listener}"
    )
    granted = cli(*args, "--allow-net", str(listener))
    assert (granted.returncode, granted.stdout.strip()) == (0, "connected"), granted.stderr


def test_a_secret_file_is_refused_until_granted(install, cli, tmp_path: Path, greeter_env) -> None:
    """A file in a fake home: refused, with the --allow-read that would allow it; the environment grants it too."""
    install(READ)
    secret = tmp_path / "home" / ".secret"
    secret.parent.mkdir()
    secret.write_text("hunter2")
    args = ("--driver", "reader", "--isolation", "process", "--option", f"path={secret}")
    refused = cli(*args)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(f"failed: refused reading {secret}; grant it with --allow-read {secret}")
    assert cli(*args, "--allow-read", str(secret)).stdout.strip() == "hunter2"
    greeter_env["GREETER_ALLOW_READ"] = str(secret)
    assert cli(*args).stdout.strip() == "hunter2"


def test_the_keeper_cannot_be_killed_and_the_worker_stays_up(install, cli) -> None:
    """SIGKILL to the worker's keeper (outside its sandbox) fails as the plugin's error; nothing crashed."""
    install(KILL)
    result = cli("--driver", "killer", "--isolation", "process")
    assert result.returncode == 1
    assert "failed: refused sending signal 9 to" in result.stderr
    assert "crashed" not in result.stderr


def test_off_runs_the_worker_unconfined(install, cli) -> None:
    """--sandbox off: the same plugin's SIGKILL reaches its keeper (the refusal above is the sandbox's doing)."""
    install(KILL)
    result = cli("--driver", "killer", "--isolation", "process", "--sandbox", "off")
    assert "refused" not in result.stderr  # os.kill() did not fail
    # The keeper is gone: the greeting came back first, or its worker was ended with it (the tree kill).
    assert result.returncode == 0 or "worker killed by signal SIGKILL" in result.stderr, result.stderr


def test_check_json_shows_what_is_in_force_and_the_scratch_is_removed(install, cli) -> None:
    """greeter check --json: the grants, the state, and the kernel's own view; the scratch directory is gone after."""
    install(SCRATCH)
    result = cli("check", "--json", "scribbler", "--allow-net", "8443")
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    box = record["sandbox"]
    assert box["state"] == "full", box
    assert box["grants"] == {"allow_read": [], "allow_write": [], "allow_net": [8443]}
    assert box["kernel"]["NoNewPrivs"] == "1"
    assert box["kernel"]["Seccomp"] == "2"
    assert box["kernel"]["CapEff"] == "0000000000000000"
    scratch = record["detail"]
    assert os.path.basename(scratch).startswith("greeter-scribbler-")
    assert not os.path.exists(scratch)


#: A host that loads the scribbler in a worker (forked from a fork server, or cold), prints its scratch, waits.
SCRIBBLING_HOST = """
import sys
from greeter_core import load
from greeter_core.worker.forkserver import ForkServer
greeter = load("scribbler", isolation="process", forkserver=ForkServer() if sys.argv[1] == "forked" else None)
print(greeter.greet("x"), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("how", ["forked", "cold"])
def test_a_killed_hosts_worker_scratch_is_removed_by_its_keeper(install, greeter_env, tmp_path: Path, how) -> None:
    """SIGKILL of the host, which then removes nothing: the worker's keeper ends the tree and removes the scratch."""
    install(SCRATCH)
    temp = tmp_path / "tmp"
    temp.mkdir()
    host = subprocess.Popen(
        [sys.executable, "-c", SCRIBBLING_HOST, how],
        env={**greeter_env, "TMPDIR": str(temp)},
        cwd=tmp_path,  # not the checkout: python -c imports from its working directory first
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        scratch = Path(host.stdout.readline().strip())  # type: ignore[union-attr]
        assert scratch.parent == temp and (scratch / "f").read_text() == "x"
        host.kill()
        host.wait()
        wait_for(lambda: not os.listdir(temp), what=f"{scratch} to be removed by the worker's keeper")
    finally:
        host.kill()
        host.wait()
        for pipe in (host.stdin, host.stdout):
            pipe.close()  # type: ignore[union-attr]


def test_require_refuses_on_a_kernel_that_lacks_a_piece(install, cli, greeter_env) -> None:
    """--sandbox require on a (simulated) Landlock ABI 5: the worker refuses, the plugin never runs."""
    install(SCRATCH)
    greeter_env["GREETER_SANDBOX_SIMULATE"] = "landlock=5"
    result = cli("--driver", "scribbler", "--isolation", "process", "--sandbox", "require")
    assert result.returncode == 1
    assert "--sandbox require: refusing to run the plugin with the sandbox partially enforced: missing signal" in (
        result.stderr
    )
    auto = cli("--driver", "scribbler", "--isolation", "process")
    assert auto.returncode == 0
    assert "sandbox partially enforced: missing signal scoping (Landlock ABI 5 < 6)" in auto.stderr


def test_a_write_grant_over_greeters_own_files_is_a_usage_error(install, cli) -> None:
    """Deny wins over allow: --allow-write / would cover greeter_core; exit 2, one line."""
    install(SCRATCH)
    result = cli("--driver", "scribbler", "--isolation", "process", "--allow-write", "/")
    assert result.returncode == 2
    assert "--allow-write / is refused" in result.stderr


def test_status_shows_the_sandbox_settings_and_what_is_in_force(install, start, greeter_env, listener: int) -> None:
    """greeter run: $GREETER_ALLOW_NET grants under --isolation process; /status shows it and the worker's sandbox."""
    install(CONNECT)
    greeter_env["GREETER_ALLOW_NET"] = str(listener)
    greeter = start(
        *("--driver", "dialer", "--option", f"port={listener}", "--interval", "0.05"),
        *("--control", "127.0.0.1:0", "--isolation", "process"),
    )
    greeter.wait_greetings("connected")
    status = greeter.status()
    assert (status["sandbox"], status["allow_read"], status["allow_net"]) == ("auto", [], [listener])
    box = status["worker"]["sandbox"]
    assert (box["state"], box["grants"]["allow_net"], box["kernel"]["NoNewPrivs"]) == ("full", [listener], "1")
    assert greeter.stop() == 0


DIALER_TOO = PluginSpec("otherdialer", code=CONNECT.code)
WEATHER = PluginSpec("weather", code=greet_body("return 'Sunny'"))


def test_a_grant_in_the_lock_file_opens_exactly_that_plugin(install, cli, tmp_path: Path, listener: int) -> None:
    """greeter lock --allow-net dialer=PORT: under --lock, dialer connects and no other plugin; re-locking keeps it."""
    install(CONNECT, DIALER_TOO)
    lock = str(tmp_path / "greeter.lock")
    written = cli("lock", "--output", lock, "--allow-net", f"dialer={listener}")
    assert written.returncode == 0, written.stderr
    assert f"  dialer is granted --allow-net {listener}" in written.stderr.splitlines()
    assert cli("lock", "--output", lock).returncode == 0  # rewritten without flags: the grant is carried over
    args = ("--isolation", "process", "--option", f"port={listener}")
    granted = cli("--driver", "dialer", *args, "--lock", lock)
    assert (granted.returncode, granted.stdout.strip()) == (0, "connected"), granted.stderr
    other = cli("--driver", "otherdialer", *args, "--lock", lock)
    assert other.returncode == 1 and f"grant it with --allow-net {listener}" in other.stderr
    unlocked = cli("--driver", "dialer", *args)  # the lock's grants apply only under --lock
    assert unlocked.returncode == 1 and f"grant it with --allow-net {listener}" in unlocked.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--allow-net", "nosuch=443"), "cannot grant plugin 'nosuch': no plugin of that name is installed and locked"),
        (("--allow-net", "dialer=http"), "--allow-net: not a TCP port (1-65535): 'http'"),
        (("--allow-read", "dialer"), "expected NAME=VALUE"),
    ],
    ids=["unknown-plugin", "not-a-port", "no-value"],
)
def test_a_bad_lock_grant_is_one_line_and_exit_2(install, cli, tmp_path: Path, args, message: str) -> None:
    """A grant for no locked plugin, or one that means nothing, is refused before any lock file is written."""
    install(CONNECT)
    result = cli("lock", "--output", str(tmp_path / "greeter.lock"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "greeter.lock").exists()


def test_a_lock_grant_over_greeters_own_files_is_refused_naming_the_lock(install, cli, tmp_path: Path) -> None:
    """Deny wins over the lock's grants too: a write grant of / is exit 2 when the plugin is loaded, naming the lock."""
    install(SCRATCH)
    lock = str(tmp_path / "greeter.lock")
    assert cli("lock", "--output", lock, "--allow-write", "scribbler=/").returncode == 0
    result = cli("--driver", "scribbler", "--isolation", "process", "--lock", lock)
    assert result.returncode == 2
    assert "--allow-write / is refused" in result.stderr and "by the lock file" in result.stderr


def test_a_version_1_lock_file_is_still_read(install, cli, tmp_path: Path) -> None:
    """A lock written before grants existed (lock-version 1) still locks; it grants nothing."""
    install(SCRATCH)
    lock = tmp_path / "greeter.lock"
    assert cli("lock", "--output", str(lock)).returncode == 0
    lock.write_text(lock.read_text().replace("lock-version = 2", "lock-version = 1"))
    result = cli("--driver", "scribbler", "--isolation", "process", "--lock", str(lock))
    assert result.returncode == 0, result.stderr


def test_the_docs_lock_grant_runs_as_written(install, cli, tmp_path: Path) -> None:
    """docs/operating.md's `greeter lock --allow-*` line prints what it shows and writes the grants table shown."""
    install(WEATHER)
    [(command, shown)] = block_after(
        REPO / "docs" / "operating.md", "### Per-plugin sandbox grants", "console"
    ).transcript()
    assert command.startswith("greeter lock ")
    result = cli(*command.split()[1:])
    assert result.returncode == 0 and matches(shown, result.stderr.splitlines()), result.stderr
    data = tomllib.loads((tmp_path / "greeter.lock").read_text())
    assert data["distributions"]["greeter-weather"]["grants"] == {
        "weather": {"allow-read": ["/srv/weather"], "allow-net": [443]}
    }


#: Reads the host's pid from a granted file, then tries /proc/<host>/cmdline and SIGKILL; greets with the outcome.
HOST_KILLER = PluginSpec(
    "hostkiller",
    code=greet_body(
        """pid = int(open(self.context.config["pidfile"]).read())
outcome = {}
try:
    open(f"/proc/{pid}/cmdline", "rb").read()
    outcome["read"] = "ok"
except OSError as error:
    outcome["read"] = errno.errorcode[error.errno]
try:
    os.kill(pid, signal.SIGKILL)
    outcome["kill"] = "ok"
except OSError as error:
    outcome["kill"] = errno.errorcode[error.errno]
return json.dumps(outcome)""",
        "import errno, json, os, signal",
    ),
)


@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_an_ordinary_users_confined_worker_cannot_signal_or_read_its_host(
    unprivileged: Unprivileged,  # noqa: F811
    sandbox: str,
) -> None:
    """As nobody, host and worker are one user, so only the sandbox stands between them: confined, the worker's
    SIGKILL and its read of /proc/<host> are refused and the host greets on; unconfined (off), the host dies."""
    unprivileged.install(HOST_KILLER)
    pidfile = unprivileged.home / f"host-{sandbox}.pid"
    pidfile.write_text("")  # it exists when the worker is confined (a grant names what is there); filled below
    pidfile.chmod(0o644)
    args = ("--driver", "hostkiller", "--isolation", "process", "--interval", "0.05", "--sandbox", sandbox)
    with unprivileged.popen("run", *args, "--option", f"pidfile={pidfile}", "--allow-read", str(pidfile)) as host:
        assert host.stdout is not None
        pidfile.write_text(str(host.pid))  # the same file: until now each greeting failed to read a pid
        line = host.stdout.readline()
        if sandbox == "off":
            assert host.wait(timeout=60) == -signal.SIGKILL
            return
        host.send_signal(signal.SIGTERM)
        host.communicate(timeout=60)
    assert json.loads(line) == {"read": "EACCES", "kill": "EPERM"}, line
    assert host.returncode == 0
