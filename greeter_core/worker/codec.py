"""Errors as data across the worker border, and the host's one way of reading a worker's JSON.

An error crosses as ``{"kind": <class name>, "fields": {...}}``: the fields
its class declares in ``wire_fields``, each of a type this module knows how
to read (:data:`_READ`). The host builds only :mod:`greeter_core.errors`'
own classes, only through their constructors: the other side names no code,
it sends data.

Everything a worker sends is hostile input. :func:`read_error` is how the
host reads an error frame, and :class:`~greeter_core.errors.ProtocolError`
is the only exception it raises, whatever the bytes (deep nesting, huge
numbers, invalid UTF-8, wrong types, unknown kinds, a frame cut short).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from .. import errors
from ..errors import GreeterError, ProtocolError
from ..printable import printable
from ..record import PluginInfo

__all__ = [
    "KINDS",
    "MAX_DEPTH",
    "MAX_JSON",
    "MAX_TEXT",
    "SENDABLE_ERRORS",
    "decode_json",
    "from_data",
    "read_error",
    "to_data",
]

#: Largest JSON frame accepted: a hello or an error has no business being bigger.
MAX_JSON = 1024 * 1024

#: Deepest nesting of arrays and objects accepted in a JSON frame (ours nest 3 deep).
MAX_DEPTH = 32

#: Longest text accepted in one field from the other side; longer text is cut, saying so.
MAX_TEXT = 8192

#: Largest magnitude of an integer field: a plugin API version, a count.
_MAX_INT = 2**63


def _classes(cls: type[GreeterError]) -> Iterator[type[GreeterError]]:
    yield cls
    for subclass in cls.__subclasses__():
        yield from _classes(subclass)


#: What may be rebuilt, by kind: the error classes of greeter_core.errors (never a subclass defined elsewhere).
KINDS: dict[str, type[GreeterError]] = {
    cls.__name__: cls for cls in _classes(GreeterError) if cls.__module__ == errors.__name__
}

#: The kinds a worker may report (``sendable`` on the class). Anything else from a worker is a
#: protocol error: a plugin cannot make the host say "usage error", exit 2.
SENDABLE_ERRORS = frozenset(name for name, cls in KINDS.items() if cls.sendable)


def to_data(error: GreeterError) -> dict[str, object]:
    """*error* as plain JSON data: its kind (the class name) and its declared ``wire_fields``."""
    cls = type(error)
    kind = cls.__name__
    if KINDS.get(kind) is not cls:
        raise TypeError(f"{kind} is not one of greeter_core.errors' classes and cannot cross a process border")
    fields = {}
    for name, wire_type in _fields(cls).items():
        if name != "message" and name not in error.__dict__:
            raise TypeError(f"{kind} does not keep its argument {name!r} (self.{name} = {name}): it cannot be rebuilt")
        value = error.message if name == "message" else error.__dict__[name]
        fields[name] = _WRITE.get(wire_type, _same)(value)
    return {"kind": kind, "fields": fields}


def from_data(data: object, **overrides: object) -> GreeterError:
    """Rebuild an error from :func:`to_data`'s output, checking every field; ``ValueError`` for anything else.

    Text is kept printable and at most :data:`MAX_TEXT` long. *overrides*
    (e.g. the ``driver`` and ``plugin`` the receiver knows) replace the
    fields of the same name.
    """
    if not isinstance(data, dict) or set(data) != {"kind", "fields"}:
        raise ValueError("an error must be an object with 'kind' and 'fields'")
    kind, fields = data["kind"], data["fields"]
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown error kind {_shown(kind)}")
    expected = _fields(cls)
    if not isinstance(fields, dict) or set(fields) != set(expected):
        raise ValueError(f"{kind} needs exactly the fields {', '.join(expected) or '(none)'}")
    arguments: dict[str, Any] = {}
    for name, wire_type in expected.items():
        if name in overrides:
            arguments[name] = overrides[name]
            continue
        try:
            arguments[name] = _READ[wire_type](fields[name])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{kind}.{name}: {error}") from None
    try:
        return cls(**arguments)
    except Exception as error:  # a constructor that cannot take these values: still the data's fault
        raise ValueError(f"{kind} cannot be built from these fields ({type(error).__name__})") from None


def read_error(payload: bytes, *, driver: str, plugin: PluginInfo) -> GreeterError:
    """The error a worker running *plugin* reported in an error frame, naming *this* plugin.

    :class:`~greeter_core.errors.ProtocolError` for anything else: not
    JSON, too big, too deep, not one of the kinds a worker may send
    (:data:`SENDABLE_ERRORS`), a field of the wrong type. No other
    exception leaves here: the host's loop must never see one.
    """
    try:
        data = decode_json(payload)
        kind = data.get("kind") if isinstance(data, dict) else None
        if not isinstance(kind, str) or kind not in SENDABLE_ERRORS:
            raise ValueError(f"a worker may not report {_shown(kind)}")
        return from_data(data, driver=driver, plugin=plugin)
    except Exception as error:  # whatever a hostile frame makes the decoder raise is that worker's fault
        problem = str(error) if isinstance(error, ValueError) else type(error).__name__
        raise ProtocolError(driver, plugin, f"a malformed error: {printable(problem[:300])}") from None


def decode_json(payload: bytes) -> Any:
    """A JSON frame's payload; ``ValueError`` (only) if it is not one of ours: not UTF-8 JSON, too big, too deep."""
    if len(payload) > MAX_JSON:
        raise ValueError(f"a JSON frame of {len(payload)} bytes is over the {MAX_JSON}-byte limit")
    try:
        # UTF-8 only (json.loads would guess UTF-16 or -32 from bytes); lone surrogates pass, as json.loads lets them.
        value = json.loads(payload.decode("utf-8", "surrogatepass"))
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # not JSON, not UTF-8, an integer of more than 4300 digits
        raise ValueError(f"not JSON: {str(error)[:200]}") from None
    except Exception as error:  # nothing else is expected: still the sender's fault, never the reader's crash
        raise ValueError(f"not JSON ({type(error).__name__})") from None
    _check_depth(value)
    return value


