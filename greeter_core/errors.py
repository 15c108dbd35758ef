"""Every failure greeter reports: one base class, one subclass per failure.

Each error carries the plugin it is about (``.plugin``, a
:class:`~greeter_core.discovery.PluginInfo` when the distribution is known,
and ``.driver``, the entry-point name) and a message that says what to do
next. Errors cross process borders as plain data (:func:`to_data`,
:func:`from_data`: a kind and the fields of its constructor, rebuilt from this
module's own classes only), which is how an isolated worker reports them to
the host; they pickle too, for programs with process borders of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .printable import printable
from .record import PluginInfo

__all__ = [
    "CircuitOpenError",
    "DuplicateDriverError",
    "GreeterError",
    "HandshakeError",
    "HostResourceError",
    "IntegrityError",
    "LockMismatchError",
    "NoSuchDriverError",
    "PluginAPIVersionError",
    "PluginCallError",
    "PluginContractError",
    "PluginDisabledError",
    "PluginLoadError",
    "PluginLoadTimeoutError",
    "PluginTimeoutError",
    "ProtocolError",
    "ReloadUnsupportedError",
    "RuntimeStoppedError",
    "UsageError",
    "WorkerCrashedError",
    "WorkerLimitError",
    "WorkerUnavailableError",
    "from_data",
    "to_data",
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


class GreeterError(Exception):
    """Base class of every error greeter raises on purpose."""

    #: The exit status the CLI uses for this error: 1 for a broken plugin or
    #: environment, 2 for a mistake in what the user asked for.
    exit_code = 1

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


class NoSuchDriverError(GreeterError):
    """No plugin of that name is registered in ``greeter.plugins``."""

    exit_code = 2

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

    def __init__(self, driver: str, plugin: PluginInfo | None, error: str, *, target: str | None = None) -> None:
        self.error = error
        self.target = target if target is not None else (plugin.target if plugin else None)
        distribution = plugin.distribution if plugin else f"the distribution providing {driver!r}"
        message = (
            f"{describe(driver, plugin)} failed to load: {error}; "
            f"reinstall or fix {distribution} (--debug shows the traceback)"
        )
        super().__init__(message, driver=driver, plugin=plugin)


class PluginLoadTimeoutError(PluginLoadError):
    """Loading a plugin in process (its import and construction) did not finish in time; it was given up on."""

    def __init__(self, driver: str, plugin: PluginInfo | None, seconds: float) -> None:
        self.error = f"did not finish loading within {seconds:g} s"
        self.target = plugin.target if plugin else None
        self.seconds = seconds
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)} did not finish loading within {seconds:g} s; greeter gave up on it "
            f"(its import goes on in the background: Python cannot stop it); raise --load-timeout if it is "
            f"just slow, or use --isolation process for a plugin that hangs",
            driver=driver,
            plugin=plugin,
        )


class PluginContractError(GreeterError):
    """The loaded object is not a Greeter: the type assertion of the Go original."""

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        distribution = plugin.distribution if plugin else "the plugin"
        message = (
            f"{describe(driver, plugin)} breaks the Greeter contract: {problem}; "
            f"report it to the authors of {distribution}"
        )
        super().__init__(message, driver=driver, plugin=plugin)


class PluginAPIVersionError(PluginContractError):
    """The plugin was written for a newer plugin API than this core provides."""

    def __init__(self, driver: str, plugin: PluginInfo | None, wanted: int, provided: int) -> None:
        self.wanted = wanted
        self.provided = provided
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)} needs greeter plugin API {wanted}, "
            f"but this greeter-core provides API {provided}; upgrade greeter-core "
            f"(pip install --upgrade greeter-core) or install an older "
            f"{plugin.distribution if plugin else 'version of the plugin'}",
            driver=driver,
            plugin=plugin,
        )
        self.problem = f"needs plugin API {wanted} > {provided}"


class PluginCallError(GreeterError):
    """``greet()`` raised: the Go original's ``recover()``-ed panic."""

    def __init__(self, driver: str, plugin: PluginInfo | None, error: str) -> None:
        self.error = error
        super().__init__(f"{describe(driver, plugin)} failed: {error}", driver=driver, plugin=plugin)


class WorkerCrashedError(GreeterError):
    """The isolated worker running the plugin died (exit, signal, kill)."""

    def __init__(self, driver: str, plugin: PluginInfo | None, what: str) -> None:
        self.what = what
        super().__init__(
            f"{describe(driver, plugin)} crashed its worker: {what}; the host is unaffected, "
            f"and a later call starts a fresh worker",
            driver=driver,
            plugin=plugin,
        )


