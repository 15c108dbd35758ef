"""greeter's benchmark suite: every figure against a baseline measured in the same run, on every interpreter.

Run it with ``tox -e bench`` (or ``python bench/run.py`` in a venv holding
setuptools, uv and matplotlib). For each interpreter (3.11, 3.12 and 3.13 by
default, ``--python`` to choose) it builds one venv per size of installation
(``environments.SIZES``), runs each group of figures as a script inside the
venv being measured (each prints a JSON list of figures), and prints one
Markdown table with a column per interpreter, the conditions above it.
``--write`` also writes the table to BENCHMARKS.md and the cost-growth curve
to docs/cost-growth.svg (``tox -e bench -- --write``); an ordinary run leaves
both alone and draws the curve into .bench/ (untracked).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from environments import PLUGINS, REPO, SIZES, Venv, add_distributions, build_wheels, find_interpreter, make_venv
from environments import stevedore_cache as stevedore_cache_on
from harness import cpu_description, run_group

INTERPRETERS = ("3.11", "3.12", "3.13")
CURVE = REPO / "docs" / "cost-growth.svg"

#: The sections of the table, in order, and the groups whose figures go in each.
SECTIONS = {
    "start-up": "Start-up: the one-shot greeting (goal 1)",
    "growth": "How cost grows with what is installed (goal 4)",
    "greeting": "Greeting in process (goal 5)",
    "isolation": "Isolation (goals 2, 3, 5)",
}


class Results:
    """Every figure of the run, by interpreter, in the order they first came; and the curve's numbers."""

    def __init__(self) -> None:
        self.order: dict[str, list[str]] = {section: [] for section in SECTIONS}
        self.figures: dict[str, dict[str, dict[str, object]]] = {}  # name -> version -> figure
        self.curve: dict[str, dict[int, dict[str, float]]] = {}  # version -> size -> numbers
        self.cache: dict[str, bool] = {}  # version -> stevedore's cache on
        self.versions: dict[str, str] = {}  # "3.12" -> "3.12.1"

    def add(self, section: str, version: str, figures: Iterable[dict[str, object]], prefix: str = "") -> None:
        for figure in figures:
            name = f"{prefix}{figure['name']}"
            if name not in self.figures:
                self.figures[name] = {}
                self.order[section].append(name)
            self.figures[name][version] = {**figure, "name": name}
            data = figure.get("data")
            if isinstance(data, dict) and "size" in data:
                size = int(data["size"])
                self.curve.setdefault(version, {}).setdefault(size, {}).update(
                    {key: float(value) for key, value in data.items() if key != "size"}
                )


