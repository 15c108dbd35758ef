"""The fork server, the host's side: an interpreter that imported greeter-core and stevedore, never a plugin.

A cold worker is a fresh ``python -I`` that imports the standard library,
stevedore and greeter-core before it can load its plugin: most of a swap's
time under isolation. So a long run (``greeter run``, or a program that
passes a :class:`ForkServer` to :func:`~greeter_core.load`) starts one
process that does those imports once and then only forks, on request. What
it forks becomes exactly what a cold start becomes: a *keeper* and, below
it, the worker, which prepares itself (environment, ``sys.path``, limits)
and only then imports its plugin (:mod:`~greeter_core.worker.main`).

What the fork server holds, and so what every worker inherits: the modules
of greeter-core, stevedore and the standard library they import, the
environment and ``sys.path`` a worker gets (it is started with them, so
``/proc/<worker>/environ`` is a worker's own), its end of a socketpair to the
host, and a pidfd of the host. No thread (a fork of a multi-threaded process
is fragile), no signal handler, no plugin module, no metadata scanned; a
child closes every descriptor but its own channel and pipes first thing.
Like ``multiprocessing``'s forkserver, the workers share its hash seed.

Nothing depends on it once a worker is forked: a keeper watches the host
through that pidfd, not through its parent, so killing the fork server ends
no worker, and the host starts a fresh fork server when it next needs one.
It ends when the host closes the socketpair or the host is gone, however
the host ended. It needs ``pidfd_open`` (Linux 5.3); without it workers
start cold, as they do for a one-shot ``greeter --isolation process``.
A fork server that does not answer a request within :data:`FORK_TIMEOUT`
(stopped, or starved) is given up: that worker starts cold, said in one line.

This module is the host's side; the fork server's own process is
:mod:`~greeter_core.worker.forkmain`.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import IO, NamedTuple

__all__ = ["ForkServer", "ForkedProcess", "describe_exit", "supported"]

log = logging.getLogger(__name__)

#: The fork server's first line of Python: the host's sys.path, then the server.
BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from greeter_core.worker.forkmain import serve; sys.exit(serve(sys.argv[2:]))"
)

#: How long the host waits for a fork server to start, import and fork, before starting a worker cold.
START_TIMEOUT = 30.0

#: How long the host waits for a running fork server to fork a worker, before starting that one cold.
FORK_TIMEOUT = 0.5

_STATUS = struct.Struct("!i")  # a worker's exit code as the keeper reports it: negative for a signal


def supported() -> bool:
    """True where the kernel has pidfds (Linux 5.3), which a forked keeper needs to watch the host."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class ForkedProcess:
    """A keeper forked by the fork server, as the host sees it: the part of ``subprocess.Popen`` a worker needs.

    The host is not its parent, so it cannot wait for it: it holds a pidfd
    of the keeper, readable once the keeper has ended, and a pipe on which the
    keeper writes how its worker ended before it exits (nothing, when the
    keeper itself was killed).
    """

    def __init__(self, pid: int, pidfd: int, status: int, stdout: IO[bytes], stderr: IO[bytes], server: int) -> None:
        self.pid = pid
        #: The pid of the fork server that forked it.
        self.server = server
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._status = status

    def poll(self) -> int | None:
        """The worker's exit code once its keeper has ended, else None."""
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the keeper to end; ``subprocess.TimeoutExpired`` after *timeout* seconds."""
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"greeter worker {self.pid}", timeout or 0)
            self._collect()
        assert self.returncode is not None
        return self.returncode

    def _collect(self) -> None:
        try:
            data = os.read(self._status, _STATUS.size)
        except BlockingIOError:
            data = b""
        # A keeper ends without a word only when it is killed, and SIGKILL is what kills one.
        self.returncode = _STATUS.unpack(data)[0] if len(data) == _STATUS.size else -signal.SIGKILL
        os.close(self._pidfd)
        os.close(self._status)


class _Key(NamedTuple):
    """What a fork server was started with, so what every worker it forks gets."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


