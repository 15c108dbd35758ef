"""Load a plugin through stevedore, check it like Go's type assertion, call it safely.

The path of a greeting, in process: ``load()`` -> stevedore's
``DriverManager`` builds ``cls(context=...)`` -> :func:`validate` ->
:func:`call_greet`. The isolated worker runs this very module on its side.

stevedore caches entry points on disk and per process, and its on-disk key
can miss a change made within about two minutes (see the README). The fast
path trusts that cache; only when it fails do we compare with fresh metadata
and, if the cache was stale, load from the fresh entry point instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any

from stevedore import DriverManager
from stevedore.exception import NoMatches

from .api import API_VERSION, GROUP, Greeter, HostContext
from .errors import (
    GreeterError,
    PluginAPIVersionError,
    PluginCallError,
    PluginContractError,
    PluginLoadError,
    UsageError,
)

if TYPE_CHECKING:
    from .discovery import PluginInfo

__all__ = ["ISOLATION_MODES", "call_greet", "close_quietly", "load", "load_in_process", "validate"]

log = logging.getLogger(__name__)

ISOLATION_MODES = ("none", "process")


def load(
    plugin: str | PluginInfo,
    *,
    config: Mapping[str, str] | None = None,
    isolation: str = "none",
    verify: bool = False,
    call_timeout: float = 5.0,
) -> Greeter:
    """Return a ready greeter for *plugin* (a driver name or a record from ``discover()``).

    With ``isolation="process"`` the plugin runs in a worker process and the
    returned object forwards ``greet()`` to it; close it (or use ``with``)
    to stop the worker. With ``verify=True`` every file of the plugin's
    distribution is checked against its ``RECORD`` first.
    """
    if isolation not in ISOLATION_MODES:
        raise UsageError(f"unknown isolation mode {isolation!r}; use one of: {', '.join(ISOLATION_MODES)}")
    if isolation == "process":
        from .worker.client import WorkerClient

        return WorkerClient(plugin, config=config, verify=verify, call_timeout=call_timeout).start()
    if verify:
        from .discovery import find
        from .integrity import verify_plugin

        plugin = find(plugin) if isinstance(plugin, str) else plugin
        verify_plugin(plugin)
    return load_in_process(plugin, config)


def load_in_process(plugin: str | PluginInfo, config: Mapping[str, str] | None = None) -> Greeter:
    """Build and validate the plugin in this process (what ``load()`` and the worker share)."""
    if not isinstance(plugin, str):
        return _build(plugin.name, config, plugin)
    try:
        return _build(plugin, config, None)
    except (NoMatches, PluginLoadError) as error:
        from .discovery import find

        fresh = find(plugin)  # raises NoSuchDriverError if it really is not installed
        if isinstance(error, PluginLoadError) and error.target == fresh.target:
            raise PluginLoadError(plugin, fresh, error.error, target=fresh.target) from error.__cause__
        log.info("stevedore's entry-point cache is stale for %r; loading it from fresh metadata", plugin)
        return _build(plugin, config, fresh)


class _DriverManager(DriverManager):  # type: ignore[type-arg]
    """stevedore's DriverManager, told which entry point to use when the cache can't be trusted.

    Given *entry_point*, it considers exactly that one: after an install or
    uninstall in a long-running process, or when stevedore's on-disk cache is
    stale. It also reports a missing name by raising ``NoMatches`` before
    stevedore logs "Could not load": stevedore 5.10's DriverManager does not
    pass ``on_missing_entrypoints_callback`` on, so that warning cannot be
    turned off the documented way.
    """

    def __init__(self, driver: str, entry_point: EntryPoint | None = None, **kwargs: Any) -> None:
        self._driver = driver
        self._entry_point = entry_point
        super().__init__(GROUP, driver, on_missing_entrypoints_callback=None, **kwargs)

    def list_entry_points(self) -> list[EntryPoint]:
        entry_points = [self._entry_point] if self._entry_point else super().list_entry_points()
        if not any(ep.name == self._driver for ep in entry_points):
            raise NoMatches(f"No {GROUP!r} driver found, looking for {self._driver!r}")
        return entry_points


class _LoadFailed(Exception):
    """Carries a stevedore load failure out of its callback, with the entry point."""

    def __init__(self, entry_point: EntryPoint, error: BaseException) -> None:
        super().__init__(entry_point, error)
        self.entry_point = entry_point
        self.error = error


def _on_load_failure(manager: Any, entry_point: EntryPoint, error: BaseException) -> None:
    raise _LoadFailed(entry_point, error) from error


def _refuse_duplicates(namespace: str, name: str, extensions: list[Any]) -> Any:
    from .discovery import find

    fresh = find(name)  # raises DuplicateDriverError naming every distribution
    # Only one is really installed: stevedore's cache still lists a removed one.
    for ext in extensions:
        if ext.entry_point_target == fresh.target:
            return ext
    raise NoMatches(f"stevedore's cache does not list {fresh.target!r}")  # stale: reload fresh


def _build(driver: str, config: Mapping[str, str] | None, info: PluginInfo | None) -> Greeter:
    """Build through stevedore; its ``NoMatches`` is left to the caller to interpret."""
    context = HostContext.create(driver, config)
    options: dict[str, Any] = {
        "invoke_on_load": True,
        "invoke_kwds": {"context": context},
        "on_load_failure_callback": _on_load_failure,
        "conflict_resolver": _refuse_duplicates,
    }
    target = info.target if info else None
    try:
        entry_point = EntryPoint(driver, info.target, GROUP) if info else None
        manager = _DriverManager(driver, entry_point, **options)
    except _LoadFailed as failure:
        raise PluginLoadError(
            driver, info, _one_line(failure.error) + _hint(failure.error), target=failure.entry_point.value
        ) from failure.error
    except (SystemExit, AssertionError) as error:
        # stevedore lets these two through its own handler; a plugin must not
        # be able to end the host by raising them at import time.
        raise PluginLoadError(driver, info, _one_line(error), target=target) from error
    # Not manager.driver: it returns the class when the instance is falsy.
    return validate(driver, manager.extensions[0].obj, info)


def validate(driver: str, obj: Any, info: PluginInfo | None = None) -> Greeter:
    """Check *obj* is a usable Greeter, as Go's type assertion would; return it."""
    greet = getattr(obj, "greet", None)
    problem = None
    if greet is None:
        problem = f"{type(obj).__name__} has no greet() method"
    elif not callable(greet):
        problem = f"{type(obj).__name__}.greet is not callable"
    elif getattr(type(obj), "greet", None) is Greeter.greet:
        problem = f"{type(obj).__name__} does not implement greet()"
    if problem is not None:
        raise PluginContractError(driver, info or _lookup(driver), problem)
    wanted = getattr(obj, "api_version", API_VERSION)
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        raise PluginContractError(
            driver, info or _lookup(driver), f"api_version must be an int, not {type(wanted).__name__}"
        )
    if wanted > API_VERSION:
        raise PluginAPIVersionError(driver, info or _lookup(driver), wanted, API_VERSION)
    return obj  # type: ignore[no-any-return]


