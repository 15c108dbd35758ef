"""Fixture plugins that misbehave in every way a worker must survive, and process-table checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

from plugin_factory import PluginSpec, greeter_code


def greet_body(body: str, prelude: str = "") -> str:
    """Source of a Greeter plugin whose greet() runs *body*."""
    indented = "\n".join("        " + line for line in body.splitlines())
    return f"{prelude}\nfrom greeter_core import Greeter\n\nclass Plugin(Greeter):\n    def greet(self, name):\n{indented}\n"


GOOD = PluginSpec("good", code=greeter_code("Hello"))
EXIT = PluginSpec("exit", code=greet_body("os._exit(3)", "import os"))
SEGFAULT = PluginSpec("segfault", code=greet_body("ctypes.string_at(0)", "import ctypes"))
HANG = PluginSpec("hang", code=greet_body("time.sleep(3600)", "import time"))
PANIC = PluginSpec("panic", code=greet_body("raise RuntimeError(\"I'm gone.\")"))
SYS_EXIT = PluginSpec("sysexit", code=greet_body("sys.exit(1)", "import sys"))
IMPORT_FAILS = PluginSpec("importfails", code="import no_such_module_anywhere")
NOISY = PluginSpec(
    "noisy",
    code=greet_body(
        'print("chatter on stdout", flush=True)\n'
        'print("chatter on stderr", file=sys.stderr, flush=True)\n'
        'os.write(1, b"raw bytes on fd 1\\n")\n'
        'self.context.logger.warning("about to greet %s", name)\n'
        'return "Hello " + name',
        'import os, sys\nprint("import-time chatter", flush=True)',
    ),
)
ECHO_CONFIG = PluginSpec(
    "echoconfig",
    code=greet_body('return f"{self.context.driver} {sorted(self.context.config.items())} {name} {os.getpid()}"', "import os"),
)

FAULTS = [EXIT, SEGFAULT, HANG, PANIC, SYS_EXIT, IMPORT_FAILS, NOISY, ECHO_CONFIG, GOOD]


def alive(pid: int) -> bool:
    """True while *pid* is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of *pid*, from the process table."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll *condition* until it is true or *timeout* passes (generous: the machines are noisy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
