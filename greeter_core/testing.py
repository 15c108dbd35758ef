"""The conformance kit: the checks every greeter plugin must pass, for its own pytest suite.

Subclass :class:`PluginConformance` in your plugin's tests and name your
driver; pytest then runs every check against the *installed* plugin, loaded
by its entry-point name through the core's loader, as ``greeter`` would::

    from greeter_core.testing import PluginConformance

    class TestConformance(PluginConformance):
        driver = "esperanto"

A plugin installed with ``greeter install`` (in an environment of its own)
is checked the same way, in a worker, as it always runs: its output to
stdout is what its worker wrote there.

A base class rather than a ``pytest11`` plugin: it is opt-in, visible in the
test module that uses it, and needs no per-project configuration, so the
same test file runs unchanged in the plugin's own checkout and in a larger
test run with another rootdir. pytest comes from the plugin's test extra;
``import greeter_core`` never imports this module.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar

try:
    import pytest
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "greeter_core.testing is a pytest kit and needs pytest: add it to your plugin's test extra "
        '(test = ["pytest>=8"]) and install that extra, e.g. pip install -e ".[test]"'
    ) from error

import stevedore

from . import api
from .api import DEFAULT_NAME, GROUP
from .discovery import PluginInfo, find
from .drive import load
from .errors import GreeterError, NoSuchDriverError, PluginCallError, describe
from .loaded import LoadedPlugin
from .loading import InProcessPlugin

__all__ = ["NAMES", "PluginConformance"]

#: The names every plugin is asked to greet: ordinary, empty (the default
#: greetee) and Unicode ones; ids are what pytest shows.
NAMES = {"ordinary": "Ada", "empty": "", "latin": "Zoë", "cjk": "小明", "greek": "Ἀριστοτέλης"}

#: Where frames of greeter, stevedore and the import system live: not the plugin author's code.
_MACHINERY = ("<frozen ", *(os.path.dirname(m.__file__ or "") + os.sep for m in (api, stevedore, importlib)))

# What a host does with a plugin, for a fresh interpreter: argv[1] is the driver.
_IMPORT_LOAD_GREET = """
import sys, greeter_core
try:
    greeter_core.load(sys.argv[1]).greet("Ada")
except greeter_core.GreeterError as error:
    sys.exit(str(error))
