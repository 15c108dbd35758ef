"""The isolated figures of greeter's benchmarks, measured inside one venv's interpreter; JSON on stdout.

Run it with the interpreter of a venv holding greeter-core and the shipped
plugins (compiled bytecode, outside ``/tmp`` so that stevedore keeps its
cache)::

    VENV/bin/python bench/isolation.py --runs 20

It prints a JSON list of figures, each ``{"name", "value", "baseline",
"ratio", "goal", "met"}`` (the fields of :class:`harness.Figure`; ``ratio``
and ``met`` are null on a "report" row), and what it is doing on stderr.
Every figure has its baseline measured in the same run, interleaved:

- the isolated ``greet()`` round trip against an echo of the same bytes
  over the same kind of socketpair (host, echo and worker on one CPU: a
  wake-up across CPUs costs tens of microseconds on a VM, and where the
  scheduler puts each process is random);
- a worker's start (``start()`` until the handshake is done), forked from
  the fork server against a fresh interpreter;
- the hot swap in ``greeter run --interval 0``, request to the first
  greeting of the new plugin, isolated against in process;
- the memory of the host, the fork server and a worker against an idle
  ``python -c``;
- a swap to a plugin in its own environment (``greeter install``) against
  one to a host plugin, both isolated; ``greeter install`` of a small plugin
  into a new environment against ``uv pip install`` of the same wheel into
  greeter's own.

Greetings per second under isolation are ``bench/throughput.py``'s.

With a greeter-core that has no fork server (an older one), the figures
about it are left out and workers start cold.
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
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, compare_calls, emit, ms, percentile, rss_kib, running, swap_latencies, us

HERE = Path(__file__).resolve().parent


def note(message: str) -> None:
    print(f"bench/isolation: {message}", file=sys.stderr, flush=True)


def has_fork_server() -> bool:
    try:
        from greeter_core.worker.forkserver import supported
    except ImportError:
        return False
    return supported()


def figure(
    name: str, value: str, baseline: str, ratio: float | None, goal: str = "report", met: bool | None = None
) -> Figure:
    return Figure(name, value, baseline, ratio, goal, met)


# -- the round trip -------------------------------------------------------------------------------


def round_trip(repeats: int, cpu: int) -> list[Figure]:
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

    mine = os.sched_getaffinity(0)
    with greeter_core.load("english", isolation="process") as worker:
        for pid in (0, echo.pid, worker.status()["pid"]):
            assert isinstance(pid, int)
            os.sched_setaffinity(pid, {cpu})
        try:
            base, subject = compare_calls(echo_call, lambda: worker.greet("Universe"), repeats=repeats)
        finally:
            os.sched_setaffinity(0, mine)
    here.close()
    echo.wait()
    ratio = subject / base
    return [
        figure(
            "isolated `greet()` round trip (vs a raw-bytes echo on the same kind of socketpair, no decoding; one CPU)",
            us(subject),
            us(base),
            ratio,
            "≤ 1.50",
            ratio <= 1.5,
        ),
        figure(
            "isolated calls per second (one worker, one caller; one CPU)",
            f"{1 / subject:,.0f}/s",
            f"{1 / base:,.0f}/s",
            None,
        ),
    ]


# -- a worker's start ----------------------------------------------------------------------------


def worker_start(runs: int) -> list[Figure]:
    """``start()`` until the handshake is done: a fresh interpreter, and forked from the fork server."""
    from greeter_core import find
    from greeter_core.worker.client import WorkerPlugin

    record = find("english")
    server = None
    if has_fork_server():
        from greeter_core.worker.forkserver import ForkServer

        server = ForkServer()

    confined: dict[str, object] = {}
    if sandboxed():
        from greeter_core.worker.sandbox import Sandbox

        confined = {"sandbox": Sandbox("off")}

    def start(forkserver: object, **extra: object) -> float:
        worker = (
            WorkerPlugin(record, call_timeout=5, forkserver=forkserver, **extra)  # type: ignore[arg-type]
            if forkserver
            else WorkerPlugin(record, call_timeout=5, **extra)  # type: ignore[arg-type]
        )
        began = time.perf_counter()
        worker.start()
        took = time.perf_counter() - began
        worker.close()
        return took

    try:
        if server is not None:
            start(server)  # the fork server's own start is not a worker's
        cold, forked, unconfined = [], [], []
        for i in range(runs):
            kinds = [(None, cold, {}), (server, forked, {}), (server, unconfined, confined)]
            for forkserver, into, extra in kinds if i % 2 == 0 else kinds[::-1]:
                if (into is not cold and server is None) or (into is unconfined and not confined):
                    continue
                into.append(start(forkserver, **extra))
    finally:
        if server is not None:
            server.close()
    figures = [
        figure(
            "isolated worker start → ready, a fresh interpreter (`python -I`)",
            ms(statistics.median(cold)),
            f"{len(cold)} starts",
            None,
        )
    ]
    if forked:
        base, subject = statistics.median(cold), statistics.median(forked)
        figures.append(
            figure(
                "isolated worker start → ready, forked from the fork server (vs a fresh interpreter)",
                ms(subject),
                ms(base),
                subject / base,
            )
        )
    if forked and unconfined:
        base, subject = statistics.median(unconfined), statistics.median(forked)
        figures.append(
            figure(
                "isolated worker start → ready, forked, sandbox on (vs the same with --sandbox off)",
                ms(subject),
                ms(base),
                subject / base,
                "≤ +1 ms",
                subject - base <= 0.001,
            )
        )
    return figures


def sandboxed() -> bool:
    """Whether this greeter-core confines its workers (an older one has no sandbox to turn off)."""
    try:
        import greeter_core.worker.sandbox  # noqa: F401
    except ImportError:
        return False
    return True


# -- greeter run ---------------------------------------------------------------------------------

#: The venv's ``greeter`` script, beside the interpreter running this one.
GREETER = str(Path(sys.executable).with_name("greeter"))


def hot_swap(workdir: Path, env: dict[str, str], swaps: int, rounds: int) -> list[Figure]:
    inproc: list[float] = []
    isolated: list[float] = []  # confined: the sandbox is on by default
    unconfined: list[float] = []
    kinds = [("none", inproc, env), ("process", isolated, env)]
    if sandboxed():
        kinds.append(("process", unconfined, {**env, "GREETER_SANDBOX": "off"}))
    for i in range(rounds):
        # The first two swaps of each run warm up (the fork server's first forks, the page cache).
        for isolation, into, its_env in kinds if i % 2 == 0 else kinds[::-1]:
            into += swap_latencies(GREETER, isolation, swaps // rounds, env=its_env, cwd=str(workdir), warmup=2)
    base50, base99 = statistics.median(inproc), percentile(inproc, 0.99)
    p50, p99 = statistics.median(isolated), percentile(isolated, 0.99)
    how = "forked from the fork server" if has_fork_server() else "a fresh interpreter per swap"
    if sandboxed():
        how += ", sandbox on"
    return [
        *_swap_rows(p50, p99, base50, base99, how, len(isolated), len(inproc)),
        *_sandbox_rows(isolated, unconfined),
    ]


def _sandbox_rows(confined: list[float], unconfined: list[float]) -> list[Figure]:
    """The isolated swap with the sandbox on against the same with ``--sandbox off``, same run."""
    if not unconfined:
        return []
    on50, on99 = statistics.median(confined), percentile(confined, 0.99)
    off50, off99 = statistics.median(unconfined), percentile(unconfined, 0.99)
    return [
        figure("isolated hot swap, p50, sandbox on (vs --sandbox off)", ms(on50), ms(off50), on50 / off50),
        figure("isolated hot swap, p99, sandbox on (vs --sandbox off)", ms(on99), ms(off99), on99 / off99),
    ]


def _swap_rows(
    p50: float, p99: float, base50: float, base99: float, how: str, isolated: int, inproc: int
) -> list[Figure]:
    return [
        figure(
            f"isolated hot swap in `greeter run --interval 0`, request → first new greeting, p50 "
            f"({how}; vs in process)",
            ms(p50),
            ms(base50),
            p50 / base50,
            "≤ 25 ms",
            p50 <= 0.025,
        ),
        figure(
            f"isolated hot swap, p99 ({isolated} swaps; vs in process, {inproc} swaps)",
            ms(p99),
            ms(base99),
            p99 / base99,
            "≤ 60 ms",
            p99 <= 0.060,
        ),
    ]


# -- memory --------------------------------------------------------------------------------------


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages counted in part, so the fork server's pages are not counted twice."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def memory(workdir: Path, env: dict[str, str]) -> list[Figure]:
    floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    figures = []
    try:
        time.sleep(1.0)
        base_rss, base_pss = rss_kib(floor.pid), pss_kib(floor.pid)
        with running(GREETER, "process", interval="0.2", env=env, cwd=str(workdir)) as (_, url):
            urllib.request.urlopen(f"{url}/?mod=chinese", timeout=60).read()  # a swap: a second worker came and went
            time.sleep(1.0)
            worker = json.load(urllib.request.urlopen(f"{url}/status", timeout=60))["worker"]
            keeper = _parent(worker["pid"])
            host = _parent(worker.get("forkserver") or keeper)  # the keeper's parent, or the fork server's
            processes = [("the `greeter run` host", host)]
            if worker.get("forkserver"):
                processes.append(("the fork server", worker["forkserver"]))
            processes += [("a worker's keeper", keeper), ("a worker", worker["pid"])]
            for label, pid in processes:
                rss, pss = rss_kib(pid), pss_kib(pid)
                figures.append(
                    figure(
                        f"memory under isolation: {label}, RSS / Pss (vs an idle `python -c`)",
                        f"{rss / 1024:.1f} / {pss / 1024:.1f} MiB",
                        f"{base_rss / 1024:.1f} / {base_pss / 1024:.1f} MiB",
                        rss / base_rss,
                    )
                )
    finally:
        floor.kill()
        floor.wait()
    return figures


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("PPid:")).split()[1])


# -- plugins in environments of their own (greeter install) --------------------------------------

#: The plugins built for these figures: (distribution, entry-point name, the word they greet with).
ENV_PLUGINS = (("greeter-benchalpha", "benchalpha", "Alpha"), ("greeter-benchbeta", "benchbeta", "Beta"))

#: The small plugin installed over and over: into a new environment, and into the host's.
INSTALLED = ("greeter-benchinst", "benchinst", "Inst")


def plugin_wheel(house: Path, distribution: str, driver: str, word: str) -> Path:
    """A wheel of a one-module plugin, written as a build backend lays it out (offline: no backend needed)."""
    import base64
    import hashlib
    import zipfile

    module = distribution.replace("-", "_")
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": (
            "from greeter_core import Greeter\n\n\nclass Plugin(Greeter):\n"
            f"    def greet(self, name):\n        return '{word} ' + (name or 'Universe')\n"
        ),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\nRequires-Dist: greeter-core\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[greeter.plugins]\n{driver} = {module}:Plugin\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = house / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def find_uv() -> str | None:
    """The uv that builds the environments: the ``uv`` package's, else ``uv`` on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        import shutil

        return shutil.which("uv")


