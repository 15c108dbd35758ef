"""The `greeter` command, run as a real subprocess: greetings, listings, checks and every error path."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from basics import one_line
from plugins import PluginSpec, greeter_code

LOGGING = """
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        self.context.logger.warning("greeting %s", name)
        return "Hi " + name + " " + self.context.config.get("punctuation", "")
"""


@pytest.mark.shipped
@pytest.mark.parametrize(
    ("driver", "greeting"),
    [
        ("english", "Hello Universe"),
        ("chinese", "你好宇宙"),
        ("german", "Hallo Universum"),
        ("spanish", "Hola Universo"),
    ],
)
def test_shipped_plugins_greet_the_universe(cli, driver: str, greeting: str) -> None:
    """`greeter --driver X` prints the shipped plugin's greeting and exits 0, as in the Go original."""
    result = cli("--driver", driver)
    assert (result.returncode, result.stdout, result.stderr) == (0, greeting + "\n", "")


@pytest.mark.shipped
@pytest.mark.parametrize(
    ("driver", "name", "greeting"),
    [("english", "Zoë", "Hello Zoë"), ("chinese", "小明", "你好，小明"), ("german", "Jürgen", "Hallo Jürgen")],
)
def test_shipped_plugins_greet_a_unicode_name(cli, driver: str, name: str, greeting: str) -> None:
    """--name changes the greetee, Unicode included."""
    assert cli("--driver", driver, "--name", name).stdout == greeting + "\n"


def test_greets_with_a_fixture_plugin_and_a_name(cli, install) -> None:
    """Any installed plugin is reachable by its entry-point name."""
    install(PluginSpec("klingon", code=greeter_code("nuqneH")))
    result = cli("--driver", "klingon", "--name", "Worf")
    assert (result.returncode, result.stdout) == (0, "nuqneH Worf\n")


def test_options_reach_the_plugin_and_its_logs_reach_stderr(cli, install) -> None:
    """--option key=value lands in context.config; the plugin's log record is a line on stderr, tagged
    with its driver, and never on stdout."""
    install(PluginSpec("klingon", code=LOGGING))
    result = cli("--driver", "klingon", "--name", "Worf", "--option", "punctuation=!")
    assert result.stdout == "Hi Worf !\n"
    assert result.stderr.splitlines() == ["WARNING greeter.plugins.klingon: greeting Worf"]


def test_python_dash_m_is_the_same_command(cli) -> None:
    """`python -m greeter_core --help` is the greeter command's help."""
    result = cli("--help")
    assert result.returncode == 0
    assert "--driver NAME" in result.stdout


def test_help_lists_the_commands(cli) -> None:
    """The top-level help names every subcommand."""
    out = cli("--help").stdout
    for command in ("list", "check", "run", "lock", "new-plugin"):
        assert f"greeter {command}" in out


def test_the_usage_line_shows_the_subcommands(cli) -> None:
    """`greeter --help` starts with both forms: greeting with --driver, and the subcommands."""
    lines = cli("--help").stdout.splitlines()
    assert lines[:2] == [
        "usage: greeter --driver NAME [--name WHO] [options]",
        "       greeter {list,check,run,install,uninstall,lock,new-plugin,completion}",
    ]


def test_bare_greeter_shows_the_usage_and_how_to_greet_with_what_is_installed(cli, install) -> None:
    """`greeter` alone: the usage, then one line naming an installed plugin to greet with; exit 2."""
    install(PluginSpec("klingon"), PluginSpec("vulcan"))
    result = cli()
    assert (result.returncode, result.stdout) == (2, "")
    usage, command, error = result.stderr.splitlines()
    assert usage.startswith("usage: greeter --driver NAME")
    assert "{list,check,run,install,uninstall,lock,new-plugin,completion}" in command
    installed = sorted(plugin["name"] for plugin in json.loads(cli("list", "--json").stdout))
    assert {"klingon", "vulcan"} <= set(installed)
    assert error == (
        f"greeter: error: name the plugin to greet with, e.g. greeter --driver {installed[0]} "
        f"(installed: {', '.join(installed)}); greeter --help shows every command and option"
    )


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("lst", "did you mean 'list'?"),
        ("chek", "did you mean 'check'?"),
        ("rnu", "did you mean 'run'?"),
        ("klingon", "to greet with the plugin 'klingon': greeter --driver klingon"),
        (
            "frobnicate",
            "the commands are list, check, run, install, uninstall, lock, new-plugin, completion; "
            "to greet: greeter --driver NAME (see greeter --help)",
        ),
    ],
)
def test_an_unknown_command_is_named_with_what_was_meant(cli, install, word: str, hint: str) -> None:
    """`greeter lst` is not "required: --driver": it names the unknown command and the likely one; exit 2."""
    install(PluginSpec("klingon"))
    result = cli(word)
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == f"greeter: error: unknown command {word!r}; {hint}"


