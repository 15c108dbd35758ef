"""Load a plugin in this process: (verify) -> stevedore builds it -> the contract check -> a loaded plugin.

:func:`load_in_process` is the whole in-process path; the isolated worker
runs this very function on its side, so both modes load alike. What it
returns, :class:`InProcessPlugin`, is the Go original's ``recover()``
around every call into the plugin object.

stevedore caches entry points on disk and per process, and its on-disk key
can miss a change made within about two minutes (see the docs on
stevedore's caches). The fast path trusts that cache; only when it fails do
we compare with fresh metadata and, if the cache was stale, load from the
fresh entry point instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any

from stevedore import DriverManager
from stevedore.exception import NoMatches

from . import guard
from .api import GROUP, HostContext
from .contract import Violation, closer, greeting, validate
from .errors import GreeterError, PluginCallError, PluginLoadError, describe, one_line
from .guard import call_bounded, end_if_copy, is_user_stop
from .loaded import LoadedPlugin

if TYPE_CHECKING:
    from .discovery import PluginInfo

__all__ = ["CLOSE_TIMEOUT", "InProcessPlugin", "load_in_process"]

log = logging.getLogger(__name__)

#: Seconds a plugin's ``close()`` may take before the host stops waiting for it.
CLOSE_TIMEOUT = 5.0

#: Module -> version of the code this process imported first. Like ``sys.modules``,
#: which it mirrors, it is process-wide: Python cannot unload a module.
_first_imported: dict[str, str] = {}


def load_in_process(
    plugin: str | PluginInfo, config: Mapping[str, str] | None = None, *, verify: bool = False
) -> InProcessPlugin:
    """Build *plugin* (a driver name or a record from ``discover()``) here, checked and ready.

    With ``verify=True`` every file of its distribution is checked against
    its ``RECORD`` before anything is imported.
    """
    if verify:
        from .discovery import find
        from .integrity import verify_plugin

        plugin = find(plugin) if isinstance(plugin, str) else plugin
        verify_plugin(plugin)
    if not isinstance(plugin, str):
        return _build(plugin.name, config, plugin)
    try:
        return _build(plugin, config, None)
    except (NoMatches, PluginLoadError) as error:
        from .discovery import find

        fresh = find(plugin)  # raises NoSuchDriverError if it really is not installed
        if fresh.environment:
            from .environments import refuse_in_process

            refuse_in_process(fresh)
        if isinstance(error, PluginLoadError) and error.target == fresh.target:
            raise PluginLoadError(plugin, fresh, error.error, target=fresh.target) from error.__cause__
        log.info("stevedore's entry-point cache is stale for %r; loading it from fresh metadata", plugin)
        return _build(plugin, config, fresh)


class InProcessPlugin(LoadedPlugin):
    """A plugin object built in this process, behind the contract check and ``recover()``."""

    isolation = "none"

    #: Seconds :meth:`close` waits for the plugin's ``close()``.
    close_timeout = CLOSE_TIMEOUT

    def __init__(self, obj: Any, driver: str, target: str, record: PluginInfo | None = None) -> None:
        #: The plugin object itself, as stevedore built it: call ``obj.greet`` to skip the checks.
        self.obj: Any = obj
        self.driver = driver
        self._target = target
        self._record = record
        self._closed = False
        try:
            self.language = validate(obj)
            self._close = closer(obj)
        except Violation as violation:
            raise violation.error(driver, self.plugin) from violation.__cause__

    @property
    def plugin(self) -> PluginInfo:
        """The record it was loaded from; on the one-shot path it is looked up once, when first needed."""
        if self._record is None:
            self._record = _record_of(self.driver, self._target)
        return self._record

    def greet(self, name: str) -> str:
        """Call the plugin's ``greet()``: whatever it raises becomes PluginCallError, except the user's Ctrl-C.

        ``SystemExit``, ``GeneratorExit``, ``CancelledError``, a bare
        ``BaseException`` subclass, and a ``KeyboardInterrupt`` the plugin
        raised itself are all the plugin's failure. The greeting is a plain
        ``str`` on one line (see :mod:`greeter_core.printable`).
        """
        try:
            text = self.obj.greet(name)
        except BaseException as error:
            if guard.forked:
                end_if_copy(self._described)
            if is_user_stop(error):
                raise
            raise PluginCallError(self.driver, self.plugin, one_line(error)) from error
        if guard.forked:  # the plugin forked, and this may be the copy: it ends before it greets
            end_if_copy(self._described)
        if type(text) is str and text.isprintable():  # the usual case, checked without a call
            return text
        try:
            return greeting(text)
        except Violation as violation:
            raise violation.error(self.driver, self.plugin) from None

    def _described(self) -> str:
        return describe(self.driver, self.plugin)

    def close(self) -> None:
        """Call the plugin's ``close()`` once, waiting :attr:`close_timeout` at most; its failures are logged.

        It runs in a thread of its own, so that a ``close()`` that never
        returns is abandoned (and said so) rather than waited for forever.
        The ``close`` called is the one the plugin had when it was built.
        """
        if self._closed or self._close is None:
            self._closed = True
            return
        self._closed = True
        try:
            call_bounded(self._close, self.close_timeout, name=f"greeter-close-{self.driver}")
            end_if_copy(self._described)
        except TimeoutError:
            log.warning(
                "%s did not close within %g s; left it running (a plugin that hangs needs --isolation process)",
                describe(self.driver, self.plugin),
                self.close_timeout,
            )
        except BaseException as error:
            if is_user_stop(error):
                raise
            log.warning("%s failed to close: %s", describe(self.driver, self.plugin), one_line(error))


def _record_of(driver: str, target: str) -> PluginInfo:
    """The installed record of the plugin loaded as *driver* from *target*; the distribution
    is left empty when metadata no longer lists it (uninstalled since, or a stale cache)."""
    from .discovery import PluginInfo, find

    try:
        record = find(driver)
    except GreeterError:
        record = None
    if record is None or record.target != target:
        return PluginInfo(driver, "", "", target)
    return record


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
        entry_points = [self._entry_point] if self._entry_point else self._scan()
        if not any(ep.name == self._driver for ep in entry_points):
            raise NoMatches(f"No {GROUP!r} driver found, looking for {self._driver!r}")
        return entry_points

    def _scan(self) -> list[EntryPoint]:
        """stevedore's (cached) scan; when another distribution's metadata breaks it, ours.

        stevedore reads every distribution's entry points to fill its cache,
        so one malformed ``entry_points.txt`` anywhere fails every lookup;
        :func:`~greeter_core.discovery.find` skips (and logs) what it cannot read.
        """
        try:
            return super().list_entry_points()
        except Exception as error:
            from .discovery import find

            log.debug("stevedore could not scan entry points (%s); reading metadata instead", one_line(error))
            return [EntryPoint(self._driver, find(self._driver).target, GROUP)]

    def _load_one_plugin(self, ep: EntryPoint, *args: Any) -> Any:
        # stevedore hands only an Exception to the load-failure callback and
        # lets the rest through (AssertionError on purpose): SystemExit,
        # KeyboardInterrupt, GeneratorExit, any BaseException. A plugin must not
        # end the host by raising one at import time; the user's Ctrl-C goes on.
        try:
            return super()._load_one_plugin(ep, *args)
        except BaseException as error:
            if is_user_stop(error) or (isinstance(error, Exception) and not isinstance(error, AssertionError)):
                raise
            raise _LoadFailed(ep, error) from error


class _LoadFailed(Exception):
    """Carries a stevedore load failure out of its callback, with the entry point."""

    def __init__(self, entry_point: EntryPoint, error: BaseException) -> None:
        super().__init__(entry_point, error)
        self.entry_point = entry_point
        self.error = error


def _on_load_failure(manager: Any, entry_point: EntryPoint, error: BaseException) -> None:
    if isinstance(error, _LoadFailed):
        raise error
    raise _LoadFailed(entry_point, error) from error


def _refuse_duplicates(namespace: str, name: str, extensions: list[Any]) -> Any:
    from .discovery import find

    fresh = find(name)  # raises DuplicateDriverError naming every distribution
    # Only one is really installed: stevedore's cache still lists a removed one.
    for ext in extensions:
        if ext.entry_point_target == fresh.target:
            return ext
    raise NoMatches(f"stevedore's cache does not list {fresh.target!r}")  # stale: reload fresh


def _build(driver: str, config: Mapping[str, str] | None, record: PluginInfo | None) -> InProcessPlugin:
    """Build through stevedore; its ``NoMatches`` is left to the caller to interpret."""
    options: dict[str, Any] = {
        "invoke_on_load": True,
        "invoke_kwds": {"context": HostContext.create(driver, config)},
        "on_load_failure_callback": _on_load_failure,
        "conflict_resolver": _refuse_duplicates,
    }
    target = record.target if record else None
    try:
        entry_point = EntryPoint(driver, record.target, GROUP) if record else None
        manager = _DriverManager(driver, entry_point, **options)
    except _LoadFailed as failure:
        raise PluginLoadError(
            driver, record, one_line(failure.error) + _hint(failure.error), target=failure.entry_point.value
        ) from failure.error
    except (NoMatches, GreeterError):
        raise  # not found, or found twice: the caller's to interpret
    except BaseException as error:  # whatever else the plugin's code raised on the way
        if is_user_stop(error):
            raise
        raise PluginLoadError(driver, record, one_line(error), target=target) from error
    finally:
        end_if_copy(lambda: describe(driver, record))  # the plugin's import may have forked the host
    extension = manager.extensions[0]
    # Not manager.driver: it returns the class when the instance is falsy.
    loaded = InProcessPlugin(extension.obj, driver, extension.entry_point_target, record)
    if record is not None:
        loaded._record = _running_code(record)
    return loaded


def _running_code(record: PluginInfo) -> PluginInfo:
    """The record of the code that really runs here: the version this process imported first.

    A plugin upgraded while greeter runs is installed, but its module is
    already imported and Python cannot unload it, so the old code greets.
    """
    module = record.target.partition(":")[0]
    first = _first_imported.setdefault(module, record.version)
    if first == record.version:
        return record
    log.warning(
        "plugin %r: %s %s is installed, but this process still runs the %s code it imported first "
        "(Python cannot unload a module); use --isolation process to run the new version",
        record.name,
        record.distribution,
        record.version,
        first,
    )
    return record._replace(version=first)


def _hint(error: BaseException) -> str:
    """What a plugin author most likely got wrong, when the error says enough to tell."""
    if not isinstance(error, TypeError):
        return ""
    text = one_line(error)
    if isinstance(error, TypeError) and ("argument" in text or "takes no arguments" in text):
        return " (the entry point is called as cls(context=...): its __init__ must accept context)"
    return ""