def own_environments(workdir: Path, env: dict[str, str], swaps: int, rounds: int, installs: int) -> list[Figure]:
    """A swap to a plugin in its own environment against one to a host plugin (both isolated, same run); and
    ``greeter install`` of a small plugin into a new environment against ``uv pip install`` into the host's."""
    uv = find_uv()
    if uv is None:
        note("no uv (the uv package or uv on PATH): greeter install cannot build environments; figures left out")
        return []
    house = workdir / "wheelhouse"
    house.mkdir()
    for plugin in (*ENV_PLUGINS, INSTALLED):
        plugin_wheel(house, *plugin)
    env = {**env, "XDG_DATA_HOME": str(workdir / "data"), "GREETER_UV": uv, "UV_NO_CONFIG": "1"}
    links = ["--no-index", "--find-links", str(house)]

    def run(*argv: str) -> float:
        began = time.perf_counter()
        subprocess.run(argv, env=env, cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return time.perf_counter() - began

    run(GREETER, "install", *links, *(dist for dist, _, _ in ENV_PLUGINS))
    host: list[float] = []
    own: list[float] = []
    own_lines = {driver: f"{word} Universe" for _, driver, word in ENV_PLUGINS}
    try:
        for _ in range(rounds):
            for into, lines in ((host, None), (own, own_lines)):
                into += swap_latencies(
                    GREETER, "process", swaps // rounds, env=env, cwd=str(workdir), warmup=2, first_lines=lines
                )
    finally:
        run(GREETER, "uninstall", *(dist for dist, _, _ in ENV_PLUGINS))
    distribution = INSTALLED[0]
    kinds: dict[str, tuple[list[str], list[str]]] = {
        "greeter install": ([GREETER, "install", *links, distribution], [GREETER, "uninstall", distribution]),
        "uv pip install": (
            [uv, "pip", "install", "--quiet", "--python", sys.executable, *links, distribution],
            [uv, "pip", "uninstall", "--quiet", "--python", sys.executable, distribution],
        ),
    }
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        kinds["pip install"] = ([*pip, "install", *links, distribution], [*pip, "uninstall", "--yes", distribution])
    else:
        note(f"{sys.executable} has no pip: the `pip install` figure is left out")
    env = {name: value for name, value in env.items() if not name.startswith("PIP_")}  # plain pip: no wheelhouse
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for install, remove in kinds.values():
        run(*install), run(*remove)  # each installer's cache holds the wheel once
    for i in range(installs):
        order = list(kinds)[i % len(kinds) :] + list(kinds)[: i % len(kinds)]
        for kind in order:
            install, remove = kinds[kind]
            times[kind].append(run(*install))
            run(*remove)
    medians = {kind: statistics.median(seconds) for kind, seconds in times.items()}
    p50, p99 = statistics.median(own), percentile(own, 0.99)
    base50, base99 = statistics.median(host), percentile(host, 0.99)
    return [
        figure(
            "isolated hot swap to a plugin in its own environment (`greeter install`), p50 (vs host plugins, "
            "isolated too)",
            ms(p50),
            ms(base50),
            p50 / base50,
            "≤ 25 ms",
            p50 <= 0.025,
        ),
        figure(
            f"isolated hot swap to a plugin in its own environment, p99 ({len(own)} swaps; vs host plugins, "
            f"{len(host)} swaps)",
            ms(p99),
            ms(base99),
            p99 / base99,
            "≤ 60 ms",
            p99 <= 0.060,
        ),
        *(
            figure(
                f"`greeter install` of a one-module plugin from a wheelhouse into a new environment, median of "
                f"{installs} (vs `{kind}` of the same wheel into greeter's environment)",
                ms(medians["greeter install"]),
                ms(medians[kind]),
                medians["greeter install"] / medians[kind],
            )
            for kind in kinds
            if kind != "greeter install"
        ),
    ]


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="alternating worker starts per kind (default: 20)")
    parser.add_argument("--repeats", type=int, default=25, help="alternating repeats of the round trip (default: 25)")
    parser.add_argument("--swaps", type=int, default=100, help="hot swaps to time in each mode (default: 100)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of swaps, in process and isolated (default: 2)"
    )
    parser.add_argument(
        "--installs", type=int, default=10, help="alternating installs of each kind, for `environments` (default: 10)"
    )
    parser.add_argument(
        "--cpu", type=int, default=None, help="the CPU pinned figures run on (default: the lowest allowed)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["round-trip", "start", "swap", "memory", "environments"],
        help="measure only these",
    )
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    if sys.prefix.startswith("/tmp"):
        note(f"{sys.prefix} is under /tmp, where stevedore keeps no entry-point cache: process figures are cold scans")
    wanted = set(args.only or ["round-trip", "start", "swap", "memory", "environments"])
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="isolation-", dir=Path(sys.prefix).parent) as scratch:
        workdir = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
        env["XDG_CACHE_HOME"] = str(workdir / "cache")
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]  # for this process's own stevedore, not imported yet
        steps: list[tuple[str, Callable[[], list[Figure]]]] = [
            ("round-trip", lambda: round_trip(args.repeats, cpu)),
            ("start", lambda: worker_start(args.runs)),
            ("swap", lambda: hot_swap(workdir, env, args.swaps, args.rounds)),
            ("memory", lambda: memory(workdir, env)),
            ("environments", lambda: own_environments(workdir, env, args.swaps, args.rounds, args.installs)),
        ]
        for name, step in steps:
            if name in wanted:
                began = time.monotonic()
                figures += step()
                note(f"{name}: {time.monotonic() - began:.0f} s")
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