@pytest.mark.parametrize("command", [[], ["list"], ["check"], ["run"], ["new-plugin"]], ids=str)
def test_every_help_fits_an_80_column_terminal(cli, greeter_env: dict[str, str], command: list[str]) -> None:
    """No --help line is wider than 79 columns: descriptions and the route table are wrapped."""
    greeter_env["COLUMNS"] = "80"
    out = cli(*command, "--help").stdout
    assert max(map(len, out.splitlines())) <= 79, [line for line in out.splitlines() if len(line) > 79]


def test_unknown_driver_is_one_line_and_exit_2(cli, install) -> None:
    """A driver name that is not installed is a user mistake: exit 2, installed names, install hint."""
    install(PluginSpec("klingon"))
    result = cli("--driver", "vulcan")
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert "klingon" in line and re.search(r"pip install --no-index --find-links \S+ greeter-vulcan\b", line)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--drvier", "klingon"], "greeter: error: unknown option --drvier; did you mean --driver?"),
        (
            ["--driver", "klingon", "--isoltion", "process"],
            "greeter: error: unknown option --isoltion; did you mean --isolation?",
        ),
        (["list", "--jsn"], "greeter list: error: unknown option --jsn; did you mean --json?"),
        (["check", "--verfy"], "greeter check: error: unknown option --verfy; did you mean --verify?"),
        (
            ["run", "--driver", "klingon", "--intreval=1"],
            "greeter run: error: unknown option --intreval; did you mean --interval?",
        ),
        (["--driver", "klingon", "--zzzzzz"], "greeter: error: unknown option --zzzzzz (see greeter --help)"),
    ],
    ids=["required-one-mistyped", "greet", "list", "check", "run-with-equals", "nothing-close"],
)
def test_a_mistyped_option_is_named_with_the_option_meant(cli, install, args: list[str], line: str) -> None:
    """A mistyped option is named first (not "--driver is required"), with the closest option: one line, exit 2."""
    install(PluginSpec("klingon"))
    result = cli(*args)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(line)


@pytest.mark.parametrize(
    "args",
    [
        ["--driver", "klingon", "--call-timeout", "3"],
        ["--driver", "klingon", "--isolation", "none", "--worker-cpu", "1"],
        ["check", "klingon", "--isolation", "none", "--call-timeout", "3"],
        ["run", "--driver", "klingon", "--count", "1", "--worker-files", "64"],
    ],
    ids=["call-timeout", "worker-cpu", "check-in-process", "run"],
)
def test_a_worker_only_option_without_a_worker_is_one_line_naming_it(cli, install, args: list[str]) -> None:
    """Every option the settings table marks worker-only, given without --isolation process: one line, exit 2."""
    install(PluginSpec("klingon"))
    result = cli(*args)
    flag = next(word for word in args if word.startswith(("--call", "--worker")))
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == (
        f"greeter: error: {flag} applies to the worker of --isolation process only; "
        "add --isolation process, or leave it out"
    )


def test_a_worker_only_option_with_a_worker_greets(cli, install) -> None:
    """The same option with --isolation process is taken, and greets."""
    install(PluginSpec("klingon"))
    result = cli("--driver", "klingon", "--isolation", "process", "--call-timeout", "3")
    assert (result.returncode, result.stderr) == (0, "")


#: Commands, and modules whose import finishing (as ``python -X importtime`` reports it) is the moment
#: Ctrl-C comes: from greeter's first module on, while the command is still starting.
EARLY = [
    (["--driver", "klingon"], "greeter_core.api"),
    (["--driver", "klingon"], "greeter_core.options"),
    (["--driver", "klingon"], "greeter_core.cli"),
    (["--driver", "klingon"], "stevedore"),
    (["check", "klingon"], "argparse"),
    (["check", "klingon"], "greeter_core.checkup"),
    (["list"], "greeter_core.catalog"),
    (["run", "--driver", "klingon"], "greeter_core.control"),
    (["run", "--driver", "klingon"], "greeter_core.loop"),
]


