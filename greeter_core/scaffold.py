"""``greeter new-plugin``: write a complete plugin distribution that installs and passes its tests as written.

What it writes is what newcomers copy, so it is the smallest plugin that is
right: a ``Greeter`` subclass declaring the plugin API it was written for,
the ``greeter-core`` range that provides that API, and tests that run the
conformance kit (:mod:`greeter_core.testing`) against the installed plugin.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import unicodedata
from pathlib import Path
from string import Template
from typing import NamedTuple

from . import __version__
from .api import API_VERSION, DEFAULT_NAME, GROUP
from .errors import UsageError

__all__ = ["PluginNames", "render", "scaffold", "tox_ini"]

log = logging.getLogger(__name__)

# ASCII only and lowercase: valid as a distribution name, an entry-point name
# and, with "greeter_" before it and "-" as "_", a Python identifier.
_LANGUAGE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


class PluginNames(NamedTuple):
    """Every name a plugin for one language needs, derived from that language."""

    driver: str
    """The entry-point name users pass to ``--driver``, e.g. ``old-norse``."""

    distribution: str
    """e.g. ``greeter-old-norse``."""

    package: str
    """The import package, e.g. ``greeter_old_norse``."""

    class_name: str
    """e.g. ``OldNorseGreeter``."""

    title: str
    """The human-readable language, e.g. ``Old Norse``."""

    @classmethod
    def for_language(cls, language: str) -> PluginNames:
        """The names for *language*; :class:`UsageError` if it cannot be all of them."""
        _check_language(language)
        words = re.split(r"[-_]", language)
        return cls(
            driver=language,
            distribution=f"greeter-{language}",
            package=f"greeter_{language.replace('-', '_')}",
            class_name="".join(word.capitalize() for word in words) + "Greeter",
            title=" ".join(word.capitalize() for word in words),
        )


def scaffold(
    language: str,
    greeting: str,
    directory: str | os.PathLike[str] | None = None,
    universe: str = DEFAULT_NAME,
) -> Path:
    """Write the plugin distribution for *language* into *directory* (default ``./greeter-LANGUAGE``).

    *universe* is the default greetee, ``Universe``, in that language.
    Returns the directory. Refuses to touch one that exists, so nothing of
    the user's is ever overwritten; missing parent directories are created,
    and named in a warning (a typo in ``--dir`` shows at once).
    """
    names = PluginNames.for_language(language)
    files = render(names, _checked_greeting(greeting), _checked_greeting(universe, "--universe"))
    target = Path(directory) if directory is not None else Path(names.distribution)
    missing = [parent for parent in reversed(target.parents) if not parent.exists()]
    try:
        target.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"{target} already exists; choose another --dir or remove it first") from None
    except OSError as error:
        raise UsageError(f"cannot create {target}: {error.strerror}") from None
    try:
        _write(target, files)
    except OSError as error:
        shutil.rmtree(target, ignore_errors=True)  # it is ours: we just created it
        raise UsageError(f"cannot write the plugin into {target}: {error}") from None
    if missing:
        log.warning("created the missing directories %s to hold %s", ", ".join(map(str, missing)), target)
    return target


def _core_range() -> tuple[int, str]:
    """The greeter-core major version and the range a plugin written today declares for it."""
    major = int(__version__.split(".")[0])
    return major, f">={major}.0,<{major + 1}"


def tox_ini(distribution: str) -> str:
    """The ``tox.ini`` of a plugin distribution: the scaffold's, and the shipped plugins' too (one source)."""
    return _TOX.substitute(distribution=distribution, core_range=_core_range()[1])


def render(names: PluginNames, greeting: str, universe: str = DEFAULT_NAME) -> dict[str, str]:
    """The files of the plugin distribution, by path relative to its root."""
    major, core_range = _core_range()
    fields = {
        **names._asdict(),
        "group": GROUP,
        "api_version": API_VERSION,
        "core_range": core_range,
        "core_major": major,
        "test_module": f"test_{names.package.removeprefix('greeter_')}",
        "driver_literal": _literal(names.driver),
        "title_literal": _literal(names.title),
        "greeting": greeting,
        "greeting_literal": _literal(greeting),
        "universe": universe,
        "universe_literal": _literal(universe),
        "default_literal": _literal(f"{greeting} {universe}"),
        "named_literal": _literal(f"{greeting} Ada"),
    }
    return {
        "pyproject.toml": _PYPROJECT.substitute(fields),
        "README.md": _README.substitute(fields),
        "tox.ini": tox_ini(names.distribution),
        f"{names.package}/__init__.py": _PACKAGE.substitute(fields),
        f"tests/{fields['test_module']}.py": _TESTS.substitute(fields),
    }


def _check_language(language: str) -> None:
    if not _LANGUAGE.fullmatch(language):
        hint = f"; did you mean {language.lower()!r}?" if _LANGUAGE.fullmatch(language.lower()) else ""
        raise UsageError(
            f"{language!r} cannot name a plugin: use lowercase ASCII letters and digits, starting with a letter, "
            f"words joined by '-' or '_', e.g. esperanto or old-norse (it becomes the driver name, the "
            f"distribution greeter-LANGUAGE and the package greeter_LANGUAGE){hint}"
        )
    if language.startswith(("greeter-", "greeter_")):
        bare = language[len("greeter-") :]
        raise UsageError(f"give the language alone: {bare!r}, not {language!r} (the distribution is named for you)")


def _checked_greeting(greeting: str, option: str = "--greeting") -> str:
    text = greeting.strip()
    if not text:
        example = "--greeting Saluton" if option == "--greeting" else "--universe Universo"
        raise UsageError(f"{option} must not be empty, e.g. {example}")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in text):
        raise UsageError(f"{option} must be one line of text without control characters, got {greeting!r}")
    return text


def _literal(text: str) -> str:
    """A Python string literal for *text*: its repr, in double quotes where that needs no escape."""
    code = repr(text)
    if code.startswith("'") and '"' not in text:
        code = f'"{code[1:-1]}"'
    return code


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")


_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "$title greetings for greeter"
readme = "README.md"
requires-python = ">=3.11"
# greeter-core $core_major.x provides plugin API $api_version, the one $class_name declares.
dependencies = ["greeter-core$core_range"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."$group"]
$driver = "$package:$class_name"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = ["-ra", "--strict-markers", "--import-mode=importlib"]
filterwarnings = ["error"]
""")

