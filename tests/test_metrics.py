"""GET /metrics in the Prometheus text format, read by prometheus_client's own parser; /status's per-driver numbers."""

from __future__ import annotations

import random
import subprocess
from typing import Any

import pytest
from plugins import ALPHA, BETA, PANIC, PluginSpec, greet_body
from prometheus_client.parser import text_string_to_metric_families
from running import RunningGreeter
from wheels import Venv

from greeter_core.stats import LATENCY_BUCKETS, LatencyHistogram

TOKEN = "metrics-token"

#: Under isolation a swap is published once the new worker answered a greeting ("Universe"): this
#: plugin answers that one, then kills its worker on every greeting of the loop (which greets Worf).
EXITS_AFTER_THE_SWAP = PluginSpec(
    "exit", code=greet_body('if name == "Universe":\n    return "verified"\nos._exit(3)', "import os")
)


def scrape(greeter: RunningGreeter, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET /metrics, parsed by prometheus_client: {(sample name, frozenset(labels)): value}, plus the families."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", greeter.port, timeout=60)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        body = response.read().decode("utf-8")
        assert response.status == 200, body
        assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        connection.close()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
    }
    return {"families": families, "samples": samples}


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return metrics["samples"].get((name, frozenset(labels.items())), 0.0)  # type: ignore[no-any-return]


def driver_numbers(metrics: dict[str, Any], driver: str) -> dict[str, float]:
    """The per-driver numbers of /metrics, named as /status names them."""
    return {
        "greetings": value(metrics, "greeter_greetings_total", driver=driver),
        "errors": value(metrics, "greeter_errors_total", driver=driver),
        "worker_starts": value(metrics, "greeter_worker_starts_total", driver=driver),
        "worker_crashes": value(metrics, "greeter_worker_crashes_total", driver=driver),
        "worker_restarts": value(metrics, "greeter_worker_restarts_total", driver=driver),
        "calls": value(metrics, "greeter_greet_duration_seconds_count", driver=driver),
    }


def status_numbers(status: dict[str, Any], driver: str) -> dict[str, float]:
    numbers = {
        key: float(status["drivers"][driver][key]) for key in driver_numbers({"samples": {}}, driver) if key != "calls"
    }
    numbers["calls"] = numbers["greetings"] + numbers["errors"]
    return numbers


@pytest.mark.parametrize(
    ("isolation", "failing"),
    [("none", "panic"), ("process", "exit")],
    ids=["in-process-raising", "worker-exiting"],
)
def test_metrics_after_swaps_and_failures_match_status(start, install, isolation: str, failing: str) -> None:
    """alpha -> a failing plugin -> beta: every counter, gauge and histogram count in /metrics equals /status."""
    install(ALPHA, BETA, PANIC, EXITS_AFTER_THE_SWAP)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--isolation", isolation,
        "--name", "Worf",
    )  # fmt: skip
    greeter.wait_greetings("Alpha Worf", 3)
    assert greeter.swap(failing).status == 200
    greeter.wait_status(lambda s: s["drivers"].get(failing, {}).get("errors", 0) >= 3)
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Worf", 3)  # alpha's and the failing plugin's numbers are final from here on

    before = greeter.status()
    metrics = scrape(greeter)
    after = greeter.status()

    for driver in ("alpha", failing):  # no longer greeting: exactly equal
        assert driver_numbers(metrics, driver) == status_numbers(before, driver) == status_numbers(after, driver)
    assert status_numbers(before, failing)["errors"] >= 3 and status_numbers(before, failing)["greetings"] == 0
    for key, low in status_numbers(before, "beta").items():  # still greeting: between the two reads
        assert low <= driver_numbers(metrics, "beta")[key] <= status_numbers(after, "beta")[key], key
    assert value(metrics, "greeter_swaps_total") == before["swaps"] == 2
    assert value(metrics, "greeter_reloads_total") == before["reloads"] == 0
    assert (
        value(
            metrics,
            "greeter_current_driver",
            driver="beta",
            distribution="greeter-beta",
            version="1.0",
            isolation=isolation,
        )
        == 1
    )
    assert metrics["families"]["greeter_current_driver"].type == "gauge"
    assert metrics["families"]["greeter_greet_duration_seconds"].type == "histogram"
    if isolation == "process":
        exits = status_numbers(before, "exit")
        assert exits["worker_crashes"] >= 1 and exits["worker_starts"] == 1 + exits["worker_restarts"]
        assert status_numbers(before, "alpha")["worker_starts"] == 1


def test_the_latency_histogram_has_fixed_cumulative_buckets(start, install) -> None:
    """greeter_greet_duration_seconds: the same le buckets per driver, cumulative, +Inf equal to _count."""
    install(ALPHA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe", 5)
    metrics = scrape(greeter)
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in metrics["samples"].items()
        if name == "greeter_greet_duration_seconds_bucket" and dict(labels)["driver"] == "alpha"
    )
    assert [le for le, _ in buckets] == [*LATENCY_BUCKETS, float("inf")]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and counts[-1] == value(
        metrics, "greeter_greet_duration_seconds_count", driver="alpha"
    )
    assert value(metrics, "greeter_greet_duration_seconds_sum", driver="alpha") > 0


