"""What ``greeter run`` counts per driver: greetings, errors, workers, and ``greet()`` latency in fixed buckets.

A long run must not grow: a driver's numbers are a few integers and one
histogram of fixed buckets, whatever the number of greetings, and there is
one entry per driver that ever greeted (only installed plugins load). The
quantiles of ``/status`` are estimated from the same buckets that
``/metrics`` exposes, the way Prometheus' ``histogram_quantile()`` does, so
the two never disagree.
"""

from __future__ import annotations

import bisect

__all__ = ["LATENCY_BUCKETS", "DriverStats", "LatencyHistogram"]

#: Upper bounds (seconds) of the latency buckets, from an in-process call (microseconds) to a worker
#: near its call timeout; a last bucket, +Inf, takes the rest.
LATENCY_BUCKETS: tuple[float, ...] = tuple(
    round(mantissa * 10.0**exponent, 9) for exponent in range(-6, 2) for mantissa in (1, 2.5, 5)
)


class LatencyHistogram:
    """Counts of observations per bucket, their sum and their number; fixed size."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def copy(self) -> LatencyHistogram:
        other = LatencyHistogram()
        other.counts, other.total, other.count = list(self.counts), self.total, self.count
        return other

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` for every bucket, ``inf`` last: Prometheus' ``le``."""
        bounds = (*LATENCY_BUCKETS, float("inf"))
        running, result = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result

    def quantile(self, q: float) -> float | None:
        """The *q*-quantile, interpolated inside its bucket (None before the first observation)."""
        if not self.count:
            return None
        rank = q * self.count
        lower, below = 0.0, 0
        for bound, cumulative in self.cumulative():
            if cumulative >= rank and cumulative > below:
                if bound == float("inf"):
                    return LATENCY_BUCKETS[-1]  # as histogram_quantile: the highest finite bound
                return lower + (bound - lower) * (rank - below) / (cumulative - below)
            lower, below = bound, cumulative
        return LATENCY_BUCKETS[-1]  # pragma: no cover - the last bucket always holds the rank


class DriverStats:
    """Everything counted for one driver since ``greeter run`` started."""

    __slots__ = ("errors", "greetings", "latency", "worker_crashes", "worker_restarts", "worker_starts")

    def __init__(self) -> None:
        self.greetings = self.errors = 0
        self.worker_starts = self.worker_crashes = self.worker_restarts = 0
        self.latency = LatencyHistogram()

    def copy(self) -> DriverStats:
        other = DriverStats()
        other.greetings, other.errors = self.greetings, self.errors
        other.worker_starts, other.worker_crashes = self.worker_starts, self.worker_crashes
        other.worker_restarts, other.latency = self.worker_restarts, self.latency.copy()
        return other

    def as_dict(self) -> dict[str, object]:
        """The entry of ``/status``'s ``drivers``: counts and the p50/p99 of ``greet()`` in seconds."""
        p50, p99 = self.latency.quantile(0.5), self.latency.quantile(0.99)
        return {
            "greetings": self.greetings,
            "errors": self.errors,
            "latency_p50": None if p50 is None else round(p50, 9),
            "latency_p99": None if p99 is None else round(p99, 9),
            "worker_starts": self.worker_starts,
            "worker_crashes": self.worker_crashes,
            "worker_restarts": self.worker_restarts,
        }
