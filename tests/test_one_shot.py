"""`greeter --driver NAME [--name WHO]` is read without argparse; it must mean exactly what argparse reads.

The one-shot greeting's start-up time is a benchmark goal, and argparse (with
gettext and locale) is a few milliseconds of it, so ``cli._one_shot`` reads
the common command line itself. Anything else goes to argparse.
"""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from basics import one_line
from plugins import PluginSpec

from greeter_core import cli

#: Command lines the fast path reads; argparse must read them the same way.
READ = [
    ["--driver", "klingon"],
    ["--driver=klingon"],
    ["--driver", "klingon", "--name", "Bob"],
    ["--name", "Bob", "--driver", "klingon"],
    ["--name=Jean Luc", "--driver=klingon"],
    ["--driver", "klingon", "--name", "a=b"],
    ["--driver", "klingon", "--name", "宇宙"],
    ["--driver", "list"],
]

#: Command lines it leaves to argparse: other options, abbreviations, repeats, help, mistakes.
LEFT = [
    [],
    ["--driver"],
    ["--driver", ""],
    ["--driver", "-x"],
    ["--driver", "klingon", "--name"],
    ["--driver", "klingon", "--name", "-x"],
    ["--driver", "klingon", "--name=-x"],
    ["--dri", "klingon"],
    ["--driver", "klingon", "--driver", "vulcan"],
    ["--driver", "klingon", "-v"],
    ["--driver", "klingon", "--debug"],
    ["--driver", "klingon", "--isolation", "process"],
    ["--driver", "klingon", "extra"],
    ["--driver", "klingon", "--"],
    ["--name", "Bob"],
    ["--help"],
    ["--version"],
    ["list"],
]


@pytest.mark.parametrize("argv", READ, ids=" ".join)
def test_the_fast_path_reads_what_argparse_reads(argv: list[str]) -> None:
    """Every attribute the greeting uses has argparse's value, defaults included."""
    fast = cli._one_shot(argv)
    assert fast is not None
    assert vars(fast) == vars(cli._greet_parser("greeter").parse_args(argv))


@pytest.mark.parametrize("argv", LEFT, ids=lambda argv: " ".join(argv) or "(none)")
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    """Only the plain spellings are read without argparse; the rest gets argparse's messages and exit codes."""
    assert cli._one_shot(argv) is None


@pytest.mark.parametrize(
    ("fast", "argparsed", "returncode", "shown"),
    [
        (["--driver", "klingon", "--name", "Bob"], ["--dri", "klingon", "--na", "Bob"], 0, "Hi Bob"),
        (["--driver=vulcan"], ["--driv", "vulcan"], 2, "greeter: error: no plugin named 'vulcan' is installed"),
        (
            ["--driver", "broken"],
            ["--driver", "broken", "--isolation", "none"],
            1,
            "greeter: error: plugin 'broken' (greeter-broken 1.0) failed to load: ModuleNotFoundError",
        ),
    ],
    ids=["greeting", "no-such-driver", "broken-plugin"],
)
def test_both_paths_greet_and_fail_alike(
    cli, install, fast: list[str], argparsed: list[str], returncode: int, shown: str
) -> None:
    """The same greeting, the same one-line error and the same exit code, read either way."""
    install(PluginSpec("klingon"), PluginSpec("broken", code="import gt_no_such_module_anywhere\n"))
    one, other = cli(*fast), cli(*argparsed)
    assert (one.returncode, one.stdout, one.stderr) == (other.returncode, other.stdout, other.stderr)
    assert one.returncode == returncode, one.stderr
    assert shown in (one.stdout if returncode == 0 else one_line(one.stderr))


def test_the_one_shot_of_this_process_pauses_the_collector_and_freezes_what_it_built(
    greeter_env, install, tmp_path
) -> None:
    """`greeter --driver X` as the process's own command: start-up's objects are frozen, the collector back on."""
    install(PluginSpec("klingon"))
    code = (
        "import gc, sys\n"
        "from greeter_core.cli import main\n"
        "sys.argv = ['greeter', '--driver', 'klingon']\n"
        "assert main() == 0\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=greeter_env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["Hi Universe", "True True"]


def test_a_program_calling_main_keeps_its_collector_as_it_was(on_path, install) -> None:
    """main(argv) in someone else's program leaves the collector alone: nothing frozen, still enabled."""
    install(PluginSpec("klingon"))
    frozen = gc.get_freeze_count()
    assert cli.main(["--driver", "klingon"]) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_every_option_of_the_greeting_is_a_row_of_the_settings_table() -> None:
    """argparse's greeting options and the fast path's defaults come from one table: neither has one of its own."""
    from greeter_core import settings

    parser = cli._greet_parser("greeter")
    options = {action.dest for action in parser._actions if action.option_strings} - {"help", "version"}
    assert options == set(settings.defaults(settings.GREET))