def test_status_reports_per_driver_counts_and_latency_quantiles(start, install) -> None:
    """/status's drivers: greetings, errors and the p50/p99 of greet() for every driver since the start."""
    install(ALPHA, PANIC)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.swap("panic").status == 200
    status = greeter.wait_status(lambda s: s["drivers"].get("panic", {}).get("errors", 0) >= 2)
    alpha, panic = status["drivers"]["alpha"], status["drivers"]["panic"]
    assert alpha["greetings"] >= 3 and alpha["errors"] == 0
    assert panic["greetings"] == 0 and panic["errors"] >= 2
    assert status["greetings"] == sum(d["greetings"] for d in status["drivers"].values())
    assert status["errors"] == sum(d["errors"] for d in status["drivers"].values())
    for numbers in (alpha, panic):
        assert 0 < numbers["latency_p50"] <= numbers["latency_p99"] <= LATENCY_BUCKETS[-1]


def test_metrics_follow_the_token_rules(start, install) -> None:
    """With a control token, /metrics is 401 without it, like every route, and 200 with it."""
    install(ALPHA)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--control-token", TOKEN
    )
    reply = greeter.request("GET", "/metrics")
    assert (reply.status, reply.headers["www-authenticate"]) == (401, 'Bearer realm="greeter"')
    metrics = scrape(greeter, {"Authorization": f"Bearer {TOKEN}"})
    assert metrics["families"]["greeter_greetings"].type == "counter"


def test_greeter_run_imports_prometheus_client_only_when_metrics_are_asked(start, install) -> None:
    """Greeting, /status and /plugins never import prometheus_client; the first GET /metrics does."""
    install(ALPHA)
    greeter: RunningGreeter = start(
        "--driver",
        "alpha",
        "--interval",
        "0.01",
        "--control",
        "127.0.0.1:0",
        env_extra={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    greeter.wait_greetings("Alpha Universe", 3)
    greeter.status()
    greeter.request("GET", "/plugins")
    assert greeter.stderr.lines and not any("prometheus_client" in line for line in greeter.stderr.lines)
    scrape(greeter)
    greeter.stderr.search(r"import time:.*\|\s+prometheus_client$")


def test_without_the_metrics_extra_metrics_is_a_json_error_naming_it(venv: Venv, venv_start) -> None:
    """In a venv without prometheus_client, GET /metrics is 501 in JSON naming greeter-core[metrics]; the rest works."""
    missing = subprocess.run([str(venv.python), "-c", "import prometheus_client"], env=venv.env, capture_output=True)
    assert missing.returncode == 1  # this venv really lacks the extra
    greeter: RunningGreeter = venv_start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    reply = greeter.request("GET", "/metrics")
    assert (reply.status, reply.data["status"]) == (501, 501)
    assert "pip install 'greeter-core[metrics]'" in reply.data["error"]
    assert reply.data["extra"] == "greeter-core[metrics]"
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.status()["drivers"]["alpha"]["greetings"] >= 1


# -- the histogram behind both ----------------------------------------------------------------------


def test_the_histogram_stays_the_same_size_however_many_observations() -> None:
    """A long run does not grow: 100,000 observations later the histogram holds the same few numbers."""
    histogram = LatencyHistogram()
    size = len(histogram.counts)
    for i in range(100_000):
        histogram.observe((i % 1000) * 1e-5)
    assert len(histogram.counts) == size == len(LATENCY_BUCKETS) + 1
    assert histogram.count == 100_000 == sum(histogram.counts)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantiles_are_estimated_within_their_bucket(q: float) -> None:
    """p50/p99 land in the bucket holding the true quantile, as Prometheus' histogram_quantile() estimates them."""
    rng = random.Random(14)
    values = sorted(rng.lognormvariate(-9, 1.5) for _ in range(5000))
    histogram = LatencyHistogram()
    for seconds in values:
        histogram.observe(seconds)
    true = values[int(q * len(values)) - 1]
    estimate = histogram.quantile(q)
    assert estimate is not None
    lower = max([b for b in LATENCY_BUCKETS if b < true], default=0.0)
    upper = min(b for b in LATENCY_BUCKETS if b >= true)
    assert lower <= estimate <= upper, (true, estimate)


def test_an_empty_histogram_has_no_quantile() -> None:
    """Before the first call there is no latency to report: None, not 0."""
    assert LatencyHistogram().quantile(0.5) is None


def test_the_slot_times_each_borrowed_call_once(on_path, install) -> None:
    """Each borrow is one greet() call: counted once, with one latency, under the driver that made it."""
    from greeter_core.errors import PluginCallError
    from greeter_core.slot import DriverSlot

    install(ALPHA)
    slot = DriverSlot()
    slot.start("alpha")
    for _ in range(7):
        with slot.borrowed() as loaded:
            loaded.greet("x")
        slot.record_greeting()
    with slot.borrowed() as loaded:
        pass
    slot.record_error(PluginCallError("alpha", loaded.plugin, "RuntimeError: no"))
    slot.record_error(PluginCallError("alpha", loaded.plugin, "RuntimeError: not borrowed: no latency"))
    numbers = slot.status()["drivers"]["alpha"]  # type: ignore[index]
    assert (numbers["greetings"], numbers["errors"]) == (7, 2)
    assert slot.snapshot()[1]["alpha"].latency.count == 8
    slot.close()
