"""The one-shot path imports only what it needs: guarded by module lists, not by timings.

tox runs this file on every interpreter (py311, py312, py313); the lists
below hold on each of them.
"""

from __future__ import annotations

import json
import subprocess
import sys

from plugins import PluginSpec

DUMP = "import sys, json; print(json.dumps(sorted(sys.modules)))"

# The baseline of the start-up figure in BENCHMARKS.md: the bare stevedore
# script a pip user would write, with no command-line parsing at all.
BARE_STEVEDORE = (
    """
from stevedore import DriverManager
from greeter_core.api import HostContext
context = HostContext.create("klingon")
mgr = DriverManager("greeter.plugins", "klingon", invoke_on_load=True, invoke_kwds={"context": context})
print(mgr.extensions[0].obj.greet("Universe"))
"""
    + DUMP
)

GREETER_ONE_SHOT = (
    """
import sys
from greeter_core.cli import main
assert main(["--driver", "klingon"]) == 0
"""
    + DUMP
)

#: Exactly what `greeter --driver NAME` imports beyond the bare script, on every interpreter, and why.
ONE_SHOT_EXTRA = {
    "greeter_core.cli": "the command itself (reads `--driver NAME [--name WHO]` without argparse)",
    "greeter_core.options": "the command line made into LoadOptions (argparse only when a parser is built)",
    "greeter_core.settings": "the table of every option: the one-shot's defaults are read from it",
    "greeter_core.drive": "load(): the one place that chooses in process or a worker",
    "greeter_core.loading": "stevedore's DriverManager, wrapped: every failure names the plugin",
    "greeter_core.contract": "the Greeter contract, checked on the object stevedore built",
    "greeter_core.printable": "a plugin's text made one printable line",
    "greeter_core.loaded": "LoadedPlugin, the surface the CLI holds",
    "greeter_core.record": "PluginInfo, the record a loaded plugin and every error carry",
    "greeter_core.errors": "GreeterError and its subclasses: one line and an exit code per failure",
    "greeter_core.guard": "the user's Ctrl-C told from a plugin's, plugin output kept off stdout",
    "signal": "guard's SIGINT handler (the only standard-library module greeter adds)",
    "gc": "built into the interpreter: the collector paused for the one-shot (no file is read)",
}


def modules_after(code: str, env: dict[str, str], cwd) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_greeter_core_imports_nothing_else(greeter_env, tmp_path) -> None:
    """`import greeter_core` loads no stevedore, no importlib.metadata, not even typing."""
    baseline = modules_after(DUMP, greeter_env, tmp_path)
    extra = modules_after("import greeter_core\n" + DUMP, greeter_env, tmp_path) - baseline
    assert extra == {"greeter_core"}


def test_one_shot_greeting_imports_exactly_greeters_own_modules_beyond_bare_stevedore(
    install, greeter_env, tmp_path
) -> None:
    """`greeter --driver X` adds greeter's eleven modules, signal and gc to the bare script: no argparse, no more."""
    spec = PluginSpec(
        "klingon",
        code="class Plugin:\n    def __init__(self, context): pass\n    def greet(self, name): return 'Qapla ' + name",
    )
    install(spec)
    bare = modules_after(BARE_STEVEDORE, greeter_env, tmp_path)
    greeter = modules_after(GREETER_ONE_SHOT, greeter_env, tmp_path)
    assert "argparse" not in greeter
    assert greeter - bare == set(ONE_SHOT_EXTRA), sorted(greeter - bare)