def call_greet(greeter: Greeter, name: str, driver: str, info: PluginInfo | None = None) -> str:
    """Call ``greeter.greet(name)``; any plugin failure becomes a :class:`GreeterError`.

    This is the Go original's ``recover()``: ``SystemExit`` from ``sys.exit()``
    is contained too. ``KeyboardInterrupt`` is not: Ctrl-C belongs to the user.
    """
    try:
        text = greeter.greet(name)
    except GreeterError:
        raise
    except (Exception, SystemExit) as error:
        raise PluginCallError(driver, info or _lookup(driver), _one_line(error)) from error
    if not isinstance(text, str):
        raise PluginContractError(
            driver, info or _lookup(driver), f"greet() returned {type(text).__name__}, not str"
        )
    return text


def close_quietly(greeter: object, driver: str) -> None:
    """Close a greeter the host is dropping; a plugin that cannot close is only logged."""
    close = getattr(greeter, "close", None)
    if close is None:
        return
    try:
        close()
    except (Exception, SystemExit) as error:
        log.warning("plugin %r failed to close: %s", driver, _one_line(error))


def _lookup(driver: str) -> PluginInfo | None:
    """The plugin's record, for a message; only called on error paths."""
    from .discovery import find

    try:
        return find(driver)
    except GreeterError:
        return None


def _hint(error: BaseException) -> str:
    """What a plugin author most likely got wrong, when the error says enough to tell."""
    text = str(error)
    if isinstance(error, TypeError) and ("argument" in text or "takes no arguments" in text):
        return " (the entry point is called as cls(context=...): its __init__ must accept context)"
    return ""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
