"""Loading: stevedore's DriverManager builds the plugin, the core checks it like a type assertion."""

from __future__ import annotations

import logging
import shutil
import sys

import pytest
from plugins import PANIC, PluginSpec, greeter_code

import greeter_core
from greeter_core import (
    DuplicateDriverError,
    Greeter,
    LoadedPlugin,
    NoSuchDriverError,
    PluginAPIVersionError,
    PluginCallError,
    PluginContractError,
    PluginInfo,
    PluginLoadError,
    UsageError,
    discovery,
    guard,
    load,
)
from greeter_core.loading import InProcessPlugin

pytestmark = pytest.mark.usefixtures("on_path")

ECHO_CONTEXT = """
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        return f"{self.context.driver}|{self.context.logger.name}|{sorted(self.context.config.items())}|{name}"
"""


def test_load_returns_a_ready_greeter(install) -> None:
    """load(name) gives a LoadedPlugin whose greet() answers at once; .obj is the plugin object itself."""
    install(PluginSpec("klingon", code=greeter_code("nuqneH")))
    greeter = load("klingon")
    assert isinstance(greeter, LoadedPlugin) and isinstance(greeter, InProcessPlugin)
    assert isinstance(greeter.obj, Greeter)
    assert greeter.greet("Worf") == "nuqneH Worf"


def test_load_accepts_a_discovered_record(install) -> None:
    """discover() -> load(record) is the straight path; no name lookup in between."""
    install(PluginSpec("klingon", code=greeter_code("nuqneH")))
    [record] = [p for p in greeter_core.discover() if p.name == "klingon"]
    assert load(record).greet("") == "nuqneH Universe"


def test_the_plugin_receives_the_host_context(install) -> None:
    """The plugin is built with its driver name, a logger named after it, and the user's options."""
    install(PluginSpec("klingon", code=ECHO_CONTEXT))
    greeter = load("klingon", config={"b": "2", "a": "1"})
    assert greeter.greet("x") == "klingon|greeter.plugins.klingon|[('a', '1'), ('b', '2')]|x"


def test_the_context_config_is_read_only(install) -> None:
    """A plugin cannot change the options the host gave it."""
    install(PluginSpec("klingon"))
    greeter = load("klingon", config={"a": "1"})
    assert isinstance(greeter, InProcessPlugin)
    with pytest.raises(TypeError):
        greeter.obj.context.config["a"] = "2"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import no_such_module_anywhere", "ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
        ("raise SystemExit(3)", "SystemExit: 3"),
        ("assert False, 'plugin asserted'", "AssertionError: plugin asserted"),
        (
            "class Plugin:\n    def __init__(self, context):\n        raise ValueError('bad config')",
            "ValueError: bad config",
        ),
    ],
    ids=["import-error", "sys-exit-at-import", "assert-at-import", "constructor-raises"],
)
def test_a_plugin_that_fails_to_load_raises_plugin_load_error(install, code: str, expected: str) -> None:
    """Whatever goes wrong while importing or building the plugin, the host gets one error naming it."""
    install(PluginSpec("klingon", code=code))
    with pytest.raises(PluginLoadError) as caught:
        load("klingon")
    message = str(caught.value)
    assert expected in message
    assert "plugin 'klingon' (greeter-klingon 1.0)" in message
    assert caught.value.plugin is not None and caught.value.plugin.distribution == "greeter-klingon"


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("class Plugin:\n    def __init__(self, context): pass", "Plugin has no greet() method"),
        ("class Plugin:\n    greet = 'hello'\n    def __init__(self, context): pass", "Plugin.greet is not callable"),
        ("from greeter_core import Greeter\nclass Plugin(Greeter): pass", "Plugin does not implement greet()"),
        (
            "from greeter_core import Greeter\nclass Plugin(Greeter):\n    api_version = '1'\n"
            "    def greet(self, name): return name",
            "api_version must be an int, not str",
        ),
    ],
    ids=["no-greet", "greet-not-callable", "greet-not-implemented", "api-version-not-int"],
)
def test_an_object_that_is_not_a_greeter_raises_contract_error(install, code: str, problem: str) -> None:
    """The type assertion: a plugin without a usable greet() is refused with the reason."""
    install(PluginSpec("klingon", code=code))
    with pytest.raises(PluginContractError) as caught:
        load("klingon")
    assert problem in str(caught.value)
    assert "greeter-klingon 1.0" in str(caught.value)


def test_a_plugin_for_a_newer_api_is_refused(install) -> None:
    """A plugin declaring a newer plugin API than the core's is not loaded."""
    code = greeter_code("Hi") + f"\nPlugin.api_version = {greeter_core.API_VERSION + 1}\n"
    install(PluginSpec("klingon", code=code))
    with pytest.raises(PluginAPIVersionError) as caught:
        load("klingon")
    assert (caught.value.wanted, caught.value.provided) == (greeter_core.API_VERSION + 1, greeter_core.API_VERSION)


def test_a_duck_typed_plugin_is_accepted(install) -> None:
    """Subclassing Greeter is the documented way, but any class with greet() passes, as in Go."""
    code = "class Plugin:\n    def __init__(self, context): pass\n    def greet(self, name): return 'duck ' + name"
    install(PluginSpec("klingon", code=code))
    assert load("klingon").greet("x") == "duck x"


