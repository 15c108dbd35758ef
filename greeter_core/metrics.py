"""``GET /metrics``: a driver slot's numbers in the Prometheus text format, through ``prometheus_client``.

``prometheus_client`` is the optional extra ``greeter-core[metrics]``, and
this module, the only one that imports it, is imported on the first
``/metrics`` request. Nothing is counted twice: a collector on a registry of
the slot's own (never the library's global one) reads the slot's counters
when it is scraped, so ``/metrics`` and ``/status`` show the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .slot import DriverSlot
from .stats import DriverStats

__all__ = ["CONTENT_TYPE", "EXTRA", "SlotCollector", "SlotMetrics"]

#: What to install for ``/metrics``.
EXTRA = "greeter-core[metrics]"

#: The classic text format (0.0.4), which every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SlotCollector:
    """Turns a slot's counters into metric families, each time it is scraped."""

    def __init__(self, slot: DriverSlot) -> None:
        self.slot = slot

    def collect(self) -> Iterator[Metric]:
        status, drivers = self.slot.snapshot()  # one instant, taken under the slot's lock
        per_driver: tuple[tuple[str, str, Callable[[DriverStats], int]], ...] = (
            ("greetings", "Greetings a driver returned.", lambda d: d.greetings),
            (
                "errors",
                "Failed greet() calls of a driver: raised, crashed, timed out or bad result.",
                lambda d: d.errors,
            ),
            (
                "worker_starts",
                "Worker processes started for a driver (--isolation process).",
                lambda d: d.worker_starts,
            ),
            ("worker_crashes", "Workers of a driver that died or were killed.", lambda d: d.worker_crashes),
            ("worker_restarts", "Workers of a driver restarted after a crash.", lambda d: d.worker_restarts),
        )
        for name, text, count in per_driver:
            family = CounterMetricFamily(f"greeter_{name}", text, labels=["driver"])
            for driver, stats in drivers.items():
                family.add_metric([driver], count(stats))
            yield family
        yield CounterMetricFamily("greeter_swaps", "Driver switches (HTTP or SIGHUP).", value=_number(status["swaps"]))
        yield CounterMetricFamily("greeter_reloads", "Reloads of the current driver.", value=_number(status["reloads"]))
        current = GaugeMetricFamily(
            "greeter_current_driver",
            "1 for the driver that greets now, labelled with its distribution, version and isolation.",
            labels=["driver", "distribution", "version", "isolation"],
        )
        current.add_metric([str(status[key]) for key in ("driver", "distribution", "version", "isolation")], 1)
        yield current
        latency = HistogramMetricFamily(
            "greeter_greet_duration_seconds", "Time of one greet() call, failed ones included.", labels=["driver"]
        )
        for driver, stats in drivers.items():
            buckets = [(_le(bound), float(n)) for bound, n in stats.latency.cumulative()]
            latency.add_metric([driver], buckets, stats.latency.total)
        yield latency


def _le(bound: float) -> str:
    """A bucket's ``le`` label: ``+Inf`` for the last one."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


class SlotMetrics:
    """One slot's registry and its exposition."""

    def __init__(self, slot: DriverSlot) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(SlotCollector(slot))

    def exposition(self) -> bytes:
        """The current numbers in the text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
