"""What every helper module of the tests uses: the checkout, the wait primitive, a clean environment, the one-line rule.

Waits are on conditions (a line appeared, a counter moved, a process ended)
with generous timeouts, never on durations: the machines are noisy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]

#: Seconds: generous, only ever reached when something is wrong.
WAIT = 60.0

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float = WAIT, what: str = "a condition") -> T:
    """Poll *condition* until it returns something true, and return that; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {value!r}")
        time.sleep(0.01)


def one_line(stderr: str) -> str:
    """A user-facing failure is exactly one line on stderr and never a traceback; return it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a greeter subprocess: no inherited Python or greeter settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
    env.update(PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env
