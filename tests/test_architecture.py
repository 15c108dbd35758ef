"""The greeting's path is one straight line: no module of greeter_core imports one above it.

The order below is the architecture (docs/architecture.md draws it): a
module may import, at run time, only modules listed before it. Imports
under ``if TYPE_CHECKING:`` do not run and do not count; the package's own
``__init__`` is the lazy facade that re-exports the public names, and may be
imported from anywhere for ``__version__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

#: Bottom to top. A module may import only modules that come before it.
ORDER = [
    # the plugin API, and leaves that import nothing of greeter
    "api",
    "settings",
    "printable",
    "guard",
    "stats",
    "record",
    "worker.tree",
    # install hints (read only on an error path), then every failure, named
    "hints",
    "errors",
    # finding and checking a plugin, never importing it (contract: checking an object once built)
    "discovery",
    "catalog",
    "integrity",
    "lock",
    "policy",
    "contract",
    "loaded",
    # building it in this process
    "loading",
    # or in a worker, which loads through loading on its side
    "worker.codec",
    "worker.sandbox",
    "worker.protocol",
    "worker.output",
    "worker.main",
    "worker.keeper",
    "worker.forkmain",
    "worker.forkserver",
    "worker.__main__",
    "worker.supervision",
    "worker.client",
    # the one place that chooses
    "drive",
    # what is built on loaded plugins
    "checkup",
    "slot",
    "metrics",
    "httpd",  # a hardened HTTP server; it imports only printable, and knows nothing of greeter
    "statuspage",
    "control",
    "loop",
    # the shells, and what plugin authors use
    "scaffold",
    "testing",
    "options",
    "completion",
    "cli",
    "__main__",
]

PACKAGE = REPO / "greeter_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """The greeter_core modules *path* imports when it runs (at module level or in a function)."""
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for node in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # from . import x, from .. import y: modules or names of the package
                found.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("greeter_core."):
            found.add((node.module or "").removeprefix("greeter_core."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("greeter_core.") for a in node.names if a.name.startswith("greeter_core."))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name != ""}


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_its_place_in_the_order() -> None:
    """A new module is placed in ORDER on purpose, not left out of the check."""
    assert sorted(module_name(p) for p in MODULES if p.name != "__init__.py") == sorted(ORDER)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_a_module_imports_only_modules_below_it(path: Path) -> None:
    """No import points up: the greeting's path is walked in one direction."""
    name = module_name(path)
    if path.name == "__init__.py":  # a subpackage's __init__ (worker/): imports nothing
        assert runtime_imports(path) == set()
        return
    rank = ORDER.index(name)
    upward = sorted(dep for dep in runtime_imports(path) if ORDER.index(dep) >= rank)
    assert upward == [], f"{name} imports {upward}, which come after it in the architecture"
