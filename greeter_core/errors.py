"""Every failure greeter reports: one base class, one subclass per failure.

Each error carries the plugin it is about (``.plugin``, a
:class:`~greeter_core.discovery.PluginInfo` when the distribution is known,
and ``.driver``, the entry-point name) and a message that says what to do
next. Its category is on the class, and only there: ``exit_code`` (the CLI's
exit status), ``http_status`` (the control endpoint's answer) and ``sendable``
(whether an isolated worker may report it). ``wire_fields`` declares the
fields it crosses a process border with, and their types: the codec
(:mod:`greeter_core.worker.codec`) reads nothing else. Errors pickle too, for
programs with process borders of their own.

The helpers every message is written with (:func:`describe`,
:func:`one_line`, :func:`install_hint`) are exported for the modules that
phrase their own messages the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from .printable import printable
from .record import PluginInfo

__all__ = [
    "CircuitOpenError",
    "DuplicateDriverError",
    "EnvironmentBrokenError",
    "GreeterError",
    "HandshakeError",
    "HostResourceError",
    "InstallError",
    "IntegrityError",
    "LockMismatchError",
    "NeedsWorkerError",
    "NoSuchDriverError",
    "NotInstalledError",
    "PluginAPIVersionError",
    "PluginCallError",
    "PluginContractError",
    "PluginDisabledError",
    "PluginLoadError",
    "PluginLoadTimeoutError",
    "PluginTimeoutError",
    "ProtocolError",
    "ProvidedVersionError",
    "ReloadUnsupportedError",
    "RuntimeStoppedError",
    "UsageError",
    "WorkerCrashedError",
    "WorkerLimitError",
    "WorkerUnavailableError",
    "describe",
    "install_hint",
    "one_line",
]


def describe(driver: str, plugin: PluginInfo | None) -> str:
    """Name a plugin the way every message does: ``plugin 'x' (greeter-x 1.0)``."""
    if plugin is None or not plugin.distribution:
        return f"plugin {driver!r}"
    return f"plugin {driver!r} ({plugin.distribution} {plugin.version})"


def one_line(error: BaseException) -> str:
    """A plugin's exception as messages quote it: ``Type: first line``, printable (see ``printable``)."""
    name = type.__dict__["__name__"].__get__(type(error))  # not type(error).__name__: a metaclass may raise
    try:
        text = str.join("", (str(error),)).strip().splitlines()
    except BaseException:  # an exception whose __str__ raises (anything) or lies is still named
        text = []
    return printable(f"{name}: {text[0]}" if text else name)


def install_hint(distribution: str) -> str:
    """How to install a plugin distribution from the user's own index or wheelhouse (greeter_core.hints)."""
    from .hints import install_hint as hint  # only on an error path

    return hint(distribution)


