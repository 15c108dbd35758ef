"""The isolated figures of greeter's bench, measured inside the venv of the interpreter being measured.

``VENV/bin/python bench/isolation.py --runs N`` prints a JSON list of figures
on stdout, each ``{"name", "value", "baseline", "ratio", "goal", "met"}``
(``harness.Figure``'s fields; ``ratio`` and ``met`` are null for a "report"
row), and exits 0. ``bench/run.py`` runs it once per interpreter; it owns
nothing of the run but a scratch directory of its own. The environment it
gets (``XDG_CACHE_HOME`` among it) is passed on to every process it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, compare_calls, control_url, greeter_run, ms, percentile, ratio_figure, rss_kib, us

HERE = Path(__file__).resolve().parent
#: The venv's ``greeter`` script, beside the interpreter running this one.
GREETER = str(Path(sys.executable).parent / "greeter")


def isolated_greet(repeats: int) -> list[Figure]:
    import greeter_core
    from greeter_core.worker.protocol import GREET

    here, there = socket.socketpair()
    echo = subprocess.Popen(
        [sys.executable, str(HERE / "echo_worker.py"), str(there.fileno())], pass_fds=[there.fileno()]
    )
    there.close()
    request = struct.pack("!I", 1 + len(b"Universe")) + bytes((GREET,)) + b"Universe"  # what greet() sends

    def echo_call() -> bytes:
        here.sendall(request)
        return here.recv(65536)

    # Host, echo and worker on one CPU: left to the scheduler, each worker lands on the host's CPU
    # or the other one at random, and a wake-up across CPUs (tens of µs on a VM) swamps the figure.
    host_cpus = os.sched_getaffinity(0)
    cpu = {min(host_cpus)}
    with greeter_core.load("english", isolation="process") as worker:
        for pid in (0, echo.pid, worker.status()["pid"]):
            assert isinstance(pid, int)
            os.sched_setaffinity(pid, cpu)
        try:
            base, subject = compare_calls(echo_call, lambda: worker.greet("Universe"), repeats=repeats)
        finally:
            os.sched_setaffinity(0, host_cpus)
    here.close()
    echo.wait()
    figure = ratio_figure(
        "isolated `greet()` round trip (vs a raw-bytes echo on the same kind of socketpair, no decoding; one CPU)",
        base,
        subject,
        1.5,
        us,
    )
    rate = Figure(
        "isolated calls per second (one worker, one caller)",
        f"{1 / subject:,.0f}/s",
        f"{1 / base:,.0f}/s",
        None,
        "report",
        None,
    )
    return [figure, rate]


def hot_swap(swaps: int, workdir: str) -> Figure:
    """Request -> first greeting of the new driver, in ``greeter run --interval 0 --isolation process``."""
    proc = greeter_run(GREETER, "process", interval="0", stdout=subprocess.PIPE, env=dict(os.environ), cwd=workdir)
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
        for _ in range(swaps):
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
        "hot swap in `greeter run --interval 0`, request → first new greeting (isolated: a new worker per swap)",
        f"p50 {ms(p50)}, p99 {ms(p99)}",
        f"{len(latencies)} swaps",
        None,
        "report",
        None,
    )


def memory(workdir: str) -> list[Figure]:
    env = dict(os.environ)
    floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    figures = []
    try:
        time.sleep(1.0)
        baseline = rss_kib(floor.pid)
        proc = greeter_run(GREETER, "process", interval="0.2", stdout=subprocess.DEVNULL, env=env, cwd=workdir)
        try:
            url = control_url(proc)
            time.sleep(1.0)
            status = json.load(urllib.request.urlopen(f"{url}/status", timeout=60))
            host = rss_kib(proc.pid)
            figures.append(
                Figure(
                    "memory: `greeter run` host RSS, isolation process",
                    f"{host / 1024:.1f} MiB",
                    f"{baseline / 1024:.1f} MiB",
                    host / baseline,
                    "report",
                    None,
                )
            )
            worker = rss_kib(status["worker"]["pid"])
            figures.append(
                Figure(
                    "memory: each isolated worker's RSS",
                    f"{worker / 1024:.1f} MiB",
                    f"{baseline / 1024:.1f} MiB",
                    worker / baseline,
                    "report",
                    None,
                )
            )
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    finally:
        floor.kill()
        floor.wait()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=25, help="alternating repeats per call figure; swaps timed: at least 20"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isolation-") as workdir:
        figures = [*isolated_greet(args.runs), hot_swap(max(20, args.runs), workdir), *memory(workdir)]
    json.dump([figure._asdict() for figure in figures], sys.stdout, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