def measure(
    version: str, args: argparse.Namespace, wheels: Path, workdir: Path, env: dict[str, str], results: Results
) -> None:
    """Every figure group, for the interpreter *version*, each inside its venv."""
    python = find_interpreter(version)
    say(f"{version}: {python}: building {len(SIZES)} venvs")
    venvs: dict[int, Venv] = {}
    for size in SIZES:
        venvs[size] = make_venv(workdir / f"py{version}-{size}", wheels, python)
        if size:
            add_distributions(venvs[size], count=size, plugins=min(size, PLUGINS))
    base = venvs[0]
    results.cache[version] = stevedore_cache_on(base, env)
    results.versions[version] = subprocess.run(
        [base.python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    cwd = str(workdir)

    def group(section: str, venv: Venv, script: str, *options: str, prefix: str = "") -> None:
        say(f"{version}: {script} {' '.join(options)}")
        results.add(section, version, run_group(venv.python, script, options, env=env, cwd=cwd), prefix)

    runs, swaps = str(args.runs), str(args.swaps)
    for size in SIZES:
        section = "start-up" if size == 0 else "growth"
        group(
            section,
            venvs[size],
            "growth.py",
            "--size",
            str(size),
            "--base",
            str(base.path),
            "--runs",
            runs,
            "--swaps",
            swaps,
        )
    group("greeting", base, "calls.py", "--repeats", str(args.repeats))
    group("greeting", base, "throughput.py", "--greetings", str(args.greetings))
    group("isolation", base, "isolation.py", "--runs", runs, "--repeats", str(args.repeats), "--swaps", swaps)
    biggest = max(SIZES)
    group(
        "growth",
        venvs[biggest],
        "isolation.py",
        "--only",
        "swap",
        "--swaps",
        swaps,
        prefix=f"+{biggest:,} distributions: ",
    )
    for venv in venvs.values():
        shutil.rmtree(venv.path, ignore_errors=True)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------------------------------


def cell(figure: dict[str, object] | None, cache_on: bool) -> str:
    if figure is None:
        return "—"
    ratio = figure.get("ratio")
    met = figure.get("met")
    verdict = {True: "met", False: "**missed**", None: ""}[met]  # type: ignore[index]
    if not cache_on and "greeter --driver" in str(figure["name"]) and met is not None:
        verdict = "cache off"
    head = f"**{ratio:.3f}**" if isinstance(ratio, float) else str(figure["value"])
    detail = f"{figure['value']} vs {figure['baseline']}" if isinstance(ratio, float) else str(figure["baseline"])
    return " ".join(part for part in (head, verdict, f"· {detail}") if part)


def report(results: Results, elapsed: float, args: argparse.Namespace) -> str:
    versions = list(results.versions)
    off = "**off** (its venv is under /tmp: the start-up figures measure a cold scan)"
    cache = ", ".join(f"{version}: {'on' if results.cache[version] else off}" for version in versions)
    lines = [
        "# Benchmarks",
        "",
        f"Measured {date.today().isoformat()} by `tox -e bench` (`bench/run.py`) on {cpu_description()}, "
        f"{platform.system()} {platform.release()}; CPython "
        + ", ".join(results.versions[version] for version in versions)
        + f"; the whole suite took {elapsed:.0f} s.",
        "",
        "Conditions: every venv installed from wheels with its bytecode compiled (`uv pip install "
        f"--compile-bytecode`), outside /tmp; stevedore's entry-point cache {cache}. "
        f"{args.runs} alternating runs per process figure, {args.repeats} alternating repeats per call figure, "
        f"{args.swaps} in-process swaps, medians. Nothing is pinned to a CPU unless its row says so. "
        "The curve of how cost grows with the installed distributions: `docs/cost-growth.svg`.",
        "",
        "Every ratio is subject / baseline, both measured in this run, each cell as "
        "**ratio** verdict, then subject vs baseline. The machines are noisy: compare ratios, not absolute "
        "times, across runs.",
    ]
    for section, title in SECTIONS.items():
        names = results.order[section]
        if not names:
            continue
        lines += ["", f"## {title}", "", "| figure | goal | " + " | ".join(versions) + " |"]
        lines.append("|---|---|" + "---|" * len(versions))
        for name in names:
            by_version = results.figures[name]
            goal = next(str(figure["goal"]) for figure in by_version.values())
            cells = [cell(by_version.get(version), results.cache.get(version, True)) for version in versions]
            lines.append(f"| {name} | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw_curve(results: Results, path: Path) -> bool:
    """The cost-growth curve, one panel per interpreter; False (and why, on stderr) when it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("svg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no curve (tox -e bench installs it)")
        return False
    versions = [version for version in results.versions if results.curve.get(version)]
    if not versions:
        return False
    plt.rcParams["svg.hashsalt"] = "greeter-bench"  # the same ids every run: a diff shows only what moved
    figure, axes = plt.subplots(1, len(versions), figsize=(4.2 * len(versions), 4.0), sharey=True, squeeze=False)
    series = [
        ("bare", "bare stevedore script", "o-"),
        ("greeter", "greeter --driver english", "s-"),
        ("list", "greeter list", "^-"),
        ("p50", "hot swap, in process (p50)", "d-"),
    ]
    for ax, version in zip(axes[0], versions, strict=True):
        points = results.curve[version]
        if 0 in points:
            bases = [values["list_base"] for values in points.values() if "list_base" in values]
            if bases:
                points[0]["list"] = sorted(bases)[len(bases) // 2]
        for key, label, style in series:
            sizes = sorted(size for size, values in points.items() if key in values)
            ax.plot([max(size, 1) for size in sizes], [points[size][key] * 1000 for size in sizes], style, label=label)
        ax.set_xscale("log")
        ax.set_xticks([max(size, 1) for size in SIZES], [f"{size:,}" for size in SIZES])
        ax.set_title(f"CPython {results.versions[version]}")
        ax.set_xlabel("extra installed distributions")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("milliseconds (median)")
    axes[0][0].set_ylim(bottom=0)
    axes[0][-1].legend(loc="upper left", fontsize="small")
    figure.suptitle("How cost grows with what is installed (100 of the extra distributions are plugins)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None, "Creator": "greeter bench/run.py"})
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(REPO / "BENCHMARKS.md"),
        metavar="PATH",
        help="also write the table to PATH (default: BENCHMARKS.md) and the curve to docs/cost-growth.svg; "
        "without it, only print",
    )
    parser.add_argument(
        "--python",
        action="append",
        metavar="VERSION",
        help=f"an interpreter to measure, e.g. 3.12; repeatable (default: {', '.join(INTERPRETERS)})",
    )
    parser.add_argument("--runs", type=int, default=20, help="alternating runs per process figure (default: 20)")
    parser.add_argument("--repeats", type=int, default=15, help="alternating repeats per call figure (default: 15)")
    parser.add_argument("--swaps", type=int, default=100, help="hot swaps to time, per kind (default: 100)")
    parser.add_argument(
        "--greetings", type=int, default=200_000, help="greetings per throughput run (default: 200,000)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    scratch = scratch_dir()
    scratch.mkdir(parents=True, exist_ok=True)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="run-", dir=scratch) as directory:
        workdir = Path(directory)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
        env["XDG_CACHE_HOME"] = str(workdir / "cache")
        say("building the wheels")
        wheels = build_wheels(workdir / "wheels")
        for version in args.python or INTERPRETERS:
            measure(version, args, wheels, workdir, env, results)
    text = report(results, time.monotonic() - started, args)
    print(text)
    curve = CURVE if args.write else scratch / "cost-growth.svg"
    if draw_curve(results, curve):
        say(f"drew {curve}")
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        say(f"wrote {args.write}")
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
        say(
            f"{REPO} and {cache} are under /tmp, where stevedore keeps no entry-point cache: the start-up "
            'figures measure a cold scan, and say "cache off"'
        )
        return cache
    say(f"this checkout is under /tmp, where stevedore keeps no entry-point cache; the venvs go to {cache} instead")
    return cache


if __name__ == "__main__":
    raise SystemExit(main())