def _distribution_for(driver: str) -> str | None:
    """The distribution a plugin named *driver* would conventionally come in, if that is a valid name."""
    import re  # only on this error path

    name = f"greeter-{driver.lower()}"
    return name if re.fullmatch(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", name) else None


def _rebuild(cls: type[GreeterError], args: tuple[Any, ...], state: dict[str, Any]) -> GreeterError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


#: A field that names the plugin: every error about one has it.
_PLUGIN = PluginInfo | None


def _wire(**fields: object) -> Mapping[str, object]:
    """A class's wire fields, in its constructor's order, read-only."""
    return MappingProxyType(fields)


class GreeterError(Exception):
    """Base class of every error greeter raises on purpose."""

    #: The exit status the CLI uses for this error: 1 for a broken plugin or
    #: environment, 2 for a mistake in what the user asked for.
    exit_code: ClassVar[int] = 1

    #: The control endpoint's answer to a request that failed with this error: whose fault, and can it be
    #: retried. 422: the plugin failed to load or broke the contract.
    http_status: ClassVar[int] = 422

    #: Whether an isolated worker may report this error to the host. Never inherited (each class says so
    #: itself): a worker reports what went wrong with the plugin it runs, and nothing that would make the
    #: host say something else (a usage error, exit 2; the host's own shortage, 503).
    sendable: ClassVar[bool] = False

    #: The fields this error crosses a process border with, and their types: the arguments of its
    #: constructor, each kept as the attribute of the same name. A class of this module with its own
    #: ``__init__`` declares its own (a plugin's subclass never crosses: the codec builds only these).
    wire_fields: ClassVar[Mapping[str, object]] = _wire(message=str, driver=str | None, plugin=_PLUGIN)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.sendable = bool(vars(cls).get("sendable", False))
        if cls.__module__ == __name__ and "__init__" in vars(cls) and "wire_fields" not in vars(cls):
            raise TypeError(f"{cls.__name__} has its own __init__ but does not declare its wire_fields")

    def __init__(self, message: str, *, driver: str | None = None, plugin: PluginInfo | None = None) -> None:
        super().__init__(message)
        self.driver = driver if driver is not None else (plugin.name if plugin else None)
        self.plugin = plugin

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses have their own __init__ signatures; rebuild from state so
        # that every one of them crosses a process border unchanged.
        return (_rebuild, (type(self), self.args, self.__dict__))


class UsageError(GreeterError):
    """The user asked for something that cannot work (bad option, bad address...)."""

    exit_code = 2
    http_status = 400


class NoSuchDriverError(GreeterError):
    """No plugin of that name is registered in ``greeter.plugins``."""

    exit_code = 2
    http_status = 404
    wire_fields = _wire(driver=str, installed=tuple[str, ...])

    def __init__(self, driver: str, installed: Iterable[str]) -> None:
        self.installed = tuple(sorted(installed))
        distribution = _distribution_for(driver)
        if not self.installed:
            message = (
                f"no plugin named {driver!r} is installed, and no greeter plugins are installed at all; "
                f"install one, e.g.: {install_hint(distribution or 'greeter-english')}"
            )
        else:
            message = f"no plugin named {driver!r} is installed (installed: {', '.join(self.installed)}); "
            close = _close_matches(driver, self.installed)
            if close:
                message += f"did you mean {' or '.join(repr(name) for name in close)}?"
            elif distribution:
                message += f"to add it: {install_hint(distribution)}"
            else:
                message += "a plugin name is an entry-point name such as 'english' (see: greeter list)"
        super().__init__(message, driver=driver)


def _close_matches(driver: str, installed: tuple[str, ...]) -> list[str]:
    """Installed names the user probably meant (a typo, or the wrong case)."""
    import difflib  # only on this error path

    lowered = {name.lower(): name for name in installed}
    return [lowered[m] for m in difflib.get_close_matches(driver.lower(), lowered, n=2, cutoff=0.75)]


class DuplicateDriverError(GreeterError):
    """Several distributions register the same plugin name; greeter will not guess."""

    http_status = 409
    wire_fields = _wire(driver=str, plugins=tuple[PluginInfo, ...])

    def __init__(self, driver: str, plugins: Iterable[PluginInfo]) -> None:
        self.plugins = tuple(plugins)
        providers = " and ".join(f"{p.distribution} {p.version} ({p.target})" for p in self.plugins)
        message = (
            f"plugin name {driver!r} is registered by {len(self.plugins)} distributions: {providers}; "
            f"uninstall all but one (pip uninstall {self.plugins[-1].distribution})"
        )
        super().__init__(message, driver=driver)


class PluginLoadError(GreeterError):
    """The plugin's module failed to import, or its class failed to construct."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, error=str, target=str | None)

    def __init__(self, driver: str, plugin: PluginInfo | None, error: str, *, target: str | None = None) -> None:
        self.error = error
        self.target = target if target is not None else (plugin.target if plugin else None)
        super().__init__(self._explain(driver, plugin), driver=driver, plugin=plugin)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        distribution = plugin.distribution if plugin else f"the distribution providing {driver!r}"
        return (
            f"{describe(driver, plugin)} failed to load: {self.error}; "
            f"reinstall or fix {distribution} (--debug shows the traceback)"
        )


class PluginLoadTimeoutError(PluginLoadError):
    """Loading a plugin in process (its import and construction) did not finish in time; it was given up on."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, seconds=float)

    def __init__(self, driver: str, plugin: PluginInfo | None, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(driver, plugin, f"did not finish loading within {seconds:g} s")

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)} did not finish loading within {self.seconds:g} s; greeter gave up on it "
            f"(its import goes on in the background: Python cannot stop it); raise --load-timeout if it is "
            f"just slow, or use --isolation process for a plugin that hangs"
        )


