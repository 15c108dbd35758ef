"""The record of one installed plugin: plain data, below everything that names a plugin.

:func:`~greeter_core.discovery.discover` makes these records from package
metadata (and re-exports the class); errors carry one to name the plugin and
its distribution, and rebuild one when an error crosses from a worker. It
lives at the bottom so that those lower layers never import discovery.
"""

from typing import NamedTuple

__all__ = ["PluginInfo"]


class PluginInfo(NamedTuple):
    """One installed plugin, as its distribution's metadata declares it."""

    name: str
    """The entry-point name: what ``--driver`` takes."""

    distribution: str
    """The distribution that registers it, e.g. ``greeter-english``."""

    version: str
    """That distribution's version."""

    target: str
    """The object the entry point names, ``module:attr``."""

    environment: str = ""
    """The environment of its own it lives in (``greeter install``: the build's directory); "" for the host's."""

    @property
    def where(self) -> str:
        """Where it lives, as ``greeter list`` shows it: ``host``, or its environment's directory."""
        return self.environment or "host"

    def as_dict(self) -> dict[str, str]:
        return {**self._asdict(), "where": self.where}
