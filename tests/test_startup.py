"""The one-shot path imports only what it needs: guarded by module lists, not by timings."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import PluginSpec

DUMP = "import sys, json; print(json.dumps(sorted(sys.modules)))"

# A bare DriverManager script that parses its command line with argparse, as
# any CLI would: greeter may add only its own modules on top of this.
BARE_STEVEDORE = (
    """
import argparse, sys
from stevedore import DriverManager
parser = argparse.ArgumentParser()
parser.add_argument("--driver", required=True)
args = parser.parse_args(["--driver", "klingon"])
mgr = DriverManager("greeter.plugins", args.driver, invoke_on_load=True, invoke_kwds={"context": None})
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

# What the greeter command may add on top of it.
ALLOWED_EXTRA = {
    "__future__",
    "greeter_core",
    "greeter_core.api",
    "greeter_core.cli",
    "greeter_core.contract",
    "greeter_core.drive",
    "greeter_core.errors",
    "greeter_core.guard",
    "greeter_core.loaded",
    "greeter_core.loading",
    "greeter_core.printable",
    "greeter_core.record",
    "signal",  # the one-shot tells the user's Ctrl-C from a plugin's KeyboardInterrupt
}


def modules_after(code: str, env: dict[str, str], cwd) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_greeter_core_imports_nothing_else(greeter_env, tmp_path) -> None:
    """`import greeter_core` loads no stevedore, no importlib.metadata, not even typing."""
    baseline = modules_after(DUMP, greeter_env, tmp_path)
    extra = modules_after("import greeter_core\n" + DUMP, greeter_env, tmp_path) - baseline
    assert extra == {"greeter_core"}


def test_one_shot_greeting_imports_only_greeter_beyond_bare_stevedore_and_argparse(
    install, greeter_env, tmp_path
) -> None:
    """No HTTP server, no runtime, no worker machinery, no dataclasses on `greeter --driver X`."""
    spec = PluginSpec(
        "klingon",
        code="class Plugin:\n    def __init__(self, context): pass\n    def greet(self, name): return 'Qapla ' + name",
    )
    install(spec)
    bare = modules_after(BARE_STEVEDORE, greeter_env, tmp_path)
    greeter = modules_after(GREETER_ONE_SHOT, greeter_env, tmp_path)
    assert greeter - bare <= ALLOWED_EXTRA, sorted(greeter - bare - ALLOWED_EXTRA)