class PluginContractError(GreeterError):
    """The loaded object is not a Greeter: the type assertion of the Go original."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        super().__init__(self._explain(driver, plugin), driver=driver, plugin=plugin)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        distribution = plugin.distribution if plugin else "the plugin"
        return (
            f"{describe(driver, plugin)} breaks the Greeter contract: {self.problem}; "
            f"report it to the authors of {distribution}"
        )


class PluginAPIVersionError(PluginContractError):
    """The plugin was written for a newer plugin API than this core provides."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, wanted=int, provided=int)

    def __init__(self, driver: str, plugin: PluginInfo | None, wanted: int, provided: int) -> None:
        self.wanted = wanted
        self.provided = provided
        super().__init__(driver, plugin, f"needs plugin API {wanted} > {provided}")

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)} needs greeter plugin API {self.wanted}, "
            f"but this greeter-core provides API {self.provided}; upgrade greeter-core "
            f"(pip install --upgrade greeter-core) or install an older "
            f"{plugin.distribution if plugin else 'version of the plugin'}"
        )


class PluginCallError(GreeterError):
    """``greet()`` raised: the Go original's ``recover()``-ed panic."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, error=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, error: str) -> None:
        self.error = error
        super().__init__(f"{describe(driver, plugin)} failed: {error}", driver=driver, plugin=plugin)


class WorkerCrashedError(GreeterError):
    """The isolated worker running the plugin died (exit, signal, kill)."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, what=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, what: str) -> None:
        self.what = what
        super().__init__(self._explain(driver, plugin), driver=driver, plugin=plugin)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)} crashed its worker: {self.what}; the host is unaffected, "
            f"and a later call starts a fresh worker"
        )


class WorkerLimitError(WorkerCrashedError):
    """The isolated worker went over one of its resource limits (``--worker-memory``...) and was stopped."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, limit=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, limit: str) -> None:
        self.limit = limit
        super().__init__(driver, plugin, f"exceeded {limit}")

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)} exceeded {self.limit}; its worker was stopped (the host is unaffected, "
            f"and a later call starts a fresh worker; raise the limit if the plugin needs more)"
        )


class ProtocolError(WorkerCrashedError):
    """The isolated worker sent something the protocol does not allow; it was stopped."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        super().__init__(driver, plugin, f"broke the protocol: {problem}")

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)}: its worker broke the protocol ({self.problem}) and was stopped; "
            f"the host is unaffected, and a later call starts a fresh worker"
        )


class WorkerUnavailableError(WorkerCrashedError):
    """The isolated worker crashed a moment ago: calls fail at once, starting nothing, until its restart is due."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, last_exit=str, retry_in=float)

    def __init__(self, driver: str, plugin: PluginInfo | None, last_exit: str, retry_in: float) -> None:
        self.last_exit = last_exit
        self.retry_in = retry_in
        super().__init__(driver, plugin, last_exit)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"{describe(driver, plugin)} is not running: its worker crashed ({self.last_exit}); "
            f"the next restart is in {self.retry_in:.1f} s"
        )


class CircuitOpenError(WorkerUnavailableError):
    """The isolated worker crashed too often: it is not restarted until the window passes, a swap or a reload."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, crashes=int, window=float, retry_in=float)

    def __init__(self, driver: str, plugin: PluginInfo | None, crashes: int, window: float, retry_in: float) -> None:
        self.crashes = crashes
        self.window = window
        super().__init__(driver, plugin, f"{crashes} crashes in {window:g} s", retry_in)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        return (
            f"circuit open for {describe(driver, plugin)} after {self.crashes} crashes in {self.window:g} s; "
            f"calls fail at once for {self.retry_in:.1f} s more, or until a swap or a reload"
        )


class PluginTimeoutError(GreeterError):
    """A call to an isolated plugin did not answer in time; its worker was killed."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, seconds=float)

    def __init__(self, driver: str, plugin: PluginInfo | None, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"{describe(driver, plugin)} did not answer within {seconds:g} s; its worker was "
            f"killed (raise --call-timeout if the plugin is just slow)",
            driver=driver,
            plugin=plugin,
        )


class HandshakeError(GreeterError):
    """The worker and the host do not speak the same protocol or plugin API."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{describe(driver, plugin)}: worker handshake refused: {problem}",
            driver=driver,
            plugin=plugin,
        )


