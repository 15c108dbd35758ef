"""greeter as a real process: the CLI run to completion (:func:`cli_runner`), ``greeter run`` running
(:class:`RunningGreeter`, :func:`launcher`), and HTTP to its control endpoint on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from basics import WAIT, wait_for

T = TypeVar("T")


def cli_runner(
    env: dict[str, str], cwd: Path, timeout: float = 60, python: str | Path = sys.executable
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run(*args, timeout=...)`` runs ``python -m greeter_core ARGS`` to completion; returns the CompletedProcess."""
    default = timeout

    def run(*args: str, timeout: float = default) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "greeter_core", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )

    return run


ENDPOINT = re.compile(r"control endpoint on http://\S+:(\d+)")
SUMMARY = re.compile(r"stopped after (\d+) greetings?, (\d+) errors?, (\d+) swaps?, (\d+) reloads?")


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


class Lines:
    """The lines of a stream, read by a thread as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
        stream.close()

    def wait_for(self, predicate: Callable[[list[str]], T | None], timeout: float = WAIT) -> T:
        """Wait until *predicate* of the lines so far is true; return its value."""
        return wait_for(lambda: predicate(list(self.lines)), timeout, f"a line; lines so far: {self.lines[-20:]}")

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
        self._stdout = Lines(self.process.stdout) if stdout is None else None  # type: ignore[arg-type]
        self.stderr = Lines(self.process.stderr)  # type: ignore[arg-type]
        self._port: int | None = None

    @property
    def stdout(self) -> Lines:
        assert self._stdout is not None, "stdout was redirected to a file"
        return self._stdout

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
        start = self.stdout.lines.count(text)
        self.stdout.wait_for(lambda lines: lines.count(text) >= start + more)

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """Poll ``/status`` until *predicate* holds; return that status."""

        def matching() -> dict[str, Any] | None:
            status = self.status()
            return status if predicate(status) else None

        return wait_for(matching, timeout, "/status to match")

    def send(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.process.wait(timeout)
        self.stderr.join()
        if self._stdout is not None:
            self._stdout.join()
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
