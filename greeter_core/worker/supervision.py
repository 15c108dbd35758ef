"""Supervision of a plugin's workers: when a crashed worker may be replaced (backoff, the circuit breaker).

A policy apart from the worker itself (go-plugin's client owns one process;
restarting is its caller's business): :class:`Supervision` holds the
numbers, given as an argument, :class:`Supervisor` the state of one
plugin's crashes. It starts nothing and stops nothing; it says whether a
worker may be started now, and is told when one crashed or answered again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from ..errors import CircuitOpenError, WorkerUnavailableError, describe
from ..record import PluginInfo

__all__ = ["Supervision", "Supervisor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Supervision:
    """The numbers of the policy, in seconds and crashes; the defaults are these, and only these."""

    backoff_base: float = 0.5
    """The first pause before restarting a crashed worker; it doubles per crash up to *backoff_cap*."""

    backoff_cap: float = 10.0

    stable_after: float = 10.0
    """A worker that stayed up this long resets the backoff (jupyter_client's rule)."""

    circuit_crashes: int = 5
    """After this many crashes within *circuit_window* seconds no worker is started for *circuit_window*
    seconds; then one is tried, and one more crash opens the circuit again."""

    circuit_window: float = 60.0

    def next_backoff(self, previous: float, uptime: float) -> float:
        """The pause before restarting a worker that crashed after *uptime* seconds."""
        if uptime >= self.stable_after or previous <= 0:
            return self.backoff_base
        return min(previous * 2, self.backoff_cap)


class Supervisor:
    """One plugin's crashes under a :class:`Supervision`: the backoff, the circuit, and what ``/status`` shows."""

    def __init__(self, driver: str, plugin: PluginInfo, policy: Supervision) -> None:
        self.driver = driver
        self.plugin = plugin
        self.policy = policy
        self.restarts = 0
        self.crashes = 0
        self.last_exit: str | None = None
        self._backoff = 0.0  # the first crash waits backoff_base
        self._next_start = 0.0
        self._crash_times: deque[float] = deque()
        self._circuit_until = 0.0
        self._circuit_crashes = 0
        self._trial = False  # the circuit's window passed: one worker is tried
        self.recovering = False  # crashed since the last answered greeting

    def admit(self) -> None:
        """Allow one more start now, counted as a restart; else raise why not (the circuit, the backoff)."""
        now = time.monotonic()
        if self._circuit_until > now:
            raise CircuitOpenError(
                self.driver,
                self.plugin,
                self._circuit_crashes,
                self.policy.circuit_window,
                self._circuit_until - now,
            )
        if self._next_start > now:
            raise WorkerUnavailableError(self.driver, self.plugin, str(self.last_exit), self._next_start - now)
        if self._circuit_until:
            self._circuit_until, self._trial = 0.0, True
        self.restarts += 1

    def crashed(self, what: str, uptime: float) -> None:
        """Count a crash of a worker that ran *uptime* seconds: back off, and open the circuit after too many."""
        now = time.monotonic()
        policy = self.policy
        self.crashes += 1
        self.last_exit = what
        self.recovering = True
        self._backoff = policy.next_backoff(self._backoff, uptime)
        self._next_start = now + self._backoff
        self._crash_times.append(now)
        while now - self._crash_times[0] > policy.circuit_window:
            self._crash_times.popleft()
        if self._trial or len(self._crash_times) >= policy.circuit_crashes:
            self._trial = False
            self._circuit_crashes = len(self._crash_times)
            self._circuit_until = now + policy.circuit_window
            log.warning(
                "circuit open for %s after %d crashes in %g s (last: %s); no worker is started for %g s, "
                "or until a swap or a reload",
                describe(self.driver, self.plugin),
                self._circuit_crashes,
                policy.circuit_window,
                what,
                policy.circuit_window,
            )

    def recovered(self) -> None:
        """A worker answered after crashes: a trial worker closes the circuit."""
        self.recovering = False
        if self._trial:
            self._trial = False
            self._crash_times.clear()

    def status(self, running: bool) -> dict[str, object]:
        """The supervision's part of ``/status``: the state when no worker runs, the counts and the circuit."""
        now = time.monotonic()
        if running:
            state = "running"
        elif self._circuit_until > now:
            state = "circuit-open"
        elif self._next_start > now:
            state = "backoff"
        else:
            state = "stopped"
        retry_at = self._circuit_until if self._circuit_until > now else self._next_start
        return {
            "state": state,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_exit": self.last_exit,
            "circuit": "open" if self._circuit_until > now else "half-open" if self._trial else "closed",
            "retry_in": round(max(0.0, retry_at - now), 3) if not running else 0.0,
        }
