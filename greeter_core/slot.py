"""The driver slot of ``greeter run``: the one plugin that greets next, swapped atomically, and its counters.

The Go original kept one ``greeter`` variable that an HTTP handler overwrote
while the loop read it. Here that variable is :class:`DriverSlot`: a new
plugin is found and built while the loop goes on greeting (outside the lock
the loop takes), then published under that short lock, so a greeting never
sees a half-built plugin; swaps are serialized by a second lock, so the
counts in ``/status`` are exact. A new plugin that fails to load leaves the
old one greeting, and the swap raises the reason. A replaced plugin is closed
only once the loop has stopped using it.

Where and how each plugin is loaded (in process within ``load_timeout``
seconds, or forked into a worker that must answer first) is
:class:`~greeter_core.drive.RunLoader`'s choice, not the slot's: a load given
up on refuses the swap (the old plugin keeps greeting) and never holds the
swap lock for longer. Closing a plugin is bounded the same way
(:attr:`~greeter_core.loading.InProcessPlugin.close_timeout`).

The loop (``loop.py``), the control plane (``control.py``) and SIGHUP all
act on a slot; it imports none of them. Each borrow is one ``greet()`` call:
the slot times it and counts its outcome per driver (``stats.py``), the
numbers behind ``/status`` and ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .catalog import Catalog
from .discovery import PluginInfo
from .drive import LoadOptions, RunLoader, load, log
from .errors import GreeterError, ReloadUnsupportedError, RuntimeStoppedError, UsageError
from .loaded import LoadedPlugin
from .policy import listing
from .settings import DEFAULT_LOAD_TIMEOUT, shown
from .stats import DriverStats

__all__ = ["DEFAULT_LOAD_TIMEOUT", "MAX_NAME_LENGTH", "DriverSlot", "Swap", "check_name", "log"]

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

    __slots__ = ("loaded", "retired", "worker_counts")

    def __init__(self, loaded: LoadedPlugin) -> None:
        self.loaded = loaded
        self.retired = False
        self.worker_counts = (0, 0, 0)  # (starts, crashes, restarts) already added to the driver's stats


def check_name(name: str) -> str:
    """A driver name as the slot accepts it from outside: non-empty, one line, bounded."""
    if not name or len(name) > MAX_NAME_LENGTH or "\n" in name or "\r" in name:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(f"not a driver name: {shown!r} (expected 1 to {MAX_NAME_LENGTH} characters on one line)")
    return name


class DriverSlot:
    """The driver slot and the counters that the loop, the control plane and SIGHUP share.

    Only names registered in ``greeter.plugins`` are ever loaded: every swap
    looks the name up in the installed metadata as it is now (a
    :class:`~greeter_core.catalog.Catalog`, which scans again only when
    something on ``sys.path`` changed) and loads exactly the record it returns.
    """

    def __init__(
        self,
        options: LoadOptions | None = None,
        loader: Callable[..., LoadedPlugin] = load,
        *,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
    ) -> None:
        self._loader = RunLoader(options or LoadOptions(), loader, load_timeout=load_timeout)
        self.options = self._loader.options
        self.load_timeout = load_timeout
        self._catalog = Catalog()
        self._lock = threading.Lock()  # guards the fields below; held only for a few assignments
        self._swap_lock = threading.Lock()  # serializes swaps and reloads (held for one bounded load and close)
        self._current: _Active | None = None
        self._borrowed: _Active | None = None
        self._closed = False
        self._started = time.monotonic()
        self.greetings = self.errors = self.swaps = self.reloads = 0
        self.last_error: str | None = None
        #: Driver name -> what it did since the start; one entry per driver that was ever loaded.
        self.drivers: dict[str, DriverStats] = {}
        self._last_call: tuple[str, float] | None = None  # (driver, seconds) of the borrow that just ended

    def start(self, driver: str) -> PluginInfo:
        """Load the first driver; its errors are the caller's (the CLI exits with them)."""
        with self._swap_lock:
            if self._current is not None:
                raise RuntimeError("the slot is already started")
            active = _Active(self._loader.load(self._catalog.find(driver)))
            with self._lock:
                self._current = active
                self._count_worker(active)
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
        if not self._loader.reloads:
            raise ReloadUnsupportedError(self.current.name)
        return self._switch(None, reload=True)

    def _switch(self, driver: str | None, *, reload: bool) -> Swap:
        try:
            with self._swap_lock:
                if self._closed:
                    raise RuntimeStoppedError
                info = self._catalog.find(driver or self.current.name)  # installed or removed since: seen
                if not reload and info == self.current:
                    # Already greeting with exactly that plugin: nothing to switch (a reload is the way
                    # to a new instance), and no swap to count.
                    log.info("already greeting with %s (%s %s); nothing to switch", *info[:3])
                    return Swap(info, info, self.swaps, self.reloads)
                new = _Active(self._loader.load(info, answered=True))
                try:
                    return self._publish(new, reload=reload)
                except RuntimeStoppedError:  # closed while it was being built
                    new.loaded.close()
                    raise
        except GreeterError as error:
            what = f"reload of {self.current.name!r}" if reload else f"switch to {driver!r}"
            log.warning("%s refused: %s; still greeting with %r", what, error, self.current.name)
            raise

    def _publish(self, new: _Active, *, reload: bool) -> Swap:
        with self._lock:
            if self._closed:
                raise RuntimeStoppedError
            old = self._active()
            self._current = new
            self._count_worker(new)
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

        The greeting loop is the only borrower, and the block is one
        ``greet()`` call: its time is the latency that :meth:`record_greeting`
        or :meth:`record_error` then counts for that driver.
        """
        with self._lock:
            active = self._borrowed = self._active()
        started = time.perf_counter()
        try:
            yield active.loaded
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._borrowed = None
                self._last_call = (active.loaded.driver, elapsed)
                self._count_worker(active)  # a call may have crashed or restarted the worker
                close_now = active.retired and not self._closed
            if close_now:
                active.loaded.retire()

    def record_greeting(self) -> None:
        """Count a greeting of the call that just ended."""
        with self._lock:
            self.greetings += 1
            self._call_stats().greetings += 1

    def record_error(self, error: GreeterError) -> None:
        """Count a failure of the call that just ended."""
        with self._lock:
            self.errors += 1
            self.last_error = str(error)
            self._call_stats(error.driver).errors += 1

    def _call_stats(self, driver: str | None = None) -> DriverStats:
        """The stats of the driver of the call that just ended, its latency counted once (lock held)."""
        call, self._last_call = self._last_call, None
        if call is not None:
            stats = self._stats(call[0])
            stats.latency.observe(call[1])
            return stats
        return self._stats(driver or self._active().loaded.driver)

    def _stats(self, driver: str) -> DriverStats:
        stats = self.drivers.get(driver)
        if stats is None:
            stats = self.drivers[driver] = DriverStats()
        return stats

    def _count_worker(self, active: _Active) -> None:
        """Add what *active*'s worker did since last looked at to its driver's counts (lock held)."""
        worker = active.loaded.status()
        if worker is None:
            return
        restarts, crashes = (
            value if isinstance(value := worker.get(key), int) else 0 for key in ("restarts", "crashes")
        )
        counts = (1 + restarts, crashes, restarts)
        stats = self._stats(active.loaded.driver)
        seen, active.worker_counts = active.worker_counts, counts
        stats.worker_starts += counts[0] - seen[0]
        stats.worker_crashes += counts[1] - seen[1]
        stats.worker_restarts += counts[2] - seen[2]

    def status(self) -> dict[str, object]:
        """What ``GET /status`` shows: the current driver, the counters, per-driver numbers, the worker if any."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[dict[str, object], dict[str, DriverStats]]:
        """``/status`` and a copy of every driver's numbers, taken at one instant (``/metrics`` reads both)."""
        with self._lock:
            active = self._active()
            plugin = active.loaded.plugin
            drivers = {name: stats.copy() for name, stats in sorted(self.drivers.items())}
            status: dict[str, object] = {
                "driver": plugin.name,
                "distribution": plugin.distribution,
                "version": plugin.version,
                **shown(self.options),
                "greetings": self.greetings,
                "errors": self.errors,
                "swaps": self.swaps,
                "reloads": self.reloads,
                "last_error": self.last_error,
                "uptime": round(time.monotonic() - self._started, 3),
                "drivers": {name: stats.as_dict() for name, stats in drivers.items()},
            }
        status["worker"] = active.loaded.status()
        return status, drivers

    def plugins(self) -> list[dict[str, object]]:
        """Every installed plugin, fresh, each marked disabled or not: the records of ``greeter list --json``."""
        return listing(self._catalog.scan(thorough=True).plugins, self.options.policy)

    def close(self) -> None:
        """Refuse further swaps and close every plugin still held; call it after the loop stopped.

        It does not wait for a swap in flight, whose load may never finish: that
        swap finds the slot closed when it is done, and closes what it built.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            held = {id(a): a for a in (self._current, self._borrowed) if a is not None}
        for active in held.values():
            active.loaded.close()
        self._loader.close()

    def summary(self) -> str:
        with self._lock:
            counts = [(self.greetings, "greeting"), (self.errors, "error"), (self.swaps, "swap")]
            counts.append((self.reloads, "reload"))
        return ", ".join(f"{count} {noun}{'' if count == 1 else 's'}" for count, noun in counts)