class ForkServer:
    """The host side of a fork server: started on first use, asked for workers, restarted if it ended.

    Thread-safe: swaps and restarts may ask for workers from several threads.
    A fork server serves one environment and ``sys.path`` (those it was
    started with); a worker asking for others gets a fresh fork server.
    Close it (or use ``with``) to stop it; the workers it forked live on.
    """

    def __init__(self, *, start_timeout: float = START_TIMEOUT, fork_timeout: float = FORK_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.fork_timeout = fork_timeout
        #: Fork servers started so far (a fresh one after one ended or the environment changed).
        self.starts = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._key: _Key | None = None
        self._answered = False  # it forked once: it imported all, and the next fork takes milliseconds
        self._reader: threading.Thread | None = None
        self._closed = False
        self._supported = supported()

    @property
    def pid(self) -> int | None:
        """The running fork server's pid, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def fork(
        self, command: Sequence[str], env: Mapping[str, str], channel: socket.socket, scratch: str = ""
    ) -> ForkedProcess | None:
        """A keeper (and its worker) forked for *channel*, or None: then start the worker cold.

        *command* starts the fork server (its interpreter, flags and ``sys.path``:
        see :func:`~greeter_core.worker.client.worker_command`), *env* is a worker's
        environment, *scratch* the worker's scratch directory, which its keeper
        removes once the tree is gone (empty: none). None when the kernel lacks
        pidfds, this server was closed, or the fork server failed (said in one
        log line; the next call starts a fresh one).
        """
        if not self._supported:
            return None
        with self._lock:
            if self._closed:
                return None
            key = _Key(tuple(command), tuple(sorted(env.items())))
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                ended = describe_exit(proc.returncode)
                log.warning("the fork server (pid %d) ended (%s); starting a fresh one", proc.pid, ended)
                self._stop()
            elif proc is not None and key != self._key:
                log.debug("workers need another environment or sys.path: starting a fresh fork server")
                self._stop()
            if self._proc is None:
                try:
                    self._start(key)
                except OSError as error:
                    log.warning("could not start a fork server (%s); starting workers cold", error)
                    return None
            proc = self._proc
            assert proc is not None
            waited = self.fork_timeout if self._answered else self.start_timeout
            try:
                forked = self._request(channel, waited, scratch)
            except TimeoutError:
                log.warning(
                    "the fork server (pid %d) did not answer within %g s; starting this worker cold", proc.pid, waited
                )
                self._stop(kill=True)  # stopped or starved: not worth another wait
                return None
            except (OSError, EOFError, ValueError) as error:
                log.warning(
                    "the fork server (pid %d) did not fork a worker (%s); starting this one cold", proc.pid, error
                )
                self._stop()
                return None
            self._answered = True
            return forked

    def close(self) -> None:
        """Stop the fork server (the workers it forked are not its to stop); safe to call twice."""
        with self._lock:
            self._closed = True
            self._stop()
        _servers.discard(self)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self, key: _Key) -> None:
        host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # who sent a request: see keeper.host_request
        try:
            proc = subprocess.Popen(
                [*key.command, str(server_end.fileno()), str(os.getpid())],
                pass_fds=[server_end.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=dict(key.env),
                process_group=0,  # like a worker: terminal signals stay with the host
            )
        except BaseException:
            host_end.close()
            raise
        finally:
            server_end.close()
        self._proc, self._sock, self._key, self._answered = proc, host_end, key, False
        self.starts += 1
        from .output import forward

        self._reader = forward(proc.stderr, log, "stderr")  # type: ignore[arg-type]
        _servers.add(self)
        log.debug("started a fork server (pid %d)", proc.pid)

    def _request(self, channel: socket.socket, timeout: float, scratch: str) -> ForkedProcess:
        sock, proc = self._sock, self._proc
        assert sock is not None and proc is not None
        sock.settimeout(timeout)
        out_r, out_w = os.pipe()
        try:
            err_r, err_w = os.pipe()
            try:
                status_r, status_w = os.pipe()
                try:
                    socket.send_fds(sock, [b"F" + os.fsencode(scratch)], [channel.fileno(), out_w, err_w, status_w])
                finally:
                    os.close(status_w)
                os.set_blocking(status_r, False)
                try:
                    reply, fds, _, _ = socket.recv_fds(sock, 256, 1)
                except BaseException:
                    os.close(status_r)
                    raise
            except BaseException:
                os.close(err_r)
                raise
            finally:
                os.close(err_w)
        except BaseException:
            os.close(out_r)
            raise
        finally:
            os.close(out_w)
        if reply[:1] != b"P" or len(fds) != 1 or not reply[1:].isdigit():
            for fd in (*fds, out_r, err_r, status_r):
                os.close(fd)
            if not reply:
                raise EOFError("it closed its end")
            raise ValueError(reply[1:200].decode("utf-8", "replace") if reply[:1] == b"E" else "a malformed reply")
        return ForkedProcess(int(reply[1:]), fds[0], status_r, open(out_r, "rb", 0), open(err_r, "rb", 0), proc.pid)

    def _stop(self, *, kill: bool = False) -> None:
        """Close the socketpair, which ends the fork server; *kill*: one that does not answer, at once."""
        proc, sock, reader = self._proc, self._sock, self._reader
        self._proc = self._sock = self._reader = None
        if sock is not None:
            sock.close()  # the fork server reads the end of its socketpair, and exits
        if proc is not None:
            if kill:
                proc.kill()  # SIGKILL ends a stopped process too
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if reader is not None:
            reader.join(timeout=1.0)


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code as ``subprocess`` gives it (negative: the signal, by name)."""
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


_servers: set[ForkServer] = set()


@atexit.register
def _close_all() -> None:
    for server in list(_servers):
        server.close()