@pytest.mark.parametrize(("args", "module"), EARLY, ids=lambda value: value if isinstance(value, str) else value[0])
def test_ctrl_c_while_starting_is_one_line_and_exit_130(install, greeter_env, tmp_path, args, module: str) -> None:
    """SIGINT at any moment of start-up: `greeter: interrupted` and 130 (or 0 if it finished), never a traceback."""
    install(PluginSpec("klingon"))
    process = subprocess.Popen(
        [sys.executable, "-m", "greeter_core", *args],
        env={**greeter_env, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        while line and line.rpartition("|")[2].strip() != module:
            line = process.stderr.readline()
        assert line, f"{module} was never imported"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    said = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert "Traceback" not in err, err
    # 130, or killed by the SIGINT itself once the line is out (CPython exits so after an interrupt it saw
    # late): a shell reports both as 130.
    assert process.returncode in (0, 130, -signal.SIGINT), (process.returncode, said)
    if process.returncode != 0:
        assert said == ["greeter: interrupted"]


INTERRUPTED_OPEN = """
import builtins, os, sys
from greeter_core import guard

def interrupted(*args, **kwargs):
    stream = builtins.open(*args, **kwargs)
    stream.close()  # what io.open() does with what it had built when Ctrl-C cuts it short
    raise KeyboardInterrupt

guard.open = interrupted
before = len(os.listdir("/proc/self/fd"))
try:
    with guard.plugin_output_to_stderr():
        pass
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
os.write(1, b"stdout intact, %d descriptors leaked" % (len(os.listdir("/proc/self/fd")) - before))
"""


def test_ctrl_c_while_the_greetings_stream_is_opened_is_an_interrupt_not_an_os_error(tmp_path) -> None:
    """Ctrl-C inside the open() of the stream for greetings ends as the interrupt: no EBADF, stdout kept, no fd left."""
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_OPEN], capture_output=True, text=True, cwd=tmp_path)
    said = (result.returncode, result.stdout, result.stderr)
    assert said == (0, "stdout intact, 0 descriptors leaked", "interrupted\n")


@pytest.mark.parametrize(
    "args",
    [
        ["--driver", "klingon", "--option", "novalue"],
        ["--driver", "klingon", "--option", "=value"],
        ["--driver", "klingon", "--isolation", "thread"],
        ["--driver", "klingon", "--call-timeout", "0"],
        ["--driver", "klingon", "--call-timeout", "soon"],
        ["--drvier", "klingon"],
    ],
    ids=["option-no-equals", "option-no-key", "bad-isolation", "zero-timeout", "bad-timeout", "typo"],
)
def test_bad_arguments_are_one_line_and_exit_2(cli, install, args: list[str]) -> None:
    """Every malformed command line ends in one line on stderr and exit 2."""
    install(PluginSpec("klingon"))
    result = cli(*args)
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert line.startswith("greeter: error:")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import no_such_module_anywhere", "failed to load: ModuleNotFoundError"),
        ("class Plugin:\n    def __init__(self, context): pass", "breaks the Greeter contract: Plugin has no greet()"),
        (
            greeter_code("Hi").replace('return "Hi " + (name or "Universe")', "return 42"),
            "greet() returned int, not str",
        ),
        (
            greeter_code("Hi").replace('return "Hi " + (name or "Universe")', 'raise RuntimeError("I\'m gone.")'),
            "failed: RuntimeError: I'm gone.",
        ),
        (
            greeter_code("Hi").replace('return "Hi " + (name or "Universe")', "import sys; sys.exit(1)"),
            "failed: SystemExit: 1",
        ),
    ],
    ids=["import-error", "no-greet", "returns-int", "greet-raises", "greet-sys-exit"],
)
def test_a_broken_plugin_is_one_line_and_exit_1(cli, install, code: str, expected: str) -> None:
    """A broken plugin is the plugin's fault: exit 1, one line naming it and its distribution."""
    install(PluginSpec("klingon", code=code))
    result = cli("--driver", "klingon")
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert expected in line
    assert "plugin 'klingon' (greeter-klingon 1.0)" in line


def test_debug_shows_the_traceback(cli, install) -> None:
    """--debug is for finding out why: the full traceback, including the plugin's own error."""
    install(PluginSpec("klingon", code="import no_such_module_anywhere"))
    result = cli("--driver", "klingon", "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ModuleNotFoundError" in result.stderr


def test_list_shows_name_distribution_version_target(cli, install) -> None:
    """`greeter list` is a table of installed plugins."""
    spec = PluginSpec("klingon", version="2.5")
    install(spec)
    result = cli("list")
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("klingon"))
    assert row.split() == ["klingon", "greeter-klingon", "2.5", spec.target]


