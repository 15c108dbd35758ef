"""What the host holds once a plugin is loaded: one surface, whether it runs here or in a worker.

flake8's ``LoadedPlugin(plugin, obj)`` is the model: the loaded object
carries the record it was loaded from, so a message about it never needs a
rescan of installed metadata. The CLI, ``greeter check`` and the greeting
loop use only this surface and never ask which kind they hold:
:class:`~greeter_core.loading.InProcessPlugin` or
:class:`~greeter_core.worker.client.WorkerPlugin`.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .discovery import PluginInfo

__all__ = ["LoadedPlugin"]


class LoadedPlugin(abc.ABC):
    """A plugin that passed loading and the contract check, ready to greet.

    ``greet()`` never lets a plugin's failure escape as anything but a
    :class:`~greeter_core.errors.GreeterError` naming the plugin; ``close()``
    never raises for one. Use it as a context manager to close it.
    """

    #: The isolation mode it runs under: ``"none"`` (this process) or ``"process"`` (a worker).
    isolation: str

    #: The entry-point name it was loaded under.
    driver: str

    #: The plugin's ``language`` attribute, read once when it was loaded ("" if it has none).
    language: str

    @property
    @abc.abstractmethod
    def plugin(self) -> PluginInfo:
        """The record of the code that runs: name, distribution, version, target."""

    @abc.abstractmethod
    def greet(self, name: str) -> str:
        """The greeting for *name*, a plain ``str``; a plugin failure is a ``GreeterError``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the plugin (its ``close()``, or its worker); safe to call twice."""

    def retire(self) -> None:
        """Close it once it was replaced and nobody uses it any more; by default, :meth:`close`.

        The greeting loop calls it when it gives back a plugin a swap replaced;
        a worker-backed plugin closes in the background (its worker's polite
        stop takes milliseconds), so the new plugin greets at once.
        """
        self.close()

    def status(self) -> dict[str, object] | None:
        """What ``/status`` shows of how it runs: the worker's state, or None in process."""
        return None

    def __enter__(self) -> LoadedPlugin:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.driver!r} isolation={self.isolation!r}>"
