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
from basics import REPO

#: Bottom to top. A module may import only modules that come before it.
ORDER = [
    # the plugin API, and leaves that import nothing of greeter
    "api",
    "settings",
    "printable",
    "guard",
    "stats",
    "record",
    "worker.cgroup",
    "worker.tree",
    # install hints (read only on an error path), then every failure, named
    "hints",
    "errors",
    # environments of their own (greeter install): read, never built, below discovery
    "environments",
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
    "installing",
    "cli",
    "__main__",
]

PACKAGE = REPO / "greeter_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULE_NAMES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def runtime_imports(path: Path) -> set[str]:
    """The greeter_core modules *path* imports when it runs (at module level or in a function)."""
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> set[str]:
    """The greeter_core modules that *source*, a module of *package*, imports at run time.

    Import statements, ``from greeter_core import slot`` included, and string imports: a string
    that is a module's dotted name (``PRELOAD``, imported with ``__import__``) or Python code that
    imports one (``BOOTSTRAP``, run with ``python -c``).
    """
    tree = ast.parse(source)
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
        elif isinstance(node, ast.ImportFrom) and node.module == "greeter_core":  # modules or names of the package
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("greeter_core."):
            found.add((node.module or "").removeprefix("greeter_core."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("greeter_core.") for a in node.names if a.name.startswith("greeter_core."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(string_imports(node.value))
    return {name for name in found if name in MODULE_NAMES and name != ""}


def string_imports(text: str) -> set[str]:
    """The modules a string names for import: itself, if it is ``greeter_core.X``; else those the code in it imports."""
    if text.startswith("greeter_core.") and text.isascii() and all(p.isidentifier() for p in text.split(".")):
        return {text.removeprefix("greeter_core.")}
    if "import" not in text:
        return set()
    try:
        return imports_in(text, "")  # code run by ``python -c``: only absolute imports mean anything there
    except SyntaxError:  # prose: a docstring, a message
        return set()


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
    upward = upward_imports(name, runtime_imports(path))
    assert upward == [], f"{name} imports {upward}, which come after it in the architecture"


def upward_imports(name: str, imports: set[str]) -> list[str]:
    """The modules among *imports* that come after *name* in the architecture (itself is no edge: the fork
    server's bootstrap line imports its own module, in a new process)."""
    rank = ORDER.index(name)
    return sorted(dep for dep in imports if ORDER.index(dep) > rank)


@pytest.mark.parametrize(
    "planted",
    [
        "from greeter_core import slot\n",
        "from greeter_core.slot import Slot\n",
        "import greeter_core.slot\n",
        "def later():\n    from . import slot\n",
        'PRELOAD = ("ctypes", "greeter_core.slot")\n',
        'BOOTSTRAP = "import sys; from greeter_core.slot import main; sys.exit(main())"\n',
    ],
    ids=["from-package", "from-module", "import", "relative-in-function", "preload-string", "bootstrap-string"],
)
def test_a_planted_back_edge_is_seen_in_each_form(planted: str) -> None:
    """Each way a module can import another, statements and strings alike, is an edge the check sees."""
    source = '"""A leaf: its docstring says greeter_core.slot and import, which is prose."""\n' + planted
    assert upward_imports("printable", imports_in(source, "")) == ["slot"]


def test_prose_and_names_that_are_not_modules_are_no_edge() -> None:
    """A message naming a module, a logger's name and a package attribute are not imports."""
    source = (
        'import logging\nlog = logging.getLogger("greeter_core.runtime")\n'
        'HINT = "greeter_core.slot is imported from the shells"\n'
        "from greeter_core import __version__\n"
    )
    assert imports_in(source, "") == set()


def test_the_worker_s_string_imports_are_seen() -> None:
    """The fork server's PRELOAD and the bootstrap lines are edges in the graph (they must point down too)."""
    assert {"worker.main", "loading"} <= runtime_imports(PACKAGE / "worker" / "forkmain.py")
    assert "worker.forkmain" in runtime_imports(PACKAGE / "worker" / "forkserver.py")
    assert "worker.keeper" in runtime_imports(PACKAGE / "worker" / "client.py")
