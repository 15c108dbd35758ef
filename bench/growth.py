"""Start-up, listing and hot swap in one venv, at one size of installation (bench/run.py runs it in each).

``VENV/bin/python bench/growth.py --size N --base BASE_VENV --runs R --swaps S``
prints a JSON list of figures on stdout (see ``harness.emit``):

- ``greeter --driver english`` against the bare stevedore script, both run
  by this venv (goal 1 at size 0, goal 4 at every size);
- ``greeter list`` here against ``greeter list`` in *BASE_VENV* (shipped
  plugins only), with a check that listing imported no plugin;
- the in-process hot swap in ``greeter run --interval 0``: request to first
  greeting of the new driver;
- at size 0 only: the same start-up against the bare script with the
  collector set as greeter sets it (greeter's own cost), ``import
  greeter_core`` against ``pass``, and the command against a script that
  imports the English class directly (the price of discovery).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, compare_many, emit, ms, percentile, ratio_figure, swap_latencies

BARE_STEVEDORE = """\
from stevedore import DriverManager
from greeter_core.api import HostContext
context = HostContext.create("english")
mgr = DriverManager("greeter.plugins", "english", invoke_on_load=True, invoke_kwds={"context": context})
print(mgr.driver.greet("Universe"))
"""

#: The same script, with the collector paused while it starts and what it built frozen, as greeter does.
BARE_STEVEDORE_COLLECTOR_ALIKE = "import gc\ngc.disable()\n" + BARE_STEVEDORE.replace(
    "print(", "gc.freeze()\ngc.enable()\nprint(", 1
)

DIRECT_IMPORT = """\
from greeter_english import EnglishGreeter
from greeter_core.api import HostContext
print(EnglishGreeter(HostContext.create("english")).greet("Universe"))
"""

#: Goals of the hot swap (issue 13, goal 2: the isolated swap's; the in-process one must stay within them).
SWAP_P50, SWAP_P99 = 0.025, 0.060

HERE = Path(sys.executable).parent


def label(size: int) -> str:
    if size == 0:
        return "shipped plugins only"
    plugins = "all plugins" if size <= 100 else "100 of them plugins"
    return f"+{size:,} distributions, {plugins}"


def start_up(size: int, workdir: Path, env: dict[str, str], runs: int) -> tuple[list[Figure], dict[str, float]]:
    bare = workdir / "bare.py"
    bare.write_text(BARE_STEVEDORE)
    commands = {"bare": [sys.executable, str(bare)], "greeter": [str(HERE / "greeter"), "--driver", "english"]}
    if size == 0:
        alike = workdir / "bare_collector_alike.py"
        alike.write_text(BARE_STEVEDORE_COLLECTOR_ALIKE)
        commands["alike"] = [sys.executable, str(alike)]
    times = compare_many(commands, env=env, cwd=str(workdir), runs=runs)
    figures = [
        ratio_figure(
            f"`greeter --driver english` (vs the bare stevedore script), {label(size)}",
            times["bare"],
            times["greeter"],
            1.10,
            ms,
        )
    ]
    if size == 0:
        figures[0] = figures[0]._replace(goal="≤ 1.10 (stretch ≤ 1.05)")
        figures.append(
            ratio_figure(
                "`greeter --driver english` (vs the bare script with the collector set alike: greeter's own cost)",
                times["alike"],
                times["greeter"],
                None,
                ms,
            )
        )
    return figures, times


def size_zero_extras(workdir: Path, env: dict[str, str], runs: int) -> list[Figure]:
    direct = workdir / "direct.py"
    direct.write_text(DIRECT_IMPORT)
    times = compare_many(
        {"pass": [sys.executable, "-c", "pass"], "core": [sys.executable, "-c", "import greeter_core"]},
        env=env,
        cwd=str(workdir),
        runs=runs,
    )
    core = ratio_figure(
        '`python -c "import greeter_core"` (vs `python -c pass`)', times["pass"], times["core"], 1.3, ms
    )
    times = compare_many(
        {"direct": [sys.executable, str(direct)], "greeter": [str(HERE / "greeter"), "--driver", "english"]},
        env=env,
        cwd=str(workdir),
        runs=runs,
    )
    direct_figure = ratio_figure(
        "`greeter --driver english` (vs a script importing the English class directly: the price of discovery)",
        times["direct"],
        times["greeter"],
        None,
        ms,
    )
    return [core, direct_figure]


def listing(size: int, base: Path, workdir: Path, env: dict[str, str], runs: int) -> tuple[Figure, dict[str, float]]:
    mark = workdir.parent / "imported.txt"
    env = {**env, "BENCH_IMPORT_MARK": str(mark)}
    times = compare_many(
        {"base": [str(base / "bin" / "greeter"), "list"], "here": [str(HERE / "greeter"), "list"]},
        env=env,
        cwd=str(workdir),
        runs=runs,
    )
    imported = mark.read_text().split() if mark.exists() else []
    figure = ratio_figure(
        f"`greeter list`, {label(size)} (vs `greeter list`, shipped plugins only)",
        times["base"],
        times["here"],
        2.0,
        ms,
    )
    figure = figure._replace(goal=f"{figure.goal}, none imported")
    if imported:
        figure = figure._replace(met=False, value=f"{figure.value} ({len(imported)} plugins imported!)")
    return figure, times


def hot_swap(size: int, workdir: Path, env: dict[str, str], swaps: int) -> tuple[Figure, dict[str, float]]:
    """Request -> first greeting of the new driver, in ``greeter run --interval 0`` (in process)."""
    latencies = swap_latencies(str(HERE / "greeter"), "none", swaps, env=env, cwd=str(workdir))
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    figure = Figure(
        f"hot swap in `greeter run --interval 0`, request → first new greeting (in process), {label(size)}",
        f"p50 {ms(p50)}, p99 {ms(p99)}",
        f"{len(latencies)} swaps",
        None,
        f"p50 ≤ {SWAP_P50 * 1000:.0f} ms, p99 ≤ {SWAP_P99 * 1000:.0f} ms",
        p50 <= SWAP_P50 and p99 <= SWAP_P99,
    )
    return figure, {"p50": p50, "p99": p99}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, required=True, help="extra distributions installed in this venv")
    parser.add_argument("--base", type=Path, required=True, help="the venv with the shipped plugins only")
    parser.add_argument("--runs", type=int, default=20, help="alternating runs per process figure (default: 20)")
    parser.add_argument("--swaps", type=int, default=100, help="hot swaps to time (default: 100)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    figures: list[Figure] = []
    data: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="growth-") as scratch:
        # The scripts' own directory is on their sys.path, a part of stevedore's cache key: it never changes.
        workdir = Path(scratch) / "scripts"
        workdir.mkdir()
        started, times = start_up(args.size, workdir, env, args.runs)
        figures += started
        data[started[0].name] = {"size": args.size, "bare": times["bare"], "greeter": times["greeter"]}
        if args.size == 0:
            figures += size_zero_extras(workdir, env, args.runs)
        else:
            listed, times = listing(args.size, args.base, workdir, env, args.runs)
            figures.append(listed)
            data[listed.name] = {"size": args.size, "list": times["here"], "list_base": times["base"]}
        swapped, latency = hot_swap(args.size, workdir, env, args.swaps)
        figures.append(swapped)
        data[swapped.name] = {"size": args.size, **latency}
    emit(figures, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