def _check_depth(value: object) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, without recursion (a deep value could exhaust the stack)."""
    level: list[object] = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            if isinstance(item, (list, dict))
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (list, dict))
        ]
        if not level:
            return
    raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")


def _fields(cls: type[GreeterError]) -> dict[str, object]:
    """The fields *cls* declares, which are also its constructor's parameters and its attributes."""
    fields = dict(cls.wire_fields)
    for name, wire_type in fields.items():
        if wire_type not in _READ:
            raise TypeError(f"{cls.__name__}.{name}: a {wire_type} cannot cross a process border")
    return fields


def _shown(value: object) -> str:
    return repr(str(value)[:80]) if isinstance(value, str) else f"a {type(value).__name__}"


def _same(value: object) -> object:
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        value = f"{value[:MAX_TEXT]}... [{len(value) - MAX_TEXT} more characters]"
    return printable(value)


def _optional(read: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else read(value)


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if abs(value) >= _MAX_INT:
        raise ValueError("an integer out of range")
    return value


def _float(value: object) -> float:
    if type(value) is int:
        return float(_int(value))
    if type(value) is not float or not math.isfinite(value):
        raise TypeError(f"expected a finite number, got {_shown(value) if type(value) is not float else value}")
    return value


def _plugin(value: object) -> PluginInfo:
    if not isinstance(value, dict) or set(value) != set(PluginInfo._fields):
        raise TypeError(f"expected a plugin record with {', '.join(PluginInfo._fields)}")
    return PluginInfo(**{name: _text(value[name]) for name in PluginInfo._fields})


def _list(read: Callable[[object], Any]) -> Callable[[object], Any]:
    def read_list(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(map(read, value))

    return read_list


#: A declared wire type -> how a value of that type is read from data. Anything else cannot cross.
_READ: dict[object, Callable[[object], Any]] = {
    str: _text,
    str | None: _optional(_text),
    int: _int,
    float: _float,
    PluginInfo | None: _optional(_plugin),
    tuple[str, ...]: _list(_text),
    tuple[PluginInfo, ...]: _list(_plugin),
}

#: A declared wire type -> how a value of that type is written as data (others are written as they are).
_WRITE: dict[object, Callable[[Any], object]] = {
    PluginInfo | None: lambda plugin: None if plugin is None else plugin._asdict(),
    tuple[str, ...]: list,
    tuple[PluginInfo, ...]: lambda plugins: [plugin._asdict() for plugin in plugins],
}