class WorkerLimitError(WorkerCrashedError):
    """The isolated worker went over one of its resource limits (``--worker-memory``...) and was stopped."""

    def __init__(self, driver: str, plugin: PluginInfo | None, limit: str) -> None:
        self.limit = limit
        self.what = f"exceeded {limit}"
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)} exceeded {limit}; its worker was stopped (the host is unaffected, "
            f"and a later call starts a fresh worker; raise the limit if the plugin needs more)",
            driver=driver,
            plugin=plugin,
        )


class ProtocolError(WorkerCrashedError):
    """The isolated worker sent something the protocol does not allow; it was stopped."""

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        self.what = f"broke the protocol: {problem}"
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)}: its worker broke the protocol ({problem}) and was stopped; "
            f"the host is unaffected, and a later call starts a fresh worker",
            driver=driver,
            plugin=plugin,
        )


class WorkerUnavailableError(WorkerCrashedError):
    """The isolated worker crashed a moment ago: calls fail at once, starting nothing, until its restart is due."""

    def __init__(self, driver: str, plugin: PluginInfo | None, last_exit: str, retry_in: float) -> None:
        self.last_exit = last_exit
        self.retry_in = retry_in
        self.what = last_exit
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)} is not running: its worker crashed ({last_exit}); "
            f"the next restart is in {retry_in:.1f} s",
            driver=driver,
            plugin=plugin,
        )


class CircuitOpenError(WorkerUnavailableError):
    """The isolated worker crashed too often: it is not restarted until the window passes, a swap or a reload."""

    def __init__(self, driver: str, plugin: PluginInfo | None, crashes: int, window: float, retry_in: float) -> None:
        self.crashes = crashes
        self.window = window
        self.last_exit = self.what = f"{crashes} crashes in {window:g} s"
        self.retry_in = retry_in
        GreeterError.__init__(
            self,
            f"circuit open for {describe(driver, plugin)} after {crashes} crashes in {window:g} s; "
            f"calls fail at once for {retry_in:.1f} s more, or until a swap or a reload",
            driver=driver,
            plugin=plugin,
        )


class PluginTimeoutError(GreeterError):
    """A call to an isolated plugin did not answer in time; its worker was killed."""

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

    def __init__(self, driver: str, plugin: PluginInfo | None, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{describe(driver, plugin)}: worker handshake refused: {problem}",
            driver=driver,
            plugin=plugin,
        )


