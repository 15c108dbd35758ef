"""greeter's benchmark suite: every figure against a baseline measured in the same run.

Run it with ``tox -e bench`` (or ``python bench/run.py`` in a venv holding
greeter-core, the shipped plugins, setuptools and uv). It prints a Markdown
table, with the machine and Python version; ``--write`` also writes it to
BENCHMARKS.md (``tox -e bench -- --write``), so an ordinary run leaves the
tracked file alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from environments import REPO, add_distributions, build_wheels, make_venv
from harness import (
    Figure,
    compare_calls,
    compare_processes,
    control_url,
    cpu_description,
    greeter_run,
    ms,
    percentile,
    ratio_figure,
    rss_kib,
    us,
)

BARE_STEVEDORE = """\
from stevedore import DriverManager
from greeter_core.api import HostContext
context = HostContext.create("english")
mgr = DriverManager("greeter.plugins", "english", invoke_on_load=True, invoke_kwds={"context": context})
print(mgr.driver.greet("Universe"))
"""

DIRECT_IMPORT = """\
from greeter_english import EnglishGreeter
from greeter_core.api import HostContext
print(EnglishGreeter(HostContext.create("english")).greet("Universe"))
"""


class Bench:
    """Owns the scratch directory, the venvs and the settings of one run."""

    def __init__(self, workdir: Path, runs: int, repeats: int, swaps: int) -> None:
        self.workdir = workdir
        self.runs = runs
        self.repeats = repeats
        self.swaps = swaps
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
        self.env["XDG_CACHE_HOME"] = str(workdir / "cache")
        wheels = build_wheels(workdir / "wheels")
        self.base = make_venv(workdir / "base", wheels)
        self.hundred = make_venv(workdir / "hundred", wheels)
        add_distributions(self.hundred, count=100, plugins=100)
        self.crowded = make_venv(workdir / "crowded", wheels)
        add_distributions(self.crowded, count=1000, plugins=100)
        self.script = workdir / "bare.py"
        self.script.write_text(BARE_STEVEDORE)
        self.direct = workdir / "direct.py"
        self.direct.write_text(DIRECT_IMPORT)

    def processes(self, baseline: list[str], subject: list[str]) -> tuple[float, float]:
        for argv in (baseline, subject):  # both must work before either is timed
            done = subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"bench: {' '.join(argv)} failed:\n{done.stderr}")
        return compare_processes(baseline, subject, env=self.env, cwd=str(self.workdir), runs=self.runs)


def in_process_greet(bench: Bench) -> list[Figure]:
    from greeter_english import EnglishGreeter

    import greeter_core

    loaded = greeter_core.load("english")
    direct = EnglishGreeter(greeter_core.HostContext.create("english"))
    base, subject = compare_calls(
        lambda: direct.greet("Universe"), lambda: loaded.obj.greet("Universe"), repeats=bench.repeats
    )
    plugin_call = ratio_figure(
        "in-process `greet()` on the loaded plugin object (vs the class called directly)", base, subject, 1.05, us
    )
    base, subject = compare_calls(
        lambda: direct.greet("Universe"), lambda: loaded.greet("Universe"), repeats=bench.repeats
    )
    contained = ratio_figure(
        "in-process contained `greet()`: recover() and the contract check (vs the same)", base, subject, None, us
    )
    return [plugin_call, contained]


def cli_vs_bare(bench: Bench) -> Figure:
    base, subject = bench.processes([bench.base.python, str(bench.script)], [bench.base.greeter, "--driver", "english"])
    return ratio_figure(
        "`greeter --driver english`, whole process (vs bare 3-line DriverManager script)", base, subject, 1.10, ms
    )


def crowded_cli(bench: Bench) -> Figure:
    base, subject = bench.processes(
        [bench.base.greeter, "--driver", "english"], [bench.crowded.greeter, "--driver", "english"]
    )
    return ratio_figure(
        "the same with 1,000 extra distributions, 100 of them plugins (vs shipped only)", base, subject, 1.20, ms
    )


def import_core(bench: Bench) -> Figure:
    base, subject = bench.processes([bench.base.python, "-c", "pass"], [bench.base.python, "-c", "import greeter_core"])
    return ratio_figure('`python -c "import greeter_core"` (vs `python -c pass`)', base, subject, 1.3, ms)


def cli_vs_direct(bench: Bench) -> Figure:
    base, subject = bench.processes([bench.base.python, str(bench.direct)], [bench.base.greeter, "--driver", "english"])
    return ratio_figure(
        "`greeter --driver english` (vs a script importing the English class directly)", base, subject, None, ms
    )


def list_hundred(bench: Bench) -> Figure:
    mark = bench.workdir / "imported.txt"
    bench.env["BENCH_IMPORT_MARK"] = str(mark)
    base, subject = bench.processes([bench.base.greeter, "list"], [bench.hundred.greeter, "list"])
    imported = mark.read_text().split() if mark.exists() else []
    figure = ratio_figure("`greeter list` with 100 plugins installed (vs the shipped four)", base, subject, 1.5, ms)
    if imported:
        return figure._replace(
            goal=f"{figure.goal}, none imported", met=False, value=f"{figure.value} ({len(imported)} imported!)"
        )
    return figure._replace(goal=f"{figure.goal}, none imported")


def hot_swap(bench: Bench) -> Figure:
    """Request -> first greeting of the new driver, in ``greeter run --interval 0`` (in process)."""
    proc = _greeter_run(bench, "none", interval="0", stdout=subprocess.PIPE)
    try:
        url = control_url(proc)
        first_line = {"english": "Hello Universe", "chinese": "你好宇宙"}
        seen: dict[str, float] = {}
        wanted = threading.Event()
        state = {"want": "", "sent": 0.0}

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                if state["want"] and line.rstrip("\n") == first_line[state["want"]] and not wanted.is_set():
                    seen[state["want"]] = time.perf_counter() - state["sent"]
                    wanted.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        latencies = []
        driver = "english"
        for _ in range(bench.swaps):
            driver = "chinese" if driver == "english" else "english"
            wanted.clear()
            state["want"], state["sent"] = driver, time.perf_counter()
            urllib.request.urlopen(f"{url}/?mod={driver}", timeout=60).read()
            if not wanted.wait(60):
                raise RuntimeError("no greeting from the new driver within 60 s")
            latencies.append(seen[driver])
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    return Figure(
        "hot swap in `greeter run --interval 0`, request → first new greeting (in process)",
        f"p50 {ms(p50)}, p99 {ms(p99)}",
        f"{len(latencies)} swaps",
        None,
        "report",
        None,
    )


def memory(bench: Bench) -> list[Figure]:
    floor = subprocess.Popen([bench.base.python, "-c", "import time; time.sleep(600)"], env=bench.env)
    try:
        time.sleep(1.0)
        baseline = rss_kib(floor.pid)
        proc = _greeter_run(bench, "none", interval="0.2", stdout=subprocess.DEVNULL)
        try:
            control_url(proc)
            time.sleep(1.0)
            host = rss_kib(proc.pid)
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    finally:
        floor.kill()
        floor.wait()
    return [
        Figure(
            "memory: `greeter run` host RSS, isolation none",
            f"{host / 1024:.1f} MiB",
            f"{baseline / 1024:.1f} MiB",
            host / baseline,
            "report",
            None,
        )
    ]


def isolation(bench: Bench) -> list[Figure]:
    """The isolated figures: bench/isolation.py, run inside the venv, prints them as a JSON list."""
    argv = [bench.base.python, str(REPO / "bench" / "isolation.py"), "--runs", str(bench.repeats)]
    done = subprocess.run(argv, env=bench.env, cwd=bench.workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed:\n{done.stderr}")
    return [Figure(**figure) for figure in json.loads(done.stdout)]


def _greeter_run(bench: Bench, isolation: str, *, interval: str, stdout: int) -> subprocess.Popen[str]:
    """`greeter run --driver english` in the base venv, with a control endpoint on a free port."""
    return greeter_run(
        bench.base.greeter, isolation, interval=interval, stdout=stdout, env=bench.env, cwd=str(bench.workdir)
    )


def report(figures: list[Figure], bench: Bench, elapsed: float) -> str:
    head = [
        "# Benchmarks",
        "",
        f"Measured {date.today().isoformat()} by `tox -e bench` (`bench/run.py`) on {cpu_description()}, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"{bench.runs} alternating runs per process figure, {bench.repeats} alternating repeats per call figure, "
        f"medians; the whole suite took {elapsed:.0f} s.",
        "",
        "Every ratio is subject / baseline, both measured in this run. The machines are noisy: compare ratios,",
        "not absolute times, across runs.",
        "",
        "| figure | value | baseline | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [figure.row() for figure in figures]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(REPO / "BENCHMARKS.md"),
        metavar="PATH",
        help="also write the table to PATH (default: BENCHMARKS.md); without it, only print",
    )
    parser.add_argument("--runs", type=int, default=40, help="alternating runs per process figure (default: 40)")
    parser.add_argument("--repeats", type=int, default=25, help="alternating repeats per call figure (default: 25)")
    parser.add_argument("--swaps", type=int, default=200, help="hot swaps to time (default: 200)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    scratch = scratch_dir()
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=scratch) as workdir:
        bench = Bench(Path(workdir), args.runs, args.repeats, args.swaps)
        figures = [
            *in_process_greet(bench),
            cli_vs_bare(bench),
            crowded_cli(bench),
            import_core(bench),
            cli_vs_direct(bench),
            list_hundred(bench),
            hot_swap(bench),
            *memory(bench),
            *isolation(bench),
        ]
        text = report(figures, bench, time.monotonic() - started)
    print(text)
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        print(f"bench: wrote {args.write}", file=sys.stderr)
    return 0


def scratch_dir() -> Path:
    """Where the bench's venvs go: never under /tmp, where stevedore writes no cache.

    stevedore skips its on-disk cache for an interpreter whose path starts
    with /tmp, which would turn every process figure into a cold scan. From a
    checkout under /tmp the venvs go to the user's cache directory instead,
    and the bench says so.
    """
    inside = (REPO / ".bench").resolve()
    if not str(inside).startswith("/tmp"):
        return inside
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").resolve() / "greeter-bench"
    if str(cache).startswith("/tmp"):
        raise SystemExit(
            f"bench: {REPO} and {cache} are under /tmp, where stevedore keeps no entry-point cache, so every "
            f"figure would measure a cold scan; run from a checkout elsewhere, or set XDG_CACHE_HOME outside /tmp"
        )
    print(
        f"bench: this checkout is under /tmp, where stevedore keeps no entry-point cache; "
        f"the bench's venvs go to {cache} instead",
        file=sys.stderr,
    )
    return cache


if __name__ == "__main__":
    raise SystemExit(main())
