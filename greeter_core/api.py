"""The plugin API: what a plugin author imports, and nothing else.

This module is on the one-shot greeting path and is imported by every plugin,
so it stays cheap: no dataclasses (they pull in ``inspect``), no metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple

__all__ = ["API_VERSION", "DEFAULT_NAME", "GROUP", "Greeter", "HostContext"]

#: The entry-point group a plugin registers in.
GROUP = "greeter.plugins"

#: Version of the plugin API. Bumped only when a plugin written for the new
#: version would not work on an older core; plugins declare what they need in
#: ``Greeter.api_version`` and the core refuses a plugin newer than itself.
API_VERSION = 1

#: Who gets greeted when nobody is named.
DEFAULT_NAME = "Universe"


class HostContext(NamedTuple):
    """What the host hands a plugin when it builds it: the host->plugin channel.

    Immutable, so a plugin cannot change what the next plugin receives.
    """

    driver: str
    """The entry-point name the plugin was loaded under."""

    logger: logging.Logger
    """A logger named ``greeter.plugins.<driver>``; its records reach the host's stderr."""

    config: Mapping[str, str]
    """Read-only options the user passed with ``--option key=value``."""

    api_version: int = API_VERSION
    """The plugin API version of the host that built this context."""

    @classmethod
    def create(cls, driver: str, config: Mapping[str, str] | None = None) -> HostContext:
        """Build the context the core passes to the plugin named *driver*."""
        return cls(
            driver=driver,
            logger=logging.getLogger(f"{GROUP}.{driver}"),
            config=MappingProxyType(dict(config or {})),
        )


class Greeter:
    """Base class for greeter plugins.

    Subclass it, implement :meth:`greet`, and register the class in the
    ``greeter.plugins`` entry-point group. The core constructs it as
    ``cls(context=HostContext(...))``.
    """

    #: Human-readable name of the language, shown by ``greeter list``.
    language: str = ""

    #: The plugin API version this plugin was written for.
    api_version: int = API_VERSION

    def __init__(self, context: HostContext) -> None:
        self.context = context

    def greet(self, name: str) -> str:
        """Return the greeting for *name* (an empty *name* means the default greetee)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the plugin holds; the host calls it when it drops the plugin."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
