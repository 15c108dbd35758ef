"""The Greeter contract, checked at the border between the host and a plugin object.

Go's type assertion (``sym.(Greeter)``) is :func:`validate`: it runs once,
when a plugin is built. What may come back out of ``greet()`` is
:func:`greeting`: it runs on every call. Both run wherever the plugin runs,
in the host or in a worker, through :mod:`greeter_core.loading`.

Everything read from a plugin object is untrusted: an attribute may be a
property that raises (``KeyboardInterrupt`` included), a class may have a
metaclass that raises, a method may return a ``str`` subclass whose own
methods raise, or an object whose ``__class__`` claims to be ``str``. So
types are checked on ``type(x)``, never through ``isinstance`` (which asks
the object), values are copied into plain ``str``/``int`` without calling
any of their methods, and text is made one printable line
(:func:`~greeter_core.printable.printable`). Each surprise is a
:class:`Violation`, which the caller turns into a
:class:`~greeter_core.errors.PluginContractError` naming the plugin and its
distribution (the caller knows them; this module does not).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any, cast

from .api import API_VERSION, Greeter
from .errors import PluginAPIVersionError, PluginContractError, one_line
from .guard import is_user_stop
from .printable import printable

if TYPE_CHECKING:
    from .discovery import PluginInfo

__all__ = ["Violation", "closer", "greeting", "validate"]


class Violation(Exception):
    """The plugin object breaks the contract; :meth:`error` names the plugin it came from."""

    def __init__(self, problem: str, *, wanted_api: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.wanted_api = wanted_api

    def error(self, driver: str, plugin: PluginInfo | None) -> PluginContractError:
        """The error to raise for this violation by the plugin *driver* (from *plugin*)."""
        if self.wanted_api is not None:
            return PluginAPIVersionError(driver, plugin, self.wanted_api, API_VERSION)
        return PluginContractError(driver, plugin, self.problem)


def validate(obj: object) -> str:
    """Check that *obj* is a usable Greeter, as Go's type assertion would; return its ``language``."""
    name = _type_name(obj)
    greet = _read(obj, "greet")
    if greet is None:
        raise Violation(f"{name} has no greet() method")
    if not callable(greet):
        raise Violation(f"{name}.greet is not callable")
    if _read(type(obj), "greet") is Greeter.greet:
        raise Violation(f"{name} does not implement greet()")
    wanted = _read(obj, "api_version", API_VERSION)
    if not issubclass(type(wanted), int) or issubclass(type(wanted), bool):
        raise Violation(f"api_version must be an int, not {_type_name(wanted)}")
    wanted = int.__int__(wanted)  # a plain int: an int subclass may compare as it likes
    if wanted.bit_length() > 63:  # no API version: and past 4300 digits even str() of it raises
        raise Violation(f"api_version must be a plugin API version, not an int of {wanted.bit_length()} bits")
    if wanted > API_VERSION:
        raise Violation(f"needs plugin API {wanted} > {API_VERSION}", wanted_api=wanted)
    language = _read(obj, "language", "")
    if not issubclass(type(language), str):
        raise Violation(f"language must be a str, not {_type_name(language)}")
    return printable(str.join("", (language,)))


def closer(obj: object) -> Callable[[], object] | None:
    """The plugin's ``close`` to call when the host drops it; None when there is nothing to call.

    Read once, when the plugin is built: the base class's empty ``close()``
    (what most plugins have) then costs the host nothing, not even a thread.
    """
    close = _read(obj, "close")
    if close is None or (type(close) is MethodType and close.__func__ is Greeter.close):
        return None
    if not callable(close):
        raise Violation(f"{_type_name(obj)}.close is not callable")
    return cast("Callable[[], object]", close)


def greeting(text: object) -> str:
    """What ``greet()`` returned, as a plain, printable, one-line ``str``.

    A ``str`` subclass is copied into a plain ``str`` without calling any of
    its methods, so a plugin cannot hand the host an object that raises
    later; control characters, line separators and lone surrogates are
    escaped, so a greeting is one line that any UTF-8 stream can carry.
    """
    if not issubclass(type(text), str):
        raise Violation(f"greet() returned {_type_name(text)}, not str")
    return printable(str.join("", (cast(str, text),)))


def _read(obj: object, attribute: str, default: Any = None) -> Any:
    """``getattr(obj, attribute, default)``, where anything the plugin raises breaks the contract."""
    try:
        return getattr(obj, attribute, default)
    except BaseException as error:
        if is_user_stop(error):
            raise
        raise Violation(f"reading {attribute} raised {one_line(error)}") from error


def _type_name(obj: object) -> str:
    """The name of *obj*'s class, read from the type itself: a metaclass cannot intercept it."""
    name = type.__dict__["__name__"].__get__(type(obj))
    return name if type(name) is str else "object"
