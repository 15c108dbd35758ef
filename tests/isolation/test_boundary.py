"""Process isolation is a boundary: a hostile plugin cannot reach into the host, outlive it or starve it.

Each plugin below is written by a careless or hostile stranger, built as a
real distribution, and run in a real worker; the host is this test process
(API tests) or a real ``greeter`` process (CLI tests).
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from basics import one_line, wait_for
from plugins import ALPHA, HANG, OS_EXIT, PluginSpec, greet_body
from processes import alive, kill_quietly, parent
from running import Lines

from greeter_core import (
    CircuitOpenError,
    HandshakeError,
    PluginCallError,
    PluginLoadError,
    PluginTimeoutError,
    ProtocolError,
    WorkerCrashedError,
    WorkerLimitError,
    load,
)
from greeter_core.worker import client as worker_client
from greeter_core.worker.protocol import Limits
from greeter_core.worker.supervision import Supervision

#: Plugin code: the fd of the worker's end of the channel (the only socket a worker holds).
CHANNEL = """
import os, struct, time

def channel_fd():
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}").startswith("socket:"):
                return int(entry)
        except OSError:
            pass
"""

# The attack of the issue: a pickle naming greeter_core.errors / describe.__builtins__.get, which
# pickle protocol >= 4 resolves to the builtins' get, hence eval, hence any code in the host.
ATTACK = PluginSpec(
    "attack",
    code=greet_body(
        """
def text(s):
    data = s.encode()
    return b"\\x8c" + bytes([len(data)]) + data

code = f"__import__('pathlib').Path({self.context.config['marker']!r}).write_text('pwned')"
bomb = (
    b"\\x80\\x04" + text("greeter_core.errors") + text("describe.__builtins__.get") + b"\\x93"
    + text("eval") + b"\\x85R" + b"\\x8c" + bytes([len(code)]) + code.encode() + b"\\x85R."
)
frame = bomb if name == "raw" else b"E" + bomb
os.write(channel_fd(), struct.pack("!I", len(frame)) + frame)
time.sleep(1)
return "harmless"
""",
        CHANNEL,
    ),
)

#: Writes a forged error of a kind only the host may raise (exit 2), in the old pickle framing or the new one.
FORGED_ERROR = PluginSpec(
    "forged",
    code=greet_body(
        """
if name == "pickle":
    import pickle
    from greeter_core.errors import UsageError
    frame = pickle.dumps(("error", UsageError("you typed it wrong")), protocol=5)
else:
    import json
    fields = {"message": "you typed it wrong", "driver": None, "plugin": None}
    frame = b"E" + json.dumps({"kind": "UsageError", "fields": fields}).encode()
os.write(channel_fd(), struct.pack("!I", len(frame)) + frame)
time.sleep(1)
return "harmless"
""",
        CHANNEL,
    ),
)

#: Sends what no protocol allows: a frame of an unknown kind, a greeting that is not UTF-8, an empty frame.
GARBAGE = PluginSpec(
    "garbage",
    code=greet_body(
        """
frame = {"kind": b"X??", "utf8": b"O\\xff\\xfe", "empty": b""}[name]
os.write(channel_fd(), struct.pack("!I", len(frame)) + frame)
time.sleep(1)
return "harmless"
""",
        CHANNEL,
    ),
)

#: Trickles a valid reply onto the channel, one byte every 0.2 s: 6 s for the whole frame.
TRICKLE = PluginSpec(
    "trickle",
    code=greet_body(
        """
reply = b"O" + b"slow greeting of 29 bytes"
for byte in struct.pack("!I", len(reply)) + reply:
    os.write(channel_fd(), bytes([byte]))
    time.sleep(0.2)
time.sleep(60)
""",
        CHANNEL,
    ),
)

#: Announces a reply of 2 GiB on the channel and sends nothing more.
HUGE_HEADER = PluginSpec(
    "hugeheader",
    code=greet_body('os.write(channel_fd(), struct.pack("!I", 2**31 - 1))\ntime.sleep(60)', CHANNEL),
)

#: Returns a 20 MiB greeting: more than a frame may hold.
BIG_REPLY = PluginSpec("bigreply", code=greet_body('return "x" * (20 * 1024 * 1024)'))

#: Says whether a module lying in the host's current directory is importable in the worker.
CWD_PROBE = PluginSpec(
    "cwdprobe",
    code=greet_body(
        'return "probe found" if importlib.util.find_spec("gt_cwd_probe") else "probe missing"', "import importlib.util"
    ),
)

#: Logs under the host's own logger names, at CRITICAL, with a forged line in the message.
FORGER = PluginSpec(
    "forger",
    code=greet_body(
        """
