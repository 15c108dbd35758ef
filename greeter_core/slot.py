"""The driver slot of ``greeter run``: the one plugin that greets next, swapped atomically, and its counters.

The Go original kept one ``greeter`` variable that an HTTP handler overwrote
while the loop read it. Here that variable is :class:`DriverSlot`: a new
plugin is found and built while the loop goes on greeting (outside the lock
the loop takes), then published under that short lock, so a greeting never
sees a half-built plugin; swaps are serialized by a second lock, so the
counts in ``/status`` are exact. A replaced plugin is closed only once the
loop has stopped using it.

The loop (``loop.py``), the control plane (``control.py``) and SIGHUP all
act on a slot; it imports none of them.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .discovery import PluginInfo, discover, find
from .drive import LoadOptions, load
from .errors import GreeterError, ReloadUnsupportedError, RuntimeStoppedError, UsageError
from .loaded import LoadedPlugin

__all__ = ["MAX_NAME_LENGTH", "DriverSlot", "Swap", "check_name", "log"]

#: The log of ``greeter run`` (the slot and the loop): a name users filter on, kept stable.
log = logging.getLogger("greeter_core.runtime")

#: Longest driver name accepted from a request or a driver file.
MAX_NAME_LENGTH = 128


class Swap(NamedTuple):
    """The outcome of a swap or reload: what was replaced by what."""

    old: PluginInfo
    new: PluginInfo
    swaps: int
    reloads: int

    def as_dict(self) -> dict[str, object]:
        return {"old": self.old.as_dict(), "new": self.new.as_dict(), "swaps": self.swaps, "reloads": self.reloads}


class _Active:
    """One loaded plugin in the slot; ``retired`` once a swap replaced it."""

    __slots__ = ("loaded", "retired")

    def __init__(self, loaded: LoadedPlugin) -> None:
        self.loaded = loaded
        self.retired = False


def check_name(name: str) -> str:
    """A driver name as the slot accepts it from outside: non-empty, one line, bounded."""
    if not name or len(name) > MAX_NAME_LENGTH or "\n" in name or "\r" in name:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(f"not a driver name: {shown!r} (expected 1 to {MAX_NAME_LENGTH} characters on one line)")
    return name


class DriverSlot:
    """The driver slot and the counters that the loop, the control plane and SIGHUP share.

    Only names registered in ``greeter.plugins`` are ever loaded: every swap
    looks the name up with a fresh :func:`~greeter_core.discovery.find` and
    loads exactly the record it returns.
    """

    def __init__(self, options: LoadOptions | None = None, loader: Callable[..., LoadedPlugin] = load) -> None:
        self.options = options or LoadOptions()
        self._loader = loader
        self._lock = threading.Lock()  # guards the fields below; held only for a few assignments
        self._swap_lock = threading.Lock()  # serializes swaps, reloads and close
        self._current: _Active | None = None
        self._borrowed: _Active | None = None
        self._closed = False
        self._started = time.monotonic()
        self.greetings = self.errors = self.swaps = self.reloads = 0
        self.last_error: str | None = None

    def start(self, driver: str) -> PluginInfo:
        """Load the first driver; its errors are the caller's (the CLI exits with them)."""
        with self._swap_lock:
            if self._current is not None:
                raise RuntimeError("the slot is already started")
            importlib.invalidate_caches()
            active = self._build(find(driver))
            with self._lock:
                self._current = active
        return active.loaded.plugin

    @property
    def current(self) -> PluginInfo:
        """The record of the plugin that greets next."""
        return self._active().loaded.plugin

    def swap(self, driver: str) -> Swap:
        """Switch to *driver*; on any failure keep the current plugin and raise the reason."""
        return self._switch(check_name(driver), reload=False)

    def reload(self) -> Swap:
        """Switch to a freshly loaded instance of the current driver (new code: process isolation only)."""
        if self.options.isolation != "process":
            raise ReloadUnsupportedError(self.current.name)
        return self._switch(None, reload=True)

    def _switch(self, driver: str | None, *, reload: bool) -> Swap:
        try:
            with self._swap_lock:
                if self._closed:
                    raise RuntimeStoppedError
                importlib.invalidate_caches()  # see files installed or removed since the last look
                info = find(driver or self.current.name)
                if not reload and info == self.current:
                    # Already greeting with exactly that plugin: nothing to switch (a reload is the way
                    # to a new instance), and no swap to count.
                    log.info("already greeting with %s (%s %s); nothing to switch", *info[:3])
                    return Swap(info, info, self.swaps, self.reloads)
                return self._publish(self._build(info), reload=reload)
        except GreeterError as error:
            what = f"reload of {self.current.name!r}" if reload else f"switch to {driver!r}"
            log.warning("%s refused: %s; still greeting with %r", what, error, self.current.name)
            raise

    def _build(self, info: PluginInfo) -> _Active:
        return _Active(self._loader(info, **self.options._asdict()))

    def _publish(self, new: _Active, *, reload: bool) -> Swap:
        with self._lock:
            old = self._active()
            self._current = new
            if reload:
                self.reloads += 1
            else:
                self.swaps += 1
            old.retired = True
            close_now = old is not self._borrowed
            result = Swap(old.loaded.plugin, new.loaded.plugin, self.swaps, self.reloads)
        if close_now:
            old.loaded.close()
        verb = "reloaded" if reload else "switched"
        log.info(
            "%s driver: %s -> %s (%s %s)",
            verb,
            result.old.name,
            result.new.name,
            result.new.distribution,
            result.new.version,
        )
        return result

    def _active(self) -> _Active:
        active = self._current
        if active is None:
            raise RuntimeError("the slot is not started")
        return active

    @contextmanager
    def borrowed(self) -> Iterator[LoadedPlugin]:
        """The current plugin, kept open until the block ends even if a swap replaces it.

        The greeting loop is the only borrower.
        """
        with self._lock:
            active = self._borrowed = self._active()
        try:
            yield active.loaded
        finally:
            with self._lock:
                self._borrowed = None
                close_now = active.retired and not self._closed
            if close_now:
                active.loaded.close()

    def record_greeting(self) -> None:
        with self._lock:
            self.greetings += 1

    def record_error(self, error: GreeterError) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = str(error)

    def status(self) -> dict[str, object]:
        """What ``GET /status`` shows: the current driver, the counters, the worker if any."""
        with self._lock:
            active = self._active()
            plugin = active.loaded.plugin
            status: dict[str, object] = {
                "driver": plugin.name,
                "distribution": plugin.distribution,
                "version": plugin.version,
                "isolation": self.options.isolation,
                "greetings": self.greetings,
                "errors": self.errors,
                "swaps": self.swaps,
                "reloads": self.reloads,
                "last_error": self.last_error,
                "uptime": round(time.monotonic() - self._started, 3),
            }
        status["worker"] = active.loaded.status()
        return status

    def plugins(self) -> list[dict[str, str]]:
        """Every installed plugin, fresh: the records of ``greeter list --json``."""
        importlib.invalidate_caches()
        return [plugin.as_dict() for plugin in discover()]

    def close(self) -> None:
        """Refuse further swaps and close every plugin still held; call it after the loop stopped."""
        with self._swap_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                held = {id(a): a for a in (self._current, self._borrowed) if a is not None}
            for active in held.values():
                active.loaded.close()

    def summary(self) -> str:
        with self._lock:
            counts = [(self.greetings, "greeting"), (self.errors, "error"), (self.swaps, "swap")]
            counts.append((self.reloads, "reload"))
        return ", ".join(f"{count} {noun}{'' if count == 1 else 's'}" for count, noun in counts)