_PACKAGE = Template('''\
"""$title greetings for greeter: ``greeter --driver $driver``."""

from greeter_core import DEFAULT_NAME, Greeter

__all__ = ["$class_name"]

GREETING = $greeting_literal

#: The default greetee, greeter_core.DEFAULT_NAME ("Universe"), in $title.
UNIVERSE = $universe_literal


class $class_name(Greeter):
    """Greets in $title."""

    language = $title_literal
    api_version = $api_version  # the plugin API this was written for (greeter_core.API_VERSION)

    def greet(self, name: str) -> str:
        """Return the greeting for *name*; an empty name means the default greetee."""
        if not name or name == DEFAULT_NAME:
            name = UNIVERSE
        return f"{GREETING} {name}"
''')

_TESTS = Template('''\
"""$distribution, tested as installed: loaded by its entry-point name through greeter_core."""

import greeter_core
from greeter_core.testing import PluginConformance


class TestConformance(PluginConformance):
    """The checks every greeter plugin must pass: greeter_core's conformance kit."""

    driver = $driver_literal


def test_greets_the_default_greetee() -> None:
    """An empty name greets the Universe, in $title."""
    assert greeter_core.load($driver_literal).greet("") == $default_literal


def test_greets_a_name() -> None:
    """The greeting comes before the name."""
    assert greeter_core.load($driver_literal).greet("Ada") == $named_literal
''')

_README = Template("""\
# $distribution

$title greetings for greeter.

```console
$$ greeter --driver $driver
$greeting $universe
```

Registers the driver `$driver` in the `$group` entry-point group; the class
is `$package.$class_name`, written for greeter plugin API $api_version.

## Develop

greeter-core is not on PyPI: in a fresh venv, tell pip where it is, a
wheelhouse (a directory of wheels) or your own index, then install this
plugin with its test extra:

```sh
export PIP_FIND_LINKS=/path/to/wheelhouse   # or: export PIP_INDEX_URL=https://your.index/simple
pip install -e ".[test]"   # this plugin, greeter-core (from there) and pytest
pytest                     # its tests and greeter_core's conformance kit, against the installed plugin
```

Entry points are read when the distribution is installed: after changing
`[project.entry-points."$group"]` in `pyproject.toml`, run the `pip install`
again.

## Test matrix

`tox` (with tox-uv: `pip install "tox>=4.67,<5" "tox-uv>=1.37,<2"`) runs the tests
on CPython 3.11, 3.12 and 3.13, each against the lowest greeter-core this
plugin declares (`greeter-core$core_range`; uv's `--resolution lowest-direct`)
and the newest, plus `ruff` (env `lint`). Say where greeter-core comes from
through the environment, as for pip:

```sh
UV_FIND_LINKS=/path/to/wheelhouse tox            # a directory of wheels
UV_INDEX=https://your.index/simple tox           # or your own index, asked before PyPI
tox -e py313-core-lowest                         # one env; tox list shows them all
```
""")

_TOX = Template("""\
# $distribution's test matrix: its tests on CPython 3.11, 3.12 and 3.13, each
# against the lowest greeter-core it declares (greeter-core$core_range, resolved
# with uv's lowest-direct strategy) and the newest; and a lint env (ruff).
#
# greeter-core is not on PyPI: say where it is through the environment, never
# here (the same file works for everyone):
#   UV_FIND_LINKS=/path/to/wheelhouse tox   a directory of wheels
#   UV_INDEX=https://your.index/simple tox  your own index, asked before PyPI
# Written by `greeter new-plugin` (greeter_core/scaffold.py).
[tox]
requires =
    tox>=4.20
    tox-uv>=1.11
env_list = py{311,312,313}-core-{lowest,newest}, lint
skip_missing_interpreters = false

[testenv]
description =
    core-lowest: the tests against the lowest greeter-core declared, the plugin installed as a built wheel
    core-newest: the tests against the newest greeter-core, the plugin installed as a built wheel
package = wheel
wheel_build_env = .pkg
extras = test
uv_resolution =
    core-lowest: lowest-direct
    core-newest: highest
pass_env =
    UV_FIND_LINKS
    UV_INDEX_URL
    UV_DEFAULT_INDEX
    UV_INDEX
    UV_EXTRA_INDEX_URL
    UV_OFFLINE
    PIP_FIND_LINKS
    PIP_INDEX_URL
commands = pytest {posargs}

[testenv:lint]
description = ruff: lint and format check
skip_install = true
deps = ruff>=0.15
commands =
    ruff check {toxinidir}
    ruff format --check {toxinidir}
""")
