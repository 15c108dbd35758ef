"""greeter: say hello through plugins found by entry point and loaded by stevedore.

The public API is the ``__all__`` of six small modules, re-exported here and
imported on first use, so that ``import greeter_core`` costs next to nothing
and the one-shot CLI pays only for what it uses. Each name is listed once, in
the module that defines it:

- :mod:`~greeter_core.api`: what a plugin author imports (``Greeter``, ``HostContext``...)
- :mod:`~greeter_core.errors`: ``GreeterError`` and one subclass per failure
- :mod:`~greeter_core.discovery`: ``discover()``, ``find()``, ``PluginInfo`` (no plugin imported)
- :mod:`~greeter_core.loaded`: ``LoadedPlugin``, what ``load()`` returns
- :mod:`~greeter_core.drive`: ``load()``, in this process or in a worker
- :mod:`~greeter_core.installing`: ``install()``, ``uninstall()``: a plugin in an environment of its own
"""

import sys

# Not typing.TYPE_CHECKING: importing typing alone would cost more than the
# rest of this module (the start-up test in tests/test_startup.py guards it).
TYPE_CHECKING = False

__version__ = "1.0.0"

#: The modules whose ``__all__`` make up the public API, in the order names are looked up.
_PUBLIC = ("api", "errors", "discovery", "loaded", "drive", "installing")

if TYPE_CHECKING:
    from types import ModuleType

    from .api import *
    from .discovery import *
    from .drive import *
    from .errors import *
    from .installing import *
    from .loaded import *


def _module(name: str) -> "ModuleType":
    module = f"{__name__}.{name}"
    __import__(module)  # not importlib: importing it costs more than this whole package
    return sys.modules[module]


def __getattr__(name: str) -> object:
    if name == "__all__":
        value: object = [public for module in _PUBLIC for public in _module(module).__all__]
    else:
        for module in map(_module, _PUBLIC):
            if name in module.__all__:
                value = getattr(module, name)
                break
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})  # type: ignore[misc]
