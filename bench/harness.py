"""Measuring on a noisy machine: every figure against a baseline timed in the same run, interleaved.

Whole processes are timed alternately (baseline, subject, baseline, ...) so
that a burst of load elsewhere hits both sides alike; the figure is the
ratio of the two medians. In-process calls use ``timeit`` with the same
interleaving over repeats.

Each group of figures is a script run inside the venv being measured; it
prints its figures as a JSON list on stdout (:func:`emit`), which
``bench/run.py`` reads back (:func:`run_group`).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import timeit
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple


class Figure(NamedTuple):
    """One row of the results table."""

    name: str
    value: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None

    def row(self) -> str:
        ratio = "—" if self.ratio is None else f"{self.ratio:.3f}"
        verdict = {True: "met", False: "**missed**", None: "report"}[self.met]
        return f"| {self.name} | {self.value} | {self.baseline} | {ratio} | {self.goal} | {verdict} |"


def ratio_figure(name: str, base: float, subject: float, goal: float | None, fmt: Callable[[float], str]) -> Figure:
    ratio = subject / base
    return Figure(
        name, fmt(subject), fmt(base), ratio, f"≤ {goal:.2f}" if goal else "report", ratio <= goal if goal else None
    )


def time_process(argv: Sequence[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare_many(
    commands: dict[str, Sequence[str]], *, env: dict[str, str], cwd: str, runs: int, warmup: int = 3
) -> dict[str, float]:
    """Median wall time (seconds) of each command, run in turn, the order reversed every other round.

    Each command must succeed once before any is timed.
    """
    for argv in commands.values():
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench: {' '.join(argv)} failed:\n{done.stderr}")
    for _ in range(warmup):
        for argv in commands.values():
            time_process(argv, env, cwd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands)
    for i in range(runs):
        for name in order if i % 2 == 0 else reversed(order):
            times[name].append(time_process(commands[name], env, cwd))
    return {name: statistics.median(values) for name, values in times.items()}


def compare_processes(
    baseline: Sequence[str], subject: Sequence[str], *, env: dict[str, str], cwd: str, runs: int, warmup: int = 3
) -> tuple[float, float]:
    """Median wall time (seconds) of each command, run alternately."""
    for _ in range(warmup):
        time_process(baseline, env, cwd)
        time_process(subject, env, cwd)
    base, subj = [], []
    for i in range(runs):
        pair = [(baseline, base), (subject, subj)]
        for argv, into in pair if i % 2 == 0 else reversed(pair):
            into.append(time_process(argv, env, cwd))
    return statistics.median(base), statistics.median(subj)


def compare_calls(
    baseline: Callable[[], object], subject: Callable[[], object], *, repeats: int
) -> tuple[float, float]:
    """Median seconds per call of each callable, timed in alternating batches."""
    number = max(1, timeit.Timer(subject).autorange()[0])
    base, subj = [], []
    for i in range(repeats):
        pair = [(baseline, base), (subject, subj)]
        for func, into in pair if i % 2 == 0 else reversed(pair):
            into.append(timeit.Timer(func).timeit(number) / number)
    return statistics.median(base), statistics.median(subj)


def rss_kib(pid: int) -> int:
    """Resident set size of a live process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cpu_description() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def greeter_run(
    greeter: str, isolation: str, *, interval: str, stdout: int, env: dict[str, str], cwd: str
) -> subprocess.Popen[str]:
    """`greeter run --driver english` (*greeter*: a venv's script), with a control endpoint on a free port."""
    return subprocess.Popen(
        [
            greeter,
            "run",
            "--driver",
            "english",
            "--interval",
            interval,
            "--control",
            "127.0.0.1:0",
            "--isolation",
            isolation,
        ],
        env=env,
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


@contextmanager
def running(
    greeter: str, isolation: str, *, interval: str, env: dict[str, str], cwd: str, stdout: int = subprocess.PIPE
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """:func:`greeter_run`, until the block ends; yields the process and its control endpoint's URL."""
    proc = greeter_run(greeter, isolation, interval=interval, stdout=stdout, env=env, cwd=cwd)
    try:
        yield proc, control_url(proc)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


#: The first line each shipped plugin greets with in ``greeter run`` (the default name).
FIRST_LINE = {"english": "Hello Universe", "chinese": "你好宇宙"}


def swap_latencies(
    greeter: str,
    isolation: str,
    swaps: int,
    *,
    env: dict[str, str],
    cwd: str,
    warmup: int = 0,
    first_lines: Mapping[str, str] | None = None,
) -> list[float]:
    """Seconds from each swap request to the new driver's first greeting, in ``greeter run --interval 0``.

    The swaps alternate between the two drivers of *first_lines* (each with the
    line it greets with first; default: English and Chinese); the first
    *warmup* are not counted.
    """
    lines = dict(first_lines or FIRST_LINE)
    one, other = lines
    with running(greeter, isolation, interval="0", env=env, cwd=cwd) as (proc, url):
        seen: dict[str, float] = {}
        wanted = threading.Event()
        state = {"want": "", "sent": 0.0}

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                if state["want"] and not wanted.is_set() and line.rstrip("\n") == lines[state["want"]]:
                    seen[state["want"]] = time.perf_counter() - state["sent"]
                    wanted.set()

        threading.Thread(target=read, daemon=True).start()
        latencies = []
        driver = one
        for i in range(swaps + warmup):
            driver = other if driver == one else one
            wanted.clear()
            state["want"], state["sent"] = driver, time.perf_counter()
            urllib.request.urlopen(f"{url}/?mod={driver}", timeout=60).read()
            if not wanted.wait(60):
                raise RuntimeError(f"no greeting from {driver} within 60 s of the swap")
            if i >= warmup:
                latencies.append(seen[driver])
    return latencies


def control_url(proc: subprocess.Popen[str]) -> str:
    for line in proc.stderr:  # type: ignore[union-attr]
        match = re.search(r"control endpoint on (http://\S+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
            return match.group(1)
    raise RuntimeError("greeter run exited before announcing its control endpoint")


def emit(figures: Sequence[Figure], data: dict[str, dict[str, float]] | None = None) -> None:
    """Print *figures* as the JSON list a figure group answers with; *data*: raw numbers by figure name."""
    json.dump(
        [
            {**figure._asdict(), **({"data": data[figure.name]} if data and figure.name in data else {})}
            for figure in figures
        ],
        sys.stdout,
        ensure_ascii=False,
    )
    print()


def run_group(
    python: str, script: str, args: Sequence[str], *, env: dict[str, str], cwd: str
) -> list[dict[str, object]]:
    """Run the figure group *script* (a file in bench/) with a venv's *python*; its figures, as dicts."""
    argv = [python, os.path.join(os.path.dirname(os.path.abspath(__file__)), script), *args]
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    figures = json.loads(done.stdout)
    if not isinstance(figures, list):
        raise SystemExit(f"bench: {script} printed no JSON list of figures")
    return figures
