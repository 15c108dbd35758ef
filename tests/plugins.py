"""Fixture plugins: :class:`PluginSpec` says what one is (driver, code, metadata); :class:`PluginFactory`
writes its wheel once per session and unpacks it into a site directory as an installer would, ``RECORD``
included. Below them, the fixture plugins themselves, one per behaviour, each under its own driver name."""

from __future__ import annotations

import hashlib
import importlib
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheels import write_project, write_wheel


def forget_plugins() -> None:
    """Make this process see the installed plugins as they are now.

    stevedore keeps entry points per process and never refreshes them (that
    is what greeter's fresh-metadata fallback is for); tests that change
    sys.path start from a clean slate instead of relying on the fallback.
    """
    from stevedore import _cache
    from stevedore.extension import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()
    _cache._c._internal.clear()
    importlib.invalidate_caches()


def greet_body(body: str, prelude: str = "") -> str:
    """Source of a Greeter plugin whose ``greet(self, name)`` runs *body*."""
    indented = "\n".join("        " + line for line in body.splitlines())
    header = "from greeter_core import Greeter\n\nclass Plugin(Greeter):\n    def greet(self, name):"
    return f"{prelude}\n{header}\n{indented}\n"


def greeter_code(word: str) -> str:
    """Source of a well-behaved plugin whose greeting is ``f"{word} {name or 'Universe'}"``."""
    return greet_body(f'return "{word} " + (name or "Universe")') + '\nPlugin.language = "Test"\n'


@dataclass(frozen=True)
class PluginSpec:
    """What a fixture plugin distribution is: its driver name, code and metadata."""

    driver: str
    code: str = field(default=greeter_code("Hi"))
    version: str = "1.0"
    distribution: str = ""
    attr: str = "Plugin"
    extra_files: tuple[tuple[str, str], ...] = ()
    dependencies: tuple[str, ...] = ()
    module_name: str = ""
    """Fix the module name, e.g. for two versions of one plugin (default: unique per code)."""

    @property
    def dist(self) -> str:
        return self.distribution or f"greeter-{self.driver}"

    @property
    def module(self) -> str:
        # Unique per distribution and code, so two fixture plugins never share
        # a module name in one process.
        if self.module_name:
            return self.module_name
        digest = hashlib.sha256(f"{self.dist}{self.version}{self.code}".encode()).hexdigest()[:8]
        return f"gt_{re.sub(r'[^a-z0-9]', '_', self.dist.lower())}_{digest}"

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def _layout(self) -> dict[str, Any]:
        return {
            "name": self.dist,
            "version": self.version,
            "package": self.module,
            "code": self.code,
            "description": f"fixture plugin {self.driver}",
            "docstring": "A greeter plugin built by the tests.",
            "dependencies": self.dependencies,
            "entry_points": {"greeter.plugins": {self.driver: self.target}},
            "extra_files": self.extra_files,
        }

    def write_project(self, root: Path) -> Path:
        """Write a setuptools project for this plugin under *root*; return its pyproject.toml."""
        return write_project(root, **self._layout())

    def write_wheel(self, out: Path) -> Path:
        """Write this plugin's wheel into *out* directly (see :func:`wheels.write_wheel`); return it."""
        return write_wheel(out, **self._layout())


class PluginFactory:
    """Writes each fixture plugin's wheel once per session and installs it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._wheels: dict[PluginSpec, Path] = {}

    def wheel(self, spec: PluginSpec) -> Path:
        if spec not in self._wheels:
            self._wheels[spec] = spec.write_wheel(Path(tempfile.mkdtemp(prefix=f"{spec.module}-", dir=self.workdir)))
        return self._wheels[spec]

    def install(self, spec: PluginSpec, site: Path) -> Path:
        """Unpack the plugin's wheel into *site*, as an installer would; return the dist-info."""
        site.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(self.wheel(spec)) as wheel:
            wheel.extractall(site)
        [dist_info] = site.glob(f"{spec.dist.replace('-', '_')}-{spec.version}.dist-info")
        return dist_info


# -- the fixture plugins: one per behaviour, each under its own driver name ---------------------

ALPHA = PluginSpec("alpha", code=greeter_code("Alpha"))
BETA = PluginSpec("beta", code=greeter_code("Beta"))
GAMMA = PluginSpec("gamma", code=greeter_code("Gamma"))
#: Two versions of one distribution, sharing a module name: an upgrade in place.
ALPHA_V1 = PluginSpec("alpha", code=greeter_code("Alpha"), version="1.0", module_name="gt_alpha_upgradable")
ALPHA_V2 = PluginSpec("alpha", code=greeter_code("Alpha two"), version="2.0", module_name="gt_alpha_upgradable")

#: The Go post's panicking plugin.
PANIC = PluginSpec("panic", code=greet_body('raise RuntimeError("I\'m gone.")'))
#: ``sys.exit(1)`` in greet(): contained in process, like any exception.
SYS_EXIT = PluginSpec("sysexit", code=greet_body("sys.exit(1)", "import sys"))
#: ``os._exit(3)`` in greet(): the Go post's os.Exit, which only isolation survives.
OS_EXIT = PluginSpec("exit", code=greet_body("os._exit(3)", "import os"))
SEGFAULT = PluginSpec("segfault", code=greet_body("ctypes.string_at(0)", "import ctypes"))
#: Logs "sleeping" (so a test can tell the call is in flight), then never returns.
HANG = PluginSpec("hang", code=greet_body('self.context.logger.warning("sleeping")\ntime.sleep(3600)', "import time"))
NOT_A_STRING = PluginSpec("number", code=greet_body("return 42"))
BROKEN_IMPORT = PluginSpec("broken", code="import gt_no_such_module_anywhere\n")
NO_GREET = PluginSpec(
    "nogreet", code="class Plugin:\n    def __init__(self, context):\n        self.context = context\n"
)
#: Writes to stdout (print and raw fd 1), to stderr and to its logger, at import time and when greeting.
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
#: Greets with its driver name, its options, the name and its pid: what crossed into the plugin.
ECHO_CONFIG = PluginSpec(
    "echoconfig",
    code=greet_body(
        'return f"{self.context.driver} {sorted(self.context.config.items())} {name} {os.getpid()}"', "import os"
    ),
)


def marking(driver: str, word: str) -> PluginSpec:
    """A well-behaved plugin that records each import of its module, with the importing pid, in a file
    ``imported-<driver>`` beside its package: observable from any process (see :func:`imports_of`)."""
    mark = (
        "import os as _os, pathlib as _pathlib\n"
        f'with open(_pathlib.Path(__file__).parent.parent / "imported-{driver}", "a") as _file:\n'
        "    _file.write(f'{_os.getpid()}\\n')\n"
    )
    return PluginSpec(driver, code=mark + greeter_code(word))


def imports_of(spec: PluginSpec, site: Path) -> list[int]:
    """The pids of every process that imported the :func:`marking` plugin *spec* installed in *site*."""
    marker = site / f"imported-{spec.driver}"
    return [int(pid) for pid in marker.read_text().split()] if marker.exists() else []