"""

_NO_PRINT = (
    "stdout belongs to the greetings (greeter prints them there, scripts read them); "
    "log with self.context.logger instead of print()"
)


class PluginConformance:
    """Base class of a plugin's conformance tests: subclass it and set :attr:`driver`.

    Every ``test_*`` method below is one check. Failures say what is wrong and
    how to fix it, naming the plugin and the distribution that provides it.
    """

    #: The entry-point name your plugin registers in ``greeter.plugins``.
    driver: ClassVar[str] = ""

    #: ``--option`` values to load the plugin with in the "with options" check;
    #: set them to options your plugin understands.
    options: ClassVar[Mapping[str, str]] = {"conformance-check": "on"}

    #: Set once a check said in full that the plugin is not installed; the others then say it in one line.
    _reported_missing: ClassVar[bool] = False

    def test_is_registered_in_the_greeter_plugins_group(self) -> None:
        """The driver name is an entry point in ``greeter.plugins`` of exactly one distribution."""
        self._info()

    def test_loads_through_the_core_loader(self) -> None:
        """``greeter_core.load(driver)`` builds and validates the plugin."""
        with self._loaded():
            pass

    def test_is_a_greeter(self) -> None:
        """The plugin subclasses ``Greeter`` or conforms to it: ``greet(name)`` takes one name."""
        with self._loaded() as loaded:
            if not isinstance(loaded, InProcessPlugin):  # in its own environment: its worker checked the contract
                self._greet_one_name(loaded)
                return
            greet = loaded.obj.greet
        try:
            inspect.signature(greet).bind("name")
        except TypeError:
            raise self._problem(
                f"has greet{inspect.signature(greet)}, which cannot be called with one name",
                "define greet(self, name: str) -> str, best in a subclass of greeter_core.Greeter",
            ) from None
        except ValueError:  # no signature to inspect (a builtin): the greeting checks still call it
            pass

    @pytest.mark.parametrize("name", NAMES.values(), ids=list(NAMES))
    def test_greets_with_a_non_empty_str(self, name: str) -> None:
        """``greet(name)`` returns a non-empty ``str`` for ordinary, empty and Unicode names."""
        with self._loaded() as loaded:
            text = self._greet(loaded, name)
        if not text.strip():
            raise self._problem(
                f"greet({name!r}) returned {text!r}",
                "return a greeting; an empty name means the default greetee, greeter_core.DEFAULT_NAME",
            )

    def test_empty_name_greets_the_default_greetee(self) -> None:
        """``greet("")`` is ``greet(DEFAULT_NAME)``: an empty name means the default greetee."""
        with self._loaded() as loaded:
            empty, default = self._greet(loaded, ""), self._greet(loaded, DEFAULT_NAME)
        if empty != default:
            raise self._problem(
                f"greet('') returned {empty!r} but greet({DEFAULT_NAME!r}) returned {default!r}",
                "treat an empty name as greeter_core.DEFAULT_NAME, e.g. name = name or DEFAULT_NAME",
            )

    def test_does_not_write_to_stdout(self, capfd: pytest.CaptureFixture[str]) -> None:
        """Neither building the plugin nor greeting writes to stdout (``sys.stdout`` or fd 1)."""
        if self._info().environment:
            self._expect_no_worker_stdout()
            return
        with self._loaded() as loaded:
            self._expect_no_stdout(capfd, "while being loaded")
            for name in NAMES.values():
                self._greet(loaded, name)
                self._expect_no_stdout(capfd, f"while greeting {name!r}")

    def test_does_not_write_to_stdout_in_a_fresh_interpreter(self) -> None:
        """Importing, loading and greeting in a new interpreter writes nothing to stdout.

        This is where output at import time shows: in this process an
        earlier test may have imported the plugin's module already. A plugin in
        its own environment is imported afresh by each worker: its worker's stdout is checked.
        """
        if self._info().environment:
            self._expect_no_worker_stdout()
            return
        result = _in_fresh_interpreter(_IMPORT_LOAD_GREET, self._driver())
        if result.returncode != 0:
            raise self._problem(
                f"fails in a fresh interpreter: {result.stderr.strip()}",
                "fix the other failing checks first; if this is the only one, make the plugin work when it "
                "is the first thing a process imports, without state from this test run",
            )
        if result.stdout:
            raise self._problem(
                f"wrote {result.stdout!r} to stdout in a fresh interpreter (import, load, greet)",
                f"remove print() calls and other stdout writes, at import time too; {_NO_PRINT}",
            )

    @pytest.mark.parametrize("with_options", [False, True], ids=["without-options", "with-options"])
    def test_greets_with_and_without_options(self, with_options: bool) -> None:
        """The plugin loads and greets with no ``--option`` at all and with :attr:`options`."""
        config = dict(self.options) if with_options else None
        with self._loaded(config) as loaded:
            text = self._greet(loaded, "Ada")
        if not text.strip():
            shown = f"options {config}" if config else "no options"
            raise self._problem(
                f"greets with {text!r} when loaded with {shown}",
                "return a greeting whatever the options; use defaults for options that are not given",
            )

    def test_loads_under_process_isolation(self) -> None:
        """With ``isolation="process"`` the plugin loads in a worker and greets as it does in process."""
        with self._loaded() as loaded:
            expected = self._greet(loaded, "Ada")
        try:
            with load(self._driver(), isolation="process") as isolated:
                text = isolated.greet("Ada")
        except GreeterError as error:
            raise self._problem(
                f"fails under --isolation process: {error}",
                "keep the plugin importable in a fresh interpreter, with no state shared with the host",
            ) from None
        if text != expected:
            raise self._problem(
                f"greets 'Ada' with {text!r} under --isolation process but {expected!r} in process",
                "make greet() depend only on its name and its context, not on process state",
            )

    def _driver(self) -> str:
        if not self.driver:
            raise _failed(
                f"{type(self).__name__} does not say which plugin to check; set the class attribute "
                f"driver = '<your entry-point name>' (the name users pass to greeter --driver)"
            )
        return self.driver

    def _info(self) -> PluginInfo:
        try:
            return find(self._driver())
        except NoSuchDriverError as error:
            if type(self)._reported_missing:  # said in full once per class, not once per check
                raise _failed(
                    f"plugin {self.driver!r} is not registered by any installed distribution: the first "
                    f"failing check of {type(self).__name__} says how to fix it"
                ) from None
            type(self)._reported_missing = True
            raise _failed(
                f"plugin {self.driver!r} is not registered in the {GROUP!r} entry-point group of any "
                f"installed distribution (installed plugins: {', '.join(error.installed) or 'none'})\n"
                f"How to fix: the kit tests the installed plugin: install its distribution (in its directory: "
                f"pip install -e .); if it is installed, declare it in its pyproject.toml and reinstall:\n"
                f'    [project.entry-points."{GROUP}"]\n'
                f'    {self.driver} = "your_package:YourGreeter"'
            ) from None
        except GreeterError as error:
            raise _failed(str(error)) from None

    @contextmanager
    def _loaded(self, config: Mapping[str, str] | None = None) -> Iterator[LoadedPlugin]:
        """Load the installed plugin by its entry-point name, as ``greeter`` does; close it after.

        In this process, or in a worker for a plugin in an environment of its own (it never runs in process).
        """
        info = self._info()
        try:
            loaded = (
                load(info.name, config=config, isolation="process")
                if info.environment
                else load(info.name, config=config)
            )
        except GreeterError as error:
            shown = ", isolation='process'" if info.environment else ""
            raise _failed(f"loading it with greeter_core.load({info.name!r}{shown}): {error}{_cause(error)}") from None
        with loaded:
            yield loaded

    def _greet_one_name(self, loaded: LoadedPlugin) -> None:
        """In a worker: ``greet()`` is called with one name (a TypeError there is the signature's fault)."""
        try:
            loaded.greet("Ada")
        except PluginCallError as error:
            if error.error.startswith("TypeError:"):
                raise self._problem(
                    f"has a greet() that cannot be called with one name ({error.error})",
                    "define greet(self, name: str) -> str, best in a subclass of greeter_core.Greeter",
                ) from None
            raise _failed(f"calling greet('Ada'): {error}") from None

    def _expect_no_worker_stdout(self) -> None:
        """Load in a worker (a fresh import) and greet every name: its stdout reaches greeter's log as
        ``stdout: ...`` records of the plugin's logger, which must get none."""
        written: list[str] = []
        collect = logging.Handler()
        collect.emit = lambda record: written.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger(f"{GROUP}.{self._driver()}")
        logger.addHandler(collect)
        try:
            with self._loaded() as loaded:
                for name in NAMES.values():
                    self._greet(loaded, name)
        finally:  # the worker is stopped and its output drained by now
            logger.removeHandler(collect)
        lines = [line.removeprefix("stdout: ") for line in written if line.startswith("stdout: ")]
        if lines:
            raise self._problem(
                f"wrote {lines!r} to stdout in its worker (loading, greeting)",
                f"remove print() calls and other stdout writes, at import time too; {_NO_PRINT}",
            )

    def _greet(self, loaded: LoadedPlugin, name: str) -> str:
        try:
            return loaded.greet(name)
        except GreeterError as error:
            raise _failed(f"calling greet({name!r}): {error}{_cause(error)}") from None

    def _expect_no_stdout(self, capfd: pytest.CaptureFixture[str], when: str) -> None:
        out = capfd.readouterr().out
        if out:
            raise self._problem(f"wrote {out!r} to stdout {when}", _NO_PRINT)

    def _problem(self, problem: str, fix: str) -> BaseException:
        """A failure naming the plugin and its distribution, what is wrong and how to fix it."""
        return _failed(f"{describe(self._driver(), self._info())} {problem}\nHow to fix: {fix}")


def _failed(message: str) -> BaseException:
    """A pytest failure that shows *message* alone, without a traceback through this kit."""
    return pytest.fail.Exception(message, pytrace=False)


def _cause(error: BaseException) -> str:
    """The plugin's own traceback, when the core wrapped one: only the frames of the author's code."""
    cause = error.__cause__
    if cause is None:
        return ""
    trace = traceback.TracebackException.from_exception(cause)
    own = [frame for frame in trace.stack if not frame.filename.startswith(_MACHINERY)]
    if not own:  # raised before reaching the plugin's code: the one-line message says it all
        return ""
    trace.stack = traceback.StackSummary.from_list(own)
    return "\n\nThe plugin raised:\n" + "".join(trace.format()).rstrip()


def _in_fresh_interpreter(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a new interpreter that sees exactly this one's ``sys.path`` (``-P``: not the cwd)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-P", "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
