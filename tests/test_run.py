"""`greeter run` as a real process: the loop, contained plugin failures, signals, SIGHUP swaps, user mistakes."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest
from basics import one_line
from plugins import ALPHA, BETA, BROKEN_IMPORT, HANG, NOT_A_STRING, PANIC, SYS_EXIT, PluginSpec, greet_body
from running import SUMMARY, RunningGreeter

LOGGING = PluginSpec(
    "klingon",
    code="""
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        self.context.logger.warning("greeting %s", name)
        return "Hi " + name + self.context.config.get("punctuation", "")
""",
)

PRINTING = PluginSpec(
    "chatty",
    code="""
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        print("chatty was here")
        return "Hi " + name
""",
)


@pytest.mark.parametrize("interval", ["0", "0.01"])
def test_count_greets_that_many_times_then_exits_0(cli, install, interval: str) -> None:
    """--count N prints exactly N greetings, one line each, at any interval (0 included), and exits 0."""
    install(ALPHA)
    result = cli("run", "--driver", "alpha", "--count", "50", "--interval", interval)
    assert (result.returncode, result.stdout) == (0, "Alpha Universe\n" * 50)


def test_the_summary_says_one_greeting_in_the_singular(cli, install) -> None:
    """One greeting and one error are "1 greeting, 1 error", not "1 greetings, 1 errors"."""
    install(PANIC)
    result = cli("run", "--driver", "panic", "--count", "1", "--interval", "0")
    assert result.stderr.splitlines()[-1] == (
        "greeter run: stopped after 0 greetings, 1 error, 0 swaps, 0 reloads; last driver: panic"
    )
    install(ALPHA)
    result = cli("run", "--driver", "alpha", "--count", "1", "--interval", "0")
    assert result.stderr.splitlines()[-1] == (
        "greeter run: stopped after 1 greeting, 0 errors, 0 swaps, 0 reloads; last driver: alpha"
    )


def test_the_summary_counts_greetings_errors_and_swaps(cli, install) -> None:
    """On stopping, stderr gets one summary line with the greetings, errors, swaps and reloads."""
    install(ALPHA)
    result = cli("run", "--driver", "alpha", "--count", "3", "--interval", "0")
    assert SUMMARY.findall(result.stderr) == [("3", "0", "0", "0")]


def test_name_and_options_reach_the_plugin_and_its_logs_reach_stderr(cli, install) -> None:
    """--name is the greetee, --option lands in context.config, plugin log lines are tagged with the driver."""
    install(LOGGING)
    result = cli("run", "--driver", "klingon", "--name", "Worf", "--option", "punctuation=!", "--count", "1")
    assert result.stdout == "Hi Worf!\n"
    assert "WARNING greeter.plugins.klingon: greeting Worf" in result.stderr


def test_what_a_plugin_prints_goes_to_stderr_not_among_the_greetings(cli, install) -> None:
    """stdout carries the greetings only: a plugin's print() lands on stderr."""
    install(PRINTING)
    result = cli("run", "--driver", "chatty", "--count", "2", "--interval", "0")
    assert result.stdout == "Hi Universe\n" * 2
    assert result.stderr.count("chatty was here") == 2


def test_the_driver_file_names_the_first_driver(cli, install, tmp_path: Path) -> None:
    """Without --driver, the driver named in --driver-file greets."""
    install(ALPHA)
    (tmp_path / "driver").write_text("alpha\n", encoding="utf-8")
    assert cli("run", "--driver-file", "driver", "--count", "1").stdout == "Alpha Universe\n"