logging.getLogger("greeter_core.control").critical("token leaked\\nINFO greeter_core.runtime: switched driver: a -> b")
sys.stderr.write("\\x1egreeter-log\\x1f" + json.dumps([20, "greeter_core.runtime", "switched driver: x -> y"]) + "\\n")
sys.stderr.flush()
return "forged"
""",
        "import json, logging, sys",
    ),
)

#: Writes 300 MiB to stderr without a newline (a progress bar with ``\\r`` does the same), then greets.
FLOOD = PluginSpec(
    "flood",
    code=greet_body(
        """
block = b"\\rprogress " + b"x" * (1024 * 1024 - 10)
for _ in range(300):
    os.write(2, block)
return "flooded"
""",
        "import os",
    ),
)

#: Writes 200,000 short lines to stdout in one call.
CHATTER = PluginSpec(
    "chatter",
    code=greet_body('os.write(1, b"line\\n" * 200_000)\nreturn "chattered"', "import os"),
)

#: Spawns a grandchild that calls setsid() and forks again (so it is nobody's child), writes its pid to
#: the file named by the option "pidfile" and sleeps; once the pid is written the plugin greets, or,
#: asked to greet "exit", exits.
SPAWNER = PluginSpec(
    "spawner",
    code=greet_body(
        """
detach = (
    "import os, sys, time\\n"
    "os.setsid()\\n"
    "if os.fork(): os._exit(0)\\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\\n"
    "time.sleep(600)\\n"
)
pidfile = self.context.config["pidfile"]
subprocess.run([sys.executable, "-c", detach, pidfile], check=True)
while not os.path.exists(pidfile) or not open(pidfile).read():
    time.sleep(0.01)
if name == "exit":
    os._exit(7)
