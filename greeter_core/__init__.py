"""greeter: say hello through plugins found by entry point and loaded by stevedore.

The public API is re-exported here and imported lazily, so that
``import greeter_core`` costs next to nothing and the one-shot CLI pays only
for what it uses (see the README's Performance section).
"""

import sys

# Not typing.TYPE_CHECKING: importing typing alone would cost more than the
# rest of this module (the start-up test in tests/test_startup.py guards it).
TYPE_CHECKING = False

__version__ = "1.0.0"

__all__ = [
    "API_VERSION",
    "DEFAULT_NAME",
    "GROUP",
    "DuplicateDriverError",
    "Greeter",
    "GreeterError",
    "HandshakeError",
    "HostContext",
    "IntegrityError",
    "NoSuchDriverError",
    "PluginAPIVersionError",
    "PluginCallError",
    "PluginContractError",
    "PluginInfo",
    "PluginLoadError",
    "PluginTimeoutError",
    "UsageError",
    "WorkerCrashedError",
    "call_greet",
    "discover",
    "find",
    "load",
    "validate",
]

_HOMES = {
    "API_VERSION": "api",
    "DEFAULT_NAME": "api",
    "GROUP": "api",
    "Greeter": "api",
    "HostContext": "api",
    "PluginInfo": "discovery",
    "discover": "discovery",
    "find": "discovery",
    "call_greet": "loading",
    "load": "loading",
    "validate": "loading",
}

if TYPE_CHECKING:
    from .api import API_VERSION, DEFAULT_NAME, GROUP, Greeter, HostContext
    from .discovery import PluginInfo, discover, find
    from .errors import (
        DuplicateDriverError,
        GreeterError,
        HandshakeError,
        IntegrityError,
        NoSuchDriverError,
        PluginAPIVersionError,
        PluginCallError,
        PluginContractError,
        PluginLoadError,
        PluginTimeoutError,
        UsageError,
        WorkerCrashedError,
    )
    from .loading import call_greet, load, validate


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = f"{__name__}.{_HOMES.get(name, 'errors')}"
    __import__(module)  # not importlib: importing it costs more than this whole package
    value = getattr(sys.modules[module], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
