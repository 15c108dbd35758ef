"""Drive `greeter run` as a real process: read its output as it comes, talk HTTP to it, signal it.

Waits are on conditions (a line appeared, a counter moved) with generous
timeouts, never on durations: test machines are noisy.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

from plugin_factory import PluginSpec, greeter_code

WAIT = 60.0  # seconds: generous, only reached when something is wrong

ALPHA = PluginSpec("alpha", code=greeter_code("Alpha"))
BETA = PluginSpec("beta", code=greeter_code("Beta"))
GAMMA = PluginSpec("gamma", code=greeter_code("Gamma"))

PANIC = PluginSpec(
    "panic",
    code="""
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        raise RuntimeError("I'm gone.")
""",
)

EXIT = PluginSpec(
    "exit",
    code="""
import sys
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        sys.exit(1)
""",
)

NOT_A_STRING = PluginSpec(
    "number",
    code="""
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        return 42
""",
)

SLOW = PluginSpec(
    "slow",
    code="""
import time
from greeter_core import Greeter

class Plugin(Greeter):
    def greet(self, name):
        self.context.logger.warning("sleeping")
        time.sleep(600)
        return "Slow " + name
""",
)

BROKEN_IMPORT = PluginSpec(
    "broken",
    code="""
import gt_no_such_module_anywhere
""",
)

NO_GREET = PluginSpec(
    "nogreet",
    code="""
class Plugin:
    def __init__(self, context):
        self.context = context
""",
)

ENDPOINT = re.compile(r"control endpoint on http://\S+:(\d+)")
SUMMARY = re.compile(r"stopped after (\d+) greetings, (\d+) errors, (\d+) swaps, (\d+) reloads")


class Reply(NamedTuple):
    """One HTTP reply: its status, headers (lower-case names) and decoded JSON body."""

    status: int
    headers: dict[str, str]
    data: Any


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request to 127.0.0.1:port; the body of every reply must be JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw))
    finally:
        connection.close()


def post_json(port: int, path: str, data: object, headers: dict[str, str] | None = None) -> Reply:
    return request(port, "POST", path, json.dumps(data), {"Content-Type": "application/json", **(headers or {})})


class _Lines:
    """Lines read from a stream by a thread, waitable."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        stream.close()

    def wait_for(self, predicate: Callable[[list[str]], Any], timeout: float = WAIT) -> Any:
        with self._changed:
            result = self._changed.wait_for(lambda: predicate(self.lines), timeout)
        assert result, f"timed out waiting; lines so far: {self.lines[-20:]}"
        return result

    def search(self, pattern: str | re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        regex = re.compile(pattern)
        return self.wait_for(lambda lines: next(filter(None, map(regex.search, lines)), None), timeout)

    def join(self) -> None:
        self._thread.join(WAIT)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class RunningGreeter:
    """A running `python -m greeter_core run ...` process."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        stdout: IO[str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.process = subprocess.Popen(
            [python, "-m", "greeter_core", "run", *args],
            env=env,
            cwd=cwd,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.stdout = _Lines(self.process.stdout) if stdout is None else None  # type: ignore[arg-type]
        self.stderr = _Lines(self.process.stderr)  # type: ignore[arg-type]
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The control port the process logged (it was started with port 0)."""
        if self._port is None:
            self._port = int(self.stderr.search(ENDPOINT).group(1))
        return self._port

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return request(self.port, method, path, body, headers)

    def status(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        reply = self.request("GET", "/status", headers=headers)
        assert reply.status == 200, reply
        return reply.data  # type: ignore[no-any-return]

    def swap(self, driver: str) -> Reply:
        return self.request("GET", f"/?mod={driver}")

    def wait_greetings(self, text: str, more: int = 1) -> None:
        """Wait until *more* further lines equal to *text* appear on stdout."""
        assert self.stdout is not None
        start = self.stdout.lines.count(text)
        self.stdout.wait_for(lambda lines: lines.count(text) >= start + more)

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"timed out waiting on /status: {status}"
            time.sleep(0.02)

    def send(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.process.wait(timeout)
        self.stderr.join()
        if self.stdout is not None:
            self.stdout.join()
        return code

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.send(signum)
        return self.wait()

    def summary(self) -> tuple[int, int, int, int]:
        """(greetings, errors, swaps, reloads) from the summary line on stderr."""
        greetings, errors, swaps, reloads = map(int, self.stderr.search(SUMMARY, timeout=0).groups())
        return greetings, errors, swaps, reloads

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


@contextmanager
def launcher(env: dict[str, str], cwd: Path, python: str = sys.executable) -> Iterator[Callable[..., RunningGreeter]]:
    """``start(*args)`` runs `greeter run ARGS`; every process still running at the end is killed."""
    started: list[RunningGreeter] = []

    def start(*args: str, stdout: IO[str] | None = None, env_extra: dict[str, str] | None = None) -> RunningGreeter:
        process = RunningGreeter(list(args), {**env, **(env_extra or {})}, cwd, stdout, python)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