def test_a_falsy_plugin_instance_is_still_the_instance(install) -> None:
    """stevedore's .driver returns the class for a falsy instance; greeter returns the instance."""
    code = greeter_code("Hi") + "\nPlugin.__len__ = lambda self: 0\n"
    install(PluginSpec("klingon", code=code))
    greeter = load("klingon")
    assert isinstance(greeter, InProcessPlugin)
    assert not isinstance(greeter.obj, type)
    assert greeter.greet("x") == "Hi x"


def test_two_distributions_with_one_name_refuse_to_load(install) -> None:
    """load() raises DuplicateDriverError naming both distributions rather than picking one."""
    install(PluginSpec("klingon"), PluginSpec("klingon", distribution="greeter-klingon-fork"))
    with pytest.raises(DuplicateDriverError) as caught:
        load("klingon")
    assert "greeter-klingon 1.0" in str(caught.value) and "greeter-klingon-fork 1.0" in str(caught.value)


def test_unknown_name_raises_no_such_driver_without_stevedore_noise(install, caplog) -> None:
    """A missing driver is one GreeterError; stevedore's own 'Could not load' warning is not logged."""
    install(PluginSpec("klingon"))
    with caplog.at_level(logging.DEBUG), pytest.raises(NoSuchDriverError) as caught:
        load("vulcan")
    assert "klingon" in caught.value.installed
    assert not [r for r in caplog.records if r.name.startswith("stevedore") and r.levelno >= logging.WARNING]


def test_a_plugin_installed_after_stevedore_scanned_still_loads(install, factory, site) -> None:
    """stevedore never refreshes its per-process cache; greeter falls back to fresh metadata."""
    install(PluginSpec("klingon"))
    assert load("klingon").greet("x") == "Hi x"  # stevedore has now cached the group
    factory.install(PluginSpec("vulcan", code=greeter_code("Dif-tor heh smusma")), site)
    assert load("vulcan").greet("Spock") == "Dif-tor heh smusma Spock"


def test_a_plugin_removed_after_stevedore_scanned_is_no_longer_found(install, site) -> None:
    """A stale cache entry for an uninstalled plugin becomes 'no such driver', not an import error."""
    spec = PluginSpec("klingon")
    install(spec, PluginSpec("vulcan"))
    load("vulcan")  # stevedore now caches both entry points
    shutil.rmtree(site / spec.module)
    shutil.rmtree(next(site.glob("greeter_klingon-*.dist-info")))
    with pytest.raises(NoSuchDriverError):
        load("klingon")


def test_unknown_isolation_mode_is_a_usage_error() -> None:
    """A typo in the isolation mode is the caller's mistake, not a plugin failure."""
    with pytest.raises(UsageError):
        load("klingon", isolation="thread")


RECORD = PluginInfo("panic", "greeter-panic", "1.0", "gt_panic:Plugin")


class _Raises:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def greet(self, name: str) -> str:
        raise self.error


class _Returns:
    def __init__(self, value: object) -> None:
        self.value = value

    def greet(self, name: str) -> object:
        return self.value


def loaded(obj: object) -> InProcessPlugin:
    """*obj* as the loader would hand it over, loaded from RECORD."""
    return InProcessPlugin(obj, RECORD.name, RECORD.target, RECORD)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("I'm gone."), "RuntimeError: I'm gone."),
        (SystemExit(1), "SystemExit: 1"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_greet_turns_any_plugin_exception_into_plugin_call_error(error: BaseException, expected: str) -> None:
    """The recover() of the Go original, SystemExit included, naming the plugin and its distribution."""
    with pytest.raises(PluginCallError) as caught:
        loaded(_Raises(error)).greet("x")
    assert str(caught.value) == f"plugin 'panic' (greeter-panic 1.0) failed: {expected}"


def test_greet_lets_the_users_ctrl_c_through() -> None:
    """A KeyboardInterrupt with the user's stop request behind it is the user's: it is not swallowed."""
    guard.request_stop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loaded(_Raises(KeyboardInterrupt())).greet("x")
    finally:
        guard.clear_stop()


@pytest.mark.parametrize("value", [None, 42, b"Hello", ["Hello"]])
def test_greet_refuses_a_non_string_greeting(value: object) -> None:
    """greet() must return str; anything else is a contract violation."""
    with pytest.raises(PluginContractError) as caught:
        loaded(_Returns(value)).greet("x")
    assert f"greet() returned {type(value).__name__}, not str" in str(caught.value)


def test_a_failing_plugin_is_named_without_rescanning_installed_metadata(install, monkeypatch) -> None:
    """The loaded plugin carries its record: its failures name the distribution with no metadata scan."""
    install(PANIC)
    greeter = load(greeter_core.find("panic"))
    scans: list[str] = []

    def counted_discover() -> tuple[PluginInfo, ...]:
        scans.append("discover")
        return ()

    monkeypatch.setattr(discovery, "discover", counted_discover)
    for _ in range(3):
        with pytest.raises(PluginCallError, match=r"plugin 'panic' \(greeter-panic 1\.0\) failed"):
            greeter.greet("x")
    assert scans == []


def test_loading_one_plugin_does_not_import_the_others(install) -> None:
    """Only the named driver is imported, even when another installed plugin is broken."""
    broken = PluginSpec("broken", code="raise RuntimeError('imported!')")
    install(PluginSpec("klingon"), broken)
    load("klingon")
    assert broken.module not in sys.modules