class HostResourceError(GreeterError):
    """greeter itself ran short of a resource (file descriptors...) while serving a plugin: not the plugin's fault."""

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

    def __init__(self, driver: str, plugin: PluginInfo | None, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        distribution = plugin.distribution if plugin else "the plugin"
        super().__init__(
            f"{describe(driver, plugin)} failed verification: {path}: {problem}; refusing to "
            f"load it (reinstall {distribution} from a trusted source)",
            driver=driver,
            plugin=plugin,
        )


class LockMismatchError(IntegrityError):
    """The plugin's distribution differs from the lock file: not locked, another version, or a file changed."""

    def __init__(self, driver: str, plugin: PluginInfo | None, lock_file: str, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        self.lock_file = lock_file
        where = f"{path}: " if path else ""
        GreeterError.__init__(
            self,
            f"{describe(driver, plugin)} does not match the lock file {lock_file}: {where}{problem}; refusing to "
            f"load it (review the change, then run greeter lock again, or reinstall the locked version)",
            driver=driver,
            plugin=plugin,
        )


class PluginDisabledError(GreeterError):
    """The plugin is installed, but an allow-list or deny-list setting says never to load it."""

    exit_code = 2

    def __init__(self, driver: str, plugin: PluginInfo | None, setting: str, why: str) -> None:
        self.setting = setting
        self.why = why
        super().__init__(f"{describe(driver, plugin)} is disabled by {setting}: {why}", driver=driver, plugin=plugin)


class ReloadUnsupportedError(GreeterError):
    """A reload was asked of `greeter run` while it loads plugins in its own process."""

    exit_code = 2

    def __init__(self, driver: str) -> None:
        super().__init__(
            f"cannot reload plugin {driver!r}: in-process reload cannot load new code: stevedore caches entry "
            f"points per process and Python cannot unload a module cleanly; run with --isolation process, "
            f"or restart greeter run",
            driver=driver,
        )


class RuntimeStoppedError(GreeterError):
    """A swap arrived while ``greeter run`` was shutting down."""

    def __init__(self) -> None:
        super().__init__("greeter run is stopping; no more swaps")


# -- errors as data: how they cross a process border -------------------------------------------

#: Longest text accepted in one field from the other side; longer text is cut, saying so.
MAX_TEXT = 8192


def to_data(error: GreeterError) -> dict[str, object]:
    """*error* as plain JSON data: its kind (the class name) and the arguments of its constructor.

    Each class keeps every argument of its constructor as an attribute of the
    same name (``self.path = path``), and annotates it with one of the types
    that can cross (:data:`_DECODE`): that is what lets it be rebuilt.
    """
    kind = type(error).__name__
    if _kinds().get(kind) is not type(error):
        raise TypeError(f"{kind} is not one of greeter_core.errors' classes and cannot cross a process border")
    fields = {}
    for name, annotation in _fields(type(error)):
        if name != "message" and name not in error.__dict__:
            raise TypeError(f"{kind} does not keep its argument {name!r} (self.{name} = {name}): it cannot be rebuilt")
        value = error.message if name == "message" else error.__dict__[name]
        fields[name] = _ENCODE.get(annotation, _same)(value)
    return {"kind": kind, "fields": fields}


def from_data(data: object, **overrides: object) -> GreeterError:
    """Rebuild an error from :func:`to_data`'s output, checking every field; ``ValueError`` for anything else.

    Only this module's classes are built, only through their constructors,
    only from fields of the types those declare: the other side names no
    code, it sends data. Text is kept printable and at most :data:`MAX_TEXT`
    long. *overrides* (e.g. the ``driver`` and ``plugin`` the receiver
    knows) replace the fields of the same name.
    """
    if not isinstance(data, dict) or set(data) != {"kind", "fields"}:
        raise ValueError("an error must be an object with 'kind' and 'fields'")
    kind, fields = data["kind"], data["fields"]
    cls = _kinds().get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown error kind {str(kind)[:80]!r}")
    expected = _fields(cls)
    if not isinstance(fields, dict) or set(fields) != {name for name, _ in expected}:
        raise ValueError(f"{kind} needs exactly the fields {', '.join(name for name, _ in expected) or '(none)'}")
    arguments: dict[str, Any] = {}
    for name, annotation in expected:
        if name in overrides:
            arguments[name] = overrides[name]
            continue
        try:
            arguments[name] = _DECODE[annotation](fields[name])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{kind}.{name}: {error}") from None
    return cls(**arguments)


def _kinds() -> dict[str, type[GreeterError]]:
    """The fixed table of what may be rebuilt: every GreeterError class this module exports, by name."""
    module = globals()
    return {
        name: module[name]
        for name in __all__
        if isinstance(module[name], type) and issubclass(module[name], GreeterError)
    }


def _fields(cls: type[GreeterError]) -> list[tuple[str, str]]:
    """The constructor's parameters (name, annotation), which are also the error's attributes."""
    init = cls.__init__
    code = init.__code__
    names = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    annotations = init.__annotations__
    fields = [(name, str(annotations.get(name))) for name in names]
    for name, annotation in fields:
        if annotation not in _DECODE:
            raise TypeError(f"{cls.__name__}.{name}: a {annotation} cannot cross a process border")
    return fields


def _same(value: object) -> object:
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        value = f"{value[:MAX_TEXT]}... [{len(value) - MAX_TEXT} more characters]"
    return printable(value)


def _optional(decode: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else decode(value)


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise TypeError(f"expected a finite number, got {value!r:.40}")
    return float(value)  # type: ignore[arg-type]


def _plugin(value: object) -> PluginInfo:
    if not isinstance(value, dict) or set(value) != set(PluginInfo._fields):
        raise TypeError(f"expected a plugin record with {', '.join(PluginInfo._fields)}")
    return PluginInfo(**{name: _text(value[name]) for name in PluginInfo._fields})


def _list(decode: Callable[[object], Any]) -> Callable[[object], Any]:
    def decode_list(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(map(decode, value))

    return decode_list


#: Constructor annotation -> how a value of that type is read from data. Anything else cannot cross.
_DECODE: dict[str, Callable[[object], Any]] = {
    "str": _text,
    "str | None": _optional(_text),
    "int": _int,
    "float": _float,
    "PluginInfo | None": _optional(_plugin),
    "Iterable[str]": _list(_text),
    "Iterable[PluginInfo]": _list(_plugin),
}

_ENCODE: dict[str, Callable[[Any], object]] = {
    "PluginInfo | None": lambda plugin: None if plugin is None else plugin._asdict(),
    "Iterable[str]": list,
    "Iterable[PluginInfo]": lambda plugins: [plugin._asdict() for plugin in plugins],
}