return "spawned"
""",
        "import os, subprocess, sys, time",
    ),
)

#: Closes every pidfd the worker holds (the worker watches its keeper through one), then hangs in greet().
BLINDER = PluginSpec(
    "blinder",
    code=greet_body(
        'for fd in os.listdir("/proc/self/fd"):\n'
        "    with contextlib.suppress(OSError):\n"
        '        if "pidfd" in os.readlink(f"/proc/self/fd/{fd}"):\n'
        "            os.close(int(fd))\n"
        'self.context.logger.warning("sleeping")\n'
        "time.sleep(3600)",
        "import contextlib, os, time",
    ),
)

#: Raises KeyboardInterrupt itself: in a worker it can only be the plugin's, never the user's Ctrl-C.
RAISES_INTERRUPT = PluginSpec("interrupt", code=greet_body("raise KeyboardInterrupt"))

#: Raises a bare BaseException subclass when imported.
IMPORT_BASE_EXCEPTION = PluginSpec(
    "importboom", code="class Boom(BaseException):\n    pass\n\nraise Boom('at import')\n"
)

#: Raises its own GreeterError subclass (with its own constructor), or greeter's UsageError.
OWN_ERROR = PluginSpec(
    "ownerror",
    code=greet_body(
        "if name == 'usage':\n    raise UsageError('you typed it wrong')\nraise Mine(1, 2)",
        textwrap.dedent("""
        from greeter_core.errors import GreeterError, UsageError

        class Mine(GreeterError):
            def __init__(self, a, b):
                super().__init__(f"mine {a} {b}")
        """),
    ),
)

#: Leaks 10 MiB per step until something stops it; greets "fine" when asked to greet "fine".
LEAK = PluginSpec(
    "leak",
    code=greet_body(
        'if name == "fine":\n    return "fine"\nhoard = []\nwhile True:\n    hoard.append(bytearray(10 * 1024 * 1024))'
    ),
)
#: Burns CPU forever.
SPIN = PluginSpec("spin", code=greet_body("while True:\n    pass"))
#: Opens files until something stops it.
FD_LEAK = PluginSpec(
    "fdleak", code=greet_body("files = []\nwhile True:\n    files.append(open(os.devnull))", "import os")
)

HOSTILE = [
    HANG,
    BLINDER,
    ATTACK,
    FORGED_ERROR,
    GARBAGE,
    TRICKLE,
    HUGE_HEADER,
    BIG_REPLY,
    CWD_PROBE,
    FORGER,
    FLOOD,
    CHATTER,
    SPAWNER,
    RAISES_INTERRUPT,
    IMPORT_BASE_EXCEPTION,
    OWN_ERROR,
    LEAK,
    SPIN,
    FD_LEAK,
    ALPHA,
    OS_EXIT,
]


#: Every hostile plugin installed and visible to this process (and so to its workers): conftest's ``plugins``.
pytestmark = pytest.mark.plugins(*HOSTILE)


# -- 1. the host never builds objects named by bytes a worker sent ------------------------------------


@pytest.mark.parametrize("framing", ["raw", "tagged"])
def test_a_pickle_attack_on_the_channel_runs_nothing_in_the_host(isolated, tmp_path, framing: str) -> None:
    """A frame naming describe.__builtins__.get (eval) is refused as a protocol error; no code runs."""
    marker = tmp_path / "pwned"
    greeter = isolated("attack", config={"marker": str(marker)})
    with pytest.raises(ProtocolError) as caught:
        greeter.greet(framing)
    assert not marker.exists()
    assert "plugin 'attack' (greeter-attack 1.0): its worker broke the protocol" in str(caught.value)


@pytest.mark.parametrize("framing", ["pickle", "json"])
def test_a_worker_cannot_report_an_error_only_the_host_may_raise(cli, install, framing: str) -> None:
    """A forged UsageError (exit 2) from a worker is a protocol error naming the plugin, exit 1."""
    install(FORGED_ERROR)
    result = cli("--driver", "forged", "--isolation", "process", "--name", framing)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "plugin 'forged' (greeter-forged 1.0): its worker broke the protocol" in line
    assert "you typed it wrong" not in line


# -- 2. the worker imports what the host runs, not what lies in the current directory -------------------


def test_a_module_in_the_hosts_working_directory_is_not_importable_in_the_worker(cli, install, tmp_path) -> None:
    """`python -m` puts the current directory on the host's path; the worker does not get it."""
    install(CWD_PROBE)
    (tmp_path / "gt_cwd_probe.py").write_text("")
    assert cli("--driver", "cwdprobe").stdout == "probe found\n"  # in process, the host's path
    result = cli("--driver", "cwdprobe", "--isolation", "process")
    assert (result.returncode, result.stdout) == (0, "probe missing\n"), result.stderr


def test_plugins_on_an_explicit_pythonpath_of_the_working_directory_still_load(install, greeter_env, site) -> None:
    """`PYTHONPATH=. python -m greeter_core` from the plugins' directory: the worker keeps what the user set."""
    install(ALPHA)
    result = subprocess.run(
        [sys.executable, "-m", "greeter_core", "--driver", "alpha", "--isolation", "process"],
        env={**greeter_env, "PYTHONPATH": "."},
        cwd=site,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "Alpha Universe\n"), result.stderr