@pytest.mark.parametrize(
    ("spec", "logged"),
    [
        (PANIC, "ERROR greeter_core.runtime: plugin 'panic' (greeter-panic 1.0) failed: RuntimeError: I'm gone."),
        (SYS_EXIT, "ERROR greeter_core.runtime: plugin 'sysexit' (greeter-sysexit 1.0) failed: SystemExit: 1"),
        (
            NOT_A_STRING,
            "ERROR greeter_core.runtime: plugin 'number' (greeter-number 1.0) breaks the Greeter contract: "
            "greet() returned int, not str; report it to the authors of greeter-number",
        ),
    ],
    ids=["raises", "sys.exit", "not-a-str"],
)
def test_a_failing_greeting_is_one_logged_line_and_the_loop_goes_on(
    cli, install, spec: PluginSpec, logged: str
) -> None:
    """Each failed greeting logs one line, counts as an error, and the next tick greets again; exit 0."""
    install(spec)
    result = cli("run", "--driver", spec.driver, "--count", "3", "--interval", "0")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr.splitlines()[:3] == [logged] * 3
    assert "Traceback" not in result.stderr
    assert [counts[:2] for counts in SUMMARY.findall(result.stderr)] == [("0", "3")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_loop_with_a_summary_and_exit_0(start, install, signum: int) -> None:
    """SIGINT (Ctrl-C) and SIGTERM stop the loop cleanly: exit 0, every printed greeting in the summary."""
    install(ALPHA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01")
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.stop(signum) == 0
    assert "Traceback" not in greeter.stderr.text
    assert greeter.summary()[0] == len(greeter.stdout.lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_cuts_a_slow_in_process_greeting_short(start, install, signum: int) -> None:
    """A signal during a greet() that would sleep for ten minutes still stops the loop at once, exit 0."""
    install(HANG)
    greeter: RunningGreeter = start("--driver", "hang")
    greeter.stderr.search("greeter.plugins.hang: sleeping")
    assert greeter.stop(signum) == 0
    assert greeter.summary()[:2] == (0, 0)


def test_sighup_switches_to_the_driver_in_the_driver_file(start, install, tmp_path: Path) -> None:
    """SIGHUP re-reads --driver-file and switches; once the new driver greets, the old one never does."""
    install(ALPHA, BETA)
    driver_file = tmp_path / "driver"
    driver_file.write_text("alpha", encoding="utf-8")
    greeter: RunningGreeter = start("--driver-file", str(driver_file), "--interval", "0.01")
    greeter.wait_greetings("Alpha Universe")
    driver_file.write_text("beta\n", encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.wait_greetings("Beta Universe", 3)
    assert greeter.stop() == 0
    lines = greeter.stdout.lines
    assert "Alpha Universe" not in lines[lines.index("Beta Universe") :]
    assert greeter.summary()[2] == 1


@pytest.mark.parametrize(
    ("content", "logged"),
    [
        ("french", "switch to 'french' refused: no plugin named 'french' is installed"),
        ("broken", "switch to 'broken' refused: plugin 'broken' (greeter-broken 1.0) failed to load"),
        ("", "SIGHUP: --driver-file '"),
    ],
    ids=["unknown", "broken", "empty"],
)
def test_sighup_to_a_driver_that_cannot_load_keeps_the_current_one(
    start, install, tmp_path: Path, content: str, logged: str
) -> None:
    """A SIGHUP switch that fails is logged and the current driver keeps greeting."""
    install(ALPHA, BROKEN_IMPORT)
    driver_file = tmp_path / "driver"
    driver_file.write_text("alpha", encoding="utf-8")
    greeter: RunningGreeter = start("--driver-file", str(driver_file), "--interval", "0.01")
    greeter.wait_greetings("Alpha Universe")
    driver_file.write_text(content, encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.stderr.search(re.escape(f"WARNING greeter_core.runtime: {logged}") + ".*; still greeting with 'alpha'$")
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.stop() == 0
    assert greeter.summary()[1:3] == (0, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "greeter run needs --driver NAME or --driver-file PATH"),
        (["--driver-file", "missing.txt"], "cannot read --driver-file 'missing.txt': No such file or directory"),
        (["--driver-file", "."], "cannot read --driver-file '.'"),
        (["--driver", "alpha", "--control", "nonsense"], "expected HOST:PORT"),
        (["--driver", "alpha", "--control", "127.0.0.1:65536"], "expected HOST:PORT"),
        (["--driver", "alpha", "--control", "::1:8080"], "IPv6 address in brackets"),
        (["--driver", "alpha", "--control", "0.0.0.0:0"], "refusing to serve the control endpoint on 0.0.0.0"),
        (["--driver", "alpha", "--control", "127.0.0.1:0", "--control-token", ""], "control token must be"),
    ],
    ids=["no-driver", "no-file", "directory", "no-port", "port-range", "bare-ipv6", "public-no-token", "empty-token"],
)
def test_a_user_mistake_is_one_line_and_exit_2(cli, install, args: list[str], message: str) -> None:
    """Bad --control, a non-loopback bind without token, an unreadable --driver-file: one line, exit 2."""
    install(ALPHA)
    result = cli("run", *args, "--count", "1")
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert result.stdout == ""


def test_a_control_port_in_use_is_one_line_and_exit_2(cli, install) -> None:
    """A port that cannot be bound is reported in one line, exit 2, before any greeting."""
    install(ALPHA)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("run", "--driver", "alpha", "--control", f"127.0.0.1:{port}", "--count", "1")
    assert result.returncode == 2
    assert f"cannot serve the control endpoint on 127.0.0.1:{port}" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("driver", "code", "message"),
    [
        ("french", 2, "no plugin named 'french' is installed (installed: alpha, broken"),
        ("broken", 1, "plugin 'broken' (greeter-broken 1.0) failed to load: ModuleNotFoundError"),
    ],
    ids=["unknown", "broken"],
)
def test_an_initial_driver_that_cannot_load_is_one_line(cli, install, driver: str, code: int, message: str) -> None:
    """The first driver failing to load stops `greeter run` with one line and the error's exit status."""
    install(ALPHA, BROKEN_IMPORT)
    result = cli("run", "--driver", driver, "--control", "127.0.0.1:0")
    assert result.returncode == code
    assert message in one_line(result.stderr)


#: Changes the working directory every time it greets, as a careless plugin might.
CHDIR = PluginSpec("chdir", code=greet_body('os.chdir("/")\nreturn "Hi " + name', "import os"))


def test_a_relative_driver_file_is_read_where_it_was_when_greeter_started(start, install, tmp_path: Path) -> None:
    """--driver-file is resolved at start: a plugin changing the working directory does not lose it."""
    install(ALPHA, CHDIR)
    (tmp_path / "driver").write_text("chdir", encoding="utf-8")
    greeter: RunningGreeter = start("--driver-file", "driver", "--interval", "0.01")
    greeter.wait_greetings("Hi Universe")
    (tmp_path / "driver").write_text("alpha", encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.wait_greetings("Alpha Universe")
    assert greeter.stop() == 0


def test_a_fifo_in_place_of_the_driver_file_is_refused_and_never_stalls_the_loop(
    start, install, tmp_path: Path
) -> None:
    """SIGHUP with a FIFO where --driver-file was logs one line and greeting goes on; SIGTERM then exits 0."""
    install(ALPHA)
    (tmp_path / "driver").write_text("alpha", encoding="utf-8")
    greeter: RunningGreeter = start("--driver-file", "driver", "--interval", "0.01")
    greeter.wait_greetings("Alpha Universe")
    (tmp_path / "driver").unlink()
    os.mkfifo(tmp_path / "driver")
    greeter.send(signal.SIGHUP)
    greeter.stderr.search(r"--driver-file '\S+/driver': it is not a regular file; still greeting with 'alpha'$")
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.stop() == 0


def test_a_fifo_naming_the_first_driver_is_a_user_mistake(cli, install, tmp_path: Path) -> None:
    """Without --driver, a FIFO as --driver-file is refused at once: one line, exit 2."""
    install(ALPHA)
    os.mkfifo(tmp_path / "fifo")
    result = cli("run", "--driver-file", "fifo", "--count", "1")
    assert result.returncode == 2
    assert "cannot read --driver-file 'fifo': it is not a regular file" in one_line(result.stderr)