class HostResourceError(GreeterError):
    """greeter itself ran short of a resource (file descriptors...) while serving a plugin: not the plugin's fault."""

    http_status = 503  # greeter itself is short of descriptors or memory: not the plugin, and retryable
    wire_fields = _wire(driver=str, plugin=_PLUGIN, what=str, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(
            f"greeter could not {what} for {describe(driver, plugin)}: {problem}; this process is short of "
            f"resources, not the plugin at fault (raise the limit, e.g. ulimit -n, or find what holds them)",
            driver=driver,
            plugin=plugin,
        )


class IntegrityError(GreeterError):
    """A file of the plugin's distribution does not match its ``RECORD``."""

    sendable = True
    wire_fields = _wire(driver=str, plugin=_PLUGIN, path=str, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(self._explain(driver, plugin), driver=driver, plugin=plugin)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        distribution = plugin.distribution if plugin else "the plugin"
        return (
            f"{describe(driver, plugin)} failed verification: {self.path}: {self.problem}; refusing to "
            f"load it (reinstall {distribution} from a trusted source)"
        )


class LockMismatchError(IntegrityError):
    """The plugin's distribution differs from the lock file: not locked, another version, or a file changed."""

    wire_fields = _wire(driver=str, plugin=_PLUGIN, lock_file=str, path=str, problem=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, lock_file: str, path: str, problem: str) -> None:
        self.lock_file = lock_file
        super().__init__(driver, plugin, path, problem)

    def _explain(self, driver: str, plugin: PluginInfo | None) -> str:
        where = f"{self.path}: " if self.path else ""
        return (
            f"{describe(driver, plugin)} does not match the lock file {self.lock_file}: {where}{self.problem}; "
            f"refusing to load it (review the change, then run greeter lock again, or reinstall the locked version)"
        )


class PluginDisabledError(GreeterError):
    """The plugin is installed, but an allow-list or deny-list setting says never to load it."""

    exit_code = 2
    http_status = 403  # installed, understood, and forbidden by the operator's --plugins/--disable
    wire_fields = _wire(driver=str, plugin=_PLUGIN, setting=str, why=str)

    def __init__(self, driver: str, plugin: PluginInfo | None, setting: str, why: str) -> None:
        self.setting = setting
        self.why = why
        super().__init__(f"{describe(driver, plugin)} is disabled by {setting}: {why}", driver=driver, plugin=plugin)


class ReloadUnsupportedError(GreeterError):
    """A reload was asked of `greeter run` while it loads plugins in its own process."""

    exit_code = 2
    http_status = 409
    wire_fields = _wire(driver=str)

    def __init__(self, driver: str) -> None:
        super().__init__(
            f"cannot reload plugin {driver!r}: in-process reload cannot load new code: stevedore caches entry "
            f"points per process and Python cannot unload a module cleanly; run with --isolation process, "
            f"or restart greeter run",
            driver=driver,
        )


class RuntimeStoppedError(GreeterError):
    """A swap arrived while ``greeter run`` was shutting down."""

    http_status = 409
    wire_fields = _wire()

    def __init__(self) -> None:
        super().__init__("greeter run is stopping; no more swaps")


# -- environments of their own (greeter install) -----------------------------------------------------------


class NeedsWorkerError(GreeterError):
    """A plugin in an environment of its own was asked to load in greeter's own process."""

    exit_code = 2
    http_status = 409  # as ReloadUnsupportedError: the request is fine, the run's --isolation none is not
    wire_fields = _wire(plugin=_PLUGIN)

    def __init__(self, plugin: PluginInfo) -> None:
        super().__init__(
            f"{describe(plugin.name, plugin)} lives in its own environment ({plugin.environment}) and runs only in "
            f"a worker, never in greeter's own process: use --isolation process",
            plugin=plugin,
        )


class EnvironmentBrokenError(GreeterError):
    """A plugin's environment of its own cannot run (its interpreter went away, or it is gone)."""

    wire_fields = _wire(plugin=_PLUGIN, problem=str)

    def __init__(self, plugin: PluginInfo, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{describe(plugin.name, plugin)} lives in its own environment ({plugin.environment}), "
            f"which cannot run: {problem}",
            plugin=plugin,
        )


class InstallError(GreeterError):
    """``greeter install`` could not build the environment; the one in use, if any, is unchanged."""

    wire_fields = _wire(distribution=str, reason=str)

    def __init__(self, distribution: str, reason: str) -> None:
        self.distribution = distribution
        self.reason = reason
        super().__init__(
            f"cannot install {distribution} into an environment of its own: {reason} "
            f"(an environment already installed for it is unchanged)"
        )


class ProvidedVersionError(InstallError):
    """The distribution needs a version of greeter-core (or stevedore) that greeter's environment does not have."""


class NotInstalledError(GreeterError):
    """``greeter uninstall NAME``: NAME has no environment of its own."""

    exit_code = 2
    http_status = 404
    wire_fields = _wire(distribution=str)

    def __init__(self, distribution: str) -> None:
        self.distribution = distribution
        super().__init__(
            f"{distribution} is not installed in an environment of its own (greeter list shows where each "
            f"plugin lives; one in greeter's own environment is removed with pip uninstall {distribution})"
        )