def test_list_json_is_a_machine_readable_array(cli, install) -> None:
    """`greeter list --json` gives scripts the same records as the Python API."""
    spec = PluginSpec("klingon", version="2.5")
    install(spec)
    records = json.loads(cli("list", "--json").stdout)
    klingon = {"name": "klingon", "distribution": "greeter-klingon", "version": "2.5", "target": spec.target}
    assert {**klingon, "environment": "", "where": "host", "disabled": False, "disabled_by": None} in records


def test_list_does_not_import_plugins(cli, install) -> None:
    """Listing must not run plugin code: a plugin that fails on import is still listed, quietly."""
    install(PluginSpec("klingon", code="import sys\nsys.stderr.write('IMPORTED')\nraise SystemExit(9)"))
    result = cli("list")
    assert (result.returncode, result.stderr) == (0, "")
    assert "klingon" in result.stdout


def test_check_reports_each_plugin_and_fails_if_any_fails(cli, install) -> None:
    """`greeter check` loads every plugin: ok lines for good ones, a failed line for a broken one, exit 1."""
    install(PluginSpec("klingon"), PluginSpec("broken", code="import no_such_module_anywhere"))
    result = cli("check", "klingon", "broken")
    assert result.returncode == 1
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert rows["klingon"].startswith("ok") and "Hi Universe" in rows["klingon"]
    assert rows["broken"].startswith("failed") and "ModuleNotFoundError" in rows["broken"]


def test_check_passes_when_all_named_plugins_work(cli, install) -> None:
    """Exit 0 means every checked plugin loaded, validated and greeted."""
    install(PluginSpec("klingon"))
    result = cli("check", "klingon", "--json")
    assert result.returncode == 0
    [record] = json.loads(result.stdout)
    assert record["ok"] is True and record["detail"] == "Hi Universe"


def test_check_of_an_unknown_name_exits_2(cli, install) -> None:
    """Asking to check a plugin that is not installed is the user's mistake."""
    install(PluginSpec("klingon"))
    result = cli("check", "vulcan")
    assert result.returncode == 2
    assert "no plugin named 'vulcan'" in result.stdout


def test_duplicate_driver_names_both_distributions(cli, install) -> None:
    """Two distributions registering one name: exit 1, both named, nothing greeted."""
    install(PluginSpec("klingon"), PluginSpec("klingon", distribution="greeter-klingon-fork"))
    result = cli("--driver", "klingon")
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert "greeter-klingon 1.0" in line and "greeter-klingon-fork 1.0" in line
    assert result.stdout == ""


def test_a_plugin_printing_during_check_does_not_corrupt_the_json(cli, install) -> None:
    """Plugin prints go to stderr, so `greeter check --json` stays parseable."""
    chatty = (
        greeter_code("Hi")
        .replace("class Plugin", 'print("import chatter")\n\nclass Plugin')
        .replace('return "Hi "', 'print("greet chatter"); return "Hi "')
    )
    install(PluginSpec("klingon", code=chatty))
    result = cli("check", "klingon", "--json")
    assert json.loads(result.stdout)[0]["ok"] is True
    assert "import chatter" in result.stderr and "greet chatter" in result.stderr


def test_a_plugin_printing_while_greeting_leaves_only_the_greeting_on_stdout(cli, install) -> None:
    """stdout belongs to the greeting, in process too."""
    install(PluginSpec("klingon", code=greeter_code("Hi").replace('return "Hi "', 'print("noise"); return "Hi "')))
    result = cli("--driver", "klingon")
    assert (result.stdout, result.stderr) == ("Hi Universe\n", "noise\n")


def test_check_shows_each_plugins_language(cli, install) -> None:
    """The language a plugin declares is shown once it is loaded."""
    install(PluginSpec("klingon"))
    row = cli("check", "klingon").stdout.splitlines()[1]
    assert row.split()[:4] == ["ok", "klingon", "greeter-klingon", "Test"]


def test_a_plugin_class_without_a_context_parameter_gets_a_hint(cli, install) -> None:
    """The most common first-plugin mistake is named, with the fix."""
    install(PluginSpec("klingon", code="class Plugin:\n    def greet(self, name): return name"))
    result = cli("--driver", "klingon")
    assert result.returncode == 1
    assert "its __init__ must accept context" in result.stderr