def test_a_greeter_core_in_the_working_directory_is_not_the_one_the_worker_runs(install, greeter_env, tmp_path) -> None:
    """From a directory holding another greeter_core (a checkout), the worker still runs the host's."""
    install(ALPHA)
    fake = tmp_path / "greeter_core"
    fake.mkdir()
    (fake / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    host = tmp_path / "bin" / "host.py"  # like the `greeter` script: its own directory is first, not the cwd
    host.parent.mkdir()
    host.write_text("from greeter_core.cli import main\nraise SystemExit(main())\n")
    result = subprocess.run(
        [sys.executable, str(host), "--driver", "alpha", "--isolation", "process"],
        env=greeter_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "Alpha Universe\n"), result.stderr
    assert not (tmp_path / "imported").exists()


def test_the_handshake_refuses_a_worker_running_another_greeter_core(plugins, tmp_path, monkeypatch) -> None:
    """A worker that imported another copy of greeter_core is refused, naming both versions and places."""
    import greeter_core

    other = tmp_path / "elsewhere"
    shutil.copytree(Path(greeter_core.__file__).parent, other / "greeter_core")
    init = other / "greeter_core" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.'))
    real = worker_client.worker_sys_path
    monkeypatch.setattr(worker_client, "worker_sys_path", lambda: [str(other), *real()])
    with pytest.raises(HandshakeError) as caught:
        load("alpha", isolation="process")
    message = str(caught.value)
    assert "runs greeter-core" in message and "both must run the same installed greeter-core" in message
    assert f"9.{greeter_core.__version__}" in message and str(other / "greeter_core") in message
    assert str(Path(greeter_core.__file__).parent) in message


# -- 3. the worker's environment is deliberate ---------------------------------------------------------------


def test_the_worker_gets_only_the_allowed_environment_and_what_it_is_given(isolated, monkeypatch) -> None:
    """Host variables stay in the host (greeter's own above all); PATH and the given ones reach the worker."""
    monkeypatch.setenv("GREETER_CONTROL_TOKEN", "s3cret")
    monkeypatch.setenv("GT_PRIVATE", "private")
    greeter = isolated("alpha", worker_env={"GT_GIVEN": "given"})
    environ = Path(f"/proc/{greeter.status()['pid']}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0] for entry in environ if entry}
    assert b"GREETER_CONTROL_TOKEN" not in names and b"GT_PRIVATE" not in names
    assert b"GT_GIVEN=given" in environ and b"PATH" in names
    assert not [name for name in names if name.startswith(b"PYTHON")]


# -- 4. worker log records cannot pass for the host's --------------------------------------------------------


def test_worker_log_records_are_logged_under_the_plugins_logger(cli, install) -> None:
    """Records a plugin logs under greeter_core's names come out under greeter.plugins.<driver>, one line each."""
    install(FORGER)
    result = cli("--driver", "forger", "--isolation", "process")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith(("CRITICAL greeter_core", "INFO greeter_core"))], lines
    assert "CRITICAL greeter.plugins.forger: greeter_core.control: token leaked" in lines
    assert "    INFO greeter_core.runtime: switched driver: a -> b" in lines  # indented: a continuation line


# -- 5. output cannot exhaust the host's memory ----------------------------------------------------------------

FLOOD_HOST = """
import logging, sys
from greeter_core import load
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

def kib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])

with load(sys.argv[1], isolation="process", call_timeout=600) as greeter:
    before = kib("VmRSS:")
    print(greeter.greet("x"), flush=True)
print(before, kib("VmHWM:"), flush=True)
"""


def test_300_mib_of_output_without_a_newline_costs_the_host_one_line(install, greeter_env, tmp_path) -> None:
    """The host's peak memory stays far below what the plugin wrote; the line is cut, saying so."""
    install(FLOOD)
    result = subprocess.run(
        [sys.executable, "-c", FLOOD_HOST, "flood"],
        env=greeter_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    greeting, numbers = result.stdout.splitlines()
    before, peak = map(int, numbers.split())
    assert greeting == "flooded"
    assert (peak - before) < 200 * 1024, f"the host grew by {(peak - before) // 1024} MiB"
    [cut] = [line for line in result.stderr.splitlines() if "[line cut at" in line]
    assert cut.startswith("WARNING greeter.plugins.flood: stderr: \\rprogress xxx")


def test_a_flood_of_lines_is_logged_up_to_a_rate_and_the_rest_is_counted(isolated, caplog) -> None:
    """200,000 lines in one call: a bounded number become records, and one record says how many were dropped."""
    with caplog.at_level(logging.WARNING, logger="greeter.plugins.chatter"):
        greeter = isolated("chatter")
        assert greeter.greet("x") == "chattered"
        greeter.close()
    records = [r.getMessage() for r in caplog.records if r.name == "greeter.plugins.chatter"]
    dropped = [m for m in records if "of output over the limit of" in m]
    assert dropped and len(records) < 50_000
    total = sum(int(m.split("dropped ")[1].split()[0]) for m in dropped)
    assert total + records.count("stdout: line") == 200_000


# -- 6. --call-timeout is a deadline for the whole call -------------------------------------------------------


def test_a_reply_trickled_a_byte_at_a_time_times_out_at_the_deadline(isolated) -> None:
    """Each byte arrives well within the timeout, the whole reply does not: the call times out."""
    greeter = isolated("trickle", call_timeout=1)
    pid = greeter.status()["pid"]
    with pytest.raises(PluginTimeoutError):
        greeter.greet("x")
    wait_for(lambda: not alive(pid), what=f"worker {pid} to be killed")


# -- 8. nothing a plugin starts outlives its worker or its host ----------------------------------------------


@pytest.mark.parametrize("plugin", ["hang", "blinder"], ids=["hung-in-a-call", "pidfd-closed-by-the-plugin"])
def test_a_worker_whose_keeper_is_killed_ends_even_mid_call(isolated, caplog, plugin) -> None:
    """The keeper SIGKILLed, its worker ends, though its plugin hangs in greet() or closed the worker's pidfd."""
    greeter = isolated(plugin, call_timeout=600)
    pid = greeter.status()["pid"]
    failed: list[BaseException] = []

    def call() -> None:
        try:
            greeter.greet("x")
        except WorkerCrashedError as error:
            failed.append(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    wait_for(lambda: "sleeping" in caplog.messages, what=f"{plugin} to be inside greet()")
    kill_quietly(parent(pid), signal.SIGKILL)
    wait_for(lambda: not alive(pid), what=f"worker {pid} to end with its keeper")
    caller.join(60)
    assert len(failed) == 1 and "worker killed by signal SIGKILL" in str(failed[0]), failed


SPAWN_HOST = """
import os, sys, time
from greeter_core import load
greeter = load(
    "spawner",
    isolation="process",
    call_timeout=600,
    config={"pidfile": sys.argv[1]},
    allow_write=[os.path.dirname(sys.argv[1])],  # the sandbox's grant for the pid file
)
print(greeter.greet("x"), flush=True)
if sys.argv[2] == "close":
    greeter.close()
else:
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["close", signal.SIGTERM, signal.SIGKILL], ids=["host-closes", "SIGTERM", "SIGKILL"])
def test_a_detached_grandchild_does_not_outlive_the_host(plugins, greeter_env, tmp_path, how) -> None:
    """A process the plugin started, setsid() and double-forked, ends with the host however the host ends."""
    pidfile = tmp_path / "out" / "grandchild.pid"  # out/: the sandbox's write grant (not the site beside it)
    pidfile.parent.mkdir()
    host = subprocess.Popen(
        [sys.executable, "-c", SPAWN_HOST, str(pidfile), str(how)],
        env={**greeter_env, "PYTHONPATH": str(plugins)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = Lines(host.stderr)  # type: ignore[arg-type]
    try:
        assert host.stdout.readline() == "spawned\n", stderr.text  # type: ignore[union-attr]
        grandchild = int(wait_for(pidfile.read_text, what="the grandchild's pid"))
        assert alive(grandchild)
        if how != "close":
            kill_quietly(host.pid, how)
        host.wait(timeout=60)
        wait_for(lambda: not alive(grandchild), what=f"grandchild {grandchild} to end with the host")
    finally:
        host.kill()
        host.wait()
        host.stdout.close()  # type: ignore[union-attr]
        stderr.join()
        if pidfile.exists() and pidfile.read_text():
            kill_quietly(int(pidfile.read_text()), signal.SIGKILL)


def test_a_detached_grandchild_does_not_outlive_a_worker_that_exits(isolated, tmp_path) -> None:
    """The plugin starts a detached process and then calls os._exit: that process ends with the worker."""
    pidfile = tmp_path / "out" / "grandchild.pid"  # out/: the sandbox's write grant (not the site beside it)
    pidfile.parent.mkdir()
    greeter = isolated("spawner", config={"pidfile": str(pidfile)}, call_timeout=60, allow_write=[str(pidfile.parent)])
    try:
        with pytest.raises(WorkerCrashedError) as caught:
            greeter.greet("exit")
        assert "worker exited with code 7" in str(caught.value)
        grandchild = int(pidfile.read_text())
        wait_for(lambda: not alive(grandchild), what=f"grandchild {grandchild} to end with its worker")
    finally:
        if pidfile.exists():
            kill_quietly(int(pidfile.read_text()), signal.SIGKILL)


# -- 9. a reply over the frame limit is reported at once --------------------------------------------------------


def test_a_greeting_over_the_frame_limit_is_a_plugin_failure_and_the_worker_stays(isolated) -> None:
    """A 20 MiB greeting cannot cross: the call fails saying so, and the same worker answers the next call."""
    greeter = isolated("bigreply")
    pid = greeter.status()["pid"]
    for _ in range(2):
        with pytest.raises(PluginCallError) as caught:
            greeter.greet("x")
        assert "plugin 'bigreply' (greeter-bigreply 1.0) failed: reply of 20971520 bytes exceeds the 16 MiB limit" in (
            str(caught.value)
        )
    assert greeter.status()["pid"] == pid and greeter.status()["crashes"] == 0


def test_a_header_announcing_a_huge_reply_is_refused_at_once(isolated) -> None:
    """A worker announcing 2 GiB is stopped as soon as the header arrives, not after waiting for the rest."""
    greeter = isolated("hugeheader", call_timeout=600)
    with pytest.raises(ProtocolError) as caught:
        greeter.greet("x")
    assert "reply of 2147483646 bytes exceeds the 16 MiB limit" in str(caught.value)


# -- 11. and 12. a plugin's own errors and BaseExceptions are reported alike in both modes -----------------------


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize(
    ("name", "expected"), [("usage", "UsageError: you typed it wrong"), ("mine", "Mine: mine 1 2")]
)
def test_a_plugins_own_greeter_error_is_its_failure_in_both_modes(cli, install, isolation, name, expected) -> None:
    """A plugin raising UsageError (or its own GreeterError subclass) cannot make greeter exit 2."""
    install(OWN_ERROR)
    result = cli("--driver", "ownerror", "--isolation", isolation, "--name", name)
    assert result.returncode == 1
    assert one_line(result.stderr) == f"greeter: error: plugin 'ownerror' (greeter-ownerror 1.0) failed: {expected}"


def test_a_keyboard_interrupt_raised_by_the_plugin_is_its_failure_and_the_worker_stays(isolated) -> None:
    """In a worker, KeyboardInterrupt can only be the plugin's own (it ignores SIGINT): a plain failure."""
    greeter = isolated("interrupt")
    pid = greeter.status()["pid"]
    with pytest.raises(PluginCallError) as caught:
        greeter.greet("x")
    assert str(caught.value) == "plugin 'interrupt' (greeter-interrupt 1.0) failed: KeyboardInterrupt"
    assert greeter.status()["pid"] == pid and greeter.status()["crashes"] == 0


def test_a_base_exception_at_import_in_the_worker_is_a_load_error(plugins) -> None:
    """A bare BaseException subclass raised at import is the plugin's load failure, not a dead worker."""
    with pytest.raises(PluginLoadError) as caught:
        load("importboom", isolation="process")
    assert "plugin 'importboom' (greeter-importboom 1.0) failed to load: Boom: at import" in str(caught.value)


@pytest.mark.parametrize("garbage", ["kind", "utf8", "empty"])
def test_a_worker_breaking_the_protocol_is_stopped_and_counted_as_a_crash(isolated, garbage: str) -> None:
    """Whatever a worker sends that the protocol does not allow ends that worker, as a crash: backoff applies."""
    greeter = isolated("garbage")
    pid = greeter.status()["pid"]
    with pytest.raises(ProtocolError):
        greeter.greet(garbage)
    status = greeter.status()
    assert (status["state"], status["crashes"]) == ("backoff", 1)
    wait_for(lambda: not alive(pid), what=f"worker {pid} to be stopped")


# -- supervision: resource limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "options", "limit"),
    [
        ("leak", {"worker_memory": 128}, "--worker-memory 128 MiB"),
        ("spin", {"worker_cpu": 1}, "--worker-cpu 1 s"),
        ("fdleak", {"worker_files": 64}, "--worker-files 64"),
    ],
    ids=["memory", "cpu", "files"],
)
def test_a_worker_over_its_limit_is_stopped_and_the_limit_named(isolated, plugin, options, limit) -> None:
    """Over a limit: one error naming it, the worker gone, and the next call gets a fresh worker."""
    greeter = isolated(plugin, call_timeout=120, **options)
    pid = greeter.status()["pid"]
    with pytest.raises(WorkerLimitError) as caught:
        greeter.greet("x")
    assert f"plugin '{plugin}' (greeter-{plugin} 1.0) exceeded {limit}; its worker was stopped" in str(caught.value)
    wait_for(lambda: not alive(pid), what=f"worker {pid} to be stopped")
    assert greeter.status()["crashes"] == 1


def test_after_going_over_its_memory_limit_the_next_call_gets_a_fresh_worker(isolated) -> None:
    """The leak's worker is gone; the next call starts another, which answers."""
    no_backoff = Supervision(backoff_base=0.0)
    greeter = isolated("leak", limits=Limits(memory_mib=128), call_timeout=120, supervision=no_backoff)
    first = greeter.status()["pid"]
    with pytest.raises(WorkerLimitError):
        greeter.greet("x")
    assert greeter.greet("fine") == "fine"
    assert greeter.status()["pid"] != first and greeter.status()["restarts"] == 1


def test_the_cli_names_the_limit_in_one_line(cli, install) -> None:
    """`greeter --driver leak --isolation process --worker-memory 128`: one line naming the limit, exit 1."""
    install(LEAK)
    result = cli("--driver", "leak", "--isolation", "process", "--worker-memory", "128")
    assert result.returncode == 1
    assert "exceeded --worker-memory 128 MiB" in one_line(
        "\n".join(line for line in result.stderr.splitlines() if line.startswith("greeter: error:"))
    )


@pytest.mark.parametrize("flag", [["--worker-memory", "64"], ["--worker-env", "HOME"]])
def test_worker_options_without_isolation_are_a_usage_error(cli, install, flag: list[str]) -> None:
    """A worker option while the plugin runs in process would silently do nothing: exit 2 instead."""
    install(ALPHA)
    result = cli("--driver", "alpha", *flag)
    assert result.returncode == 2
    assert "applies to the worker of --isolation process only" in one_line(result.stderr)


# -- supervision: the circuit breaker -----------------------------------------------------------------------


def test_after_repeated_crashes_the_circuit_opens_and_no_worker_is_started(isolated) -> None:
    """N crashes within the window: calls fail at once with "circuit open", without starting a worker."""
    greeter = isolated("exit", supervision=Supervision(backoff_base=0.0, circuit_crashes=3))
    for _ in range(3):
        with pytest.raises(WorkerCrashedError):
            greeter.greet("x")
    restarts = greeter.status()["restarts"]
    with pytest.raises(CircuitOpenError) as caught:
        greeter.greet("x")
    assert "circuit open for plugin 'exit' (greeter-exit 1.0) after 3 crashes in 60 s" in str(caught.value)
    status = greeter.status()
    assert (status["state"], status["circuit"], status["restarts"]) == ("circuit-open", "open", restarts)


def test_when_the_window_has_passed_one_worker_is_tried_and_one_crash_reopens_the_circuit(isolated) -> None:
    """After the window the circuit is half-open: one fresh worker; it crashes, and the circuit is open again."""
    greeter = isolated("exit", supervision=Supervision(backoff_base=0.0, circuit_crashes=2, circuit_window=3.0))
    for _ in range(2):
        with pytest.raises(WorkerCrashedError):
            greeter.greet("x")
    assert greeter.status()["circuit"] == "open"
    wait_for(lambda: greeter.status()["circuit"] != "open", what="the circuit's window to pass")
    with pytest.raises(WorkerCrashedError) as caught:
        greeter.greet("x")  # the trial worker, which crashes in turn
    assert "worker exited with code 3" in str(caught.value)
    assert greeter.status()["circuit"] == "open"


# -- supervision: greeter check isolates by default -------------------------------------------------------------


def test_check_is_not_silenced_by_a_plugin_that_exits(cli, install) -> None:
    """`greeter check` runs each plugin in a worker by default: os._exit fails that plugin's row only."""
    install(ALPHA, OS_EXIT)
    result = cli("check", "alpha", "exit")
    rows = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert rows == {"alpha": "ok", "exit": "failed"}
    assert "crashed its worker: worker exited with code 3" in result.stdout
    assert result.returncode == 1


def test_check_in_process_is_still_available(cli, install) -> None:
    """`--isolation none` checks in this process, as before."""
    install(ALPHA)
    result = cli("check", "alpha", "--isolation", "none", "--json")
    assert result.returncode == 0 and '"ok": true' in result.stdout


def test_check_plugins_isolates_by_default_in_the_api(plugins) -> None:
    """The Python API's check_plugins() reports a plugin that exits instead of ending the caller."""
    from greeter_core.checkup import check_plugins

    [alpha, exit_] = check_plugins(["alpha", "exit"])
    assert alpha.ok and not exit_.ok and "worker exited with code 3" in exit_.detail


def test_a_plugin_killing_its_worker_during_check_is_reported_with_its_own_error(plugins) -> None:
    """The report names the plugin and its distribution for the crash, as any other failure."""
    from greeter_core.checkup import check_plugins

    [result] = check_plugins(["exit"])
    assert (result.name, result.distribution, result.exit_code) == ("exit", "greeter-exit", 1)
    assert result.detail.startswith("plugin 'exit' (greeter-exit 1.0) crashed its worker")
