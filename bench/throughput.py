"""``greeter run --interval 0``, in process and isolated: greetings per second, and the host's memory.

``VENV/bin/python bench/throughput.py --greetings N --rounds R`` (a tenth of
N under isolation) prints a JSON list of figures on stdout (see
``harness.emit``). The baseline is a bare loop
over the same plugin object (built by stevedore's DriverManager) that writes
and flushes each greeting, as ``greeter run`` does: one ``write(2)`` per line.
Both write into a pipe that this script drains; the rate is taken between
the first greeting and the last, so start-up is left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, control_url, emit, greeter_run, rss_kib

BARE_LOOP = """\
import sys
from stevedore import DriverManager
from greeter_core.api import HostContext
manager = DriverManager("greeter.plugins", "english", invoke_on_load=True,
                        invoke_kwds={"context": HostContext.create("english")})
greeter, out = manager.extensions[0].obj, sys.stdout
for _ in range(int(sys.argv[1])):
    out.write(greeter.greet("Universe") + "\\n")
    out.flush()
"""

HERE = Path(sys.executable).parent


def rate(argv: list[str], greetings: int, env: dict[str, str], cwd: str) -> float:
    """Greetings per second that *argv* writes to its stdout, from its first line to its last."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines, first, last = 0, None, 0.0
    while chunk := os.read(fd, 1 << 20):
        last = time.perf_counter()
        if first is None:
            first, lines = last, -1  # the time of the first chunk is the start: its first line is not counted
        lines += chunk.count(b"\n")
    if proc.wait() != 0 or first is None or lines + 1 != greetings:
        raise SystemExit(f"bench: {' '.join(argv)} wrote {lines + 1} of {greetings} greetings")
    return lines / (last - first)


def throughput(greetings: int, rounds: int, workdir: str, env: dict[str, str]) -> list[Figure]:
    bare = Path(workdir, "bare_loop.py")
    bare.write_text(BARE_LOOP)
    run = [str(HERE / "greeter"), "run", "--driver", "english", "--interval", "0", "--count"]
    # Isolated greetings are some 70 times slower: a tenth as many still take the longest of the three.
    counts = {"bare": greetings, "none": greetings, "process": max(1, greetings // 10)}
    commands = {
        "bare": [sys.executable, str(bare), str(counts["bare"])],
        "none": [*run, str(counts["none"])],
        "process": [*run, str(counts["process"]), "--isolation", "process"],
    }
    rates: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(rounds):
        for name in commands if i % 2 == 0 else reversed(list(commands)):
            rates[name].append(rate(commands[name], counts[name], env, workdir))
    base = statistics.median(rates["bare"])
    figures = []
    for isolation in ("none", "process"):
        subject = statistics.median(rates[isolation])
        figures.append(
            Figure(
                f"`greeter run --interval 0 --isolation {isolation}`, greetings per second "
                "(vs a bare loop: greet(), write, flush)",
                f"{subject:,.0f}/s",
                f"{base:,.0f}/s",
                base / subject,
                "report (ratio: time per greeting)",
                None,
            )
        )
    return figures


def memory(workdir: str, env: dict[str, str]) -> Figure:
    floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    try:
        time.sleep(1.0)
        baseline = rss_kib(floor.pid)
        proc = greeter_run(
            str(HERE / "greeter"), "none", interval="0.2", stdout=subprocess.DEVNULL, env=env, cwd=workdir
        )
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
    return Figure(
        "memory: `greeter run` host RSS, isolation none (vs an idle `python -c`)",
        f"{host / 1024:.1f} MiB",
        f"{baseline / 1024:.1f} MiB",
        host / baseline,
        "report",
        None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--greetings", type=int, default=200_000, help="greetings per run (default: 200,000)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs of each (default: 6)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="throughput-") as workdir:
        emit([*throughput(args.greetings, args.rounds, workdir, env), memory(workdir, env)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
