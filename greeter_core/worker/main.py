"""The worker: load one plugin with the host's loader, then answer greet calls until told to stop.

Started by :class:`~greeter_core.worker.client.WorkerPlugin` as
``python -m greeter_core.worker FD``, where FD is its end of the channel. It
never writes to the channel anything but protocol frames; the plugin's stdout
and stderr are pipes the host drains into its logging.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

from ..api import API_VERSION
from ..discovery import PluginInfo
from ..errors import GreeterError, HandshakeError
from ..loaded import LoadedPlugin
from ..loading import load_in_process
from .protocol import COOKIE, COOKIE_ENV, LOG_MARK, PROTOCOL_VERSION, Channel, check_hello

#: How often the worker checks that the host is still its parent.
PARENT_POLL_SECONDS = 0.2


class _LogLineHandler(logging.Handler):
    """Writes each record as one marked line on stderr, for the host to re-emit at its level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = json.dumps([record.levelno, record.name, self.format(record)])
            sys.stderr.write(f"{LOG_MARK}{payload}\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never kill the worker
            self.handleError(record)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(COOKIE_ENV) != COOKIE or len(argv) != 1 or not argv[0].isdigit():
        print(
            "greeter worker: this program is started by greeter for --isolation process, not by hand",
            file=sys.stderr,
        )
        return 2
    # Ctrl-C in a terminal is the host's to handle; it stops the worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a segfault leaves a trace on stderr, which the host logs
    _exit_when_orphaned(os.getppid())
    channel = Channel(socket.socket(fileno=int(argv[0])), trusted=True)
    try:
        return _serve(channel)
    except EOFError:
        return 0  # the host went away: nothing left to do


def _serve(channel: Channel) -> int:
    op, hello = channel.recv()
    problem = check_hello(op, hello, peer="host", me="worker")
    if problem:
        channel.send(("error", HandshakeError("?", None, problem)))
        return 3
    _setup_logging(hello["log_level"])
    sys.path[:] = hello["sys_path"]  # see the plugins the host sees
    record = PluginInfo(**hello["plugin"])  # resolved by the host: no rescan of installed metadata here
    try:
        loaded = load_in_process(record, hello["config"], verify=hello["verify"])
    except GreeterError as error:
        channel.send(("error", error))
        return 1
    channel.send(
        (
            "hello",
            {
                "protocol": PROTOCOL_VERSION,
                "api_version": API_VERSION,
                "plugin": loaded.plugin._asdict(),
                "language": loaded.language,
                "pid": os.getpid(),
            },
        )
    )
    try:
        _answer_calls(channel, loaded)
    finally:
        loaded.close()
    return 0


def _answer_calls(channel: Channel, loaded: LoadedPlugin) -> None:
    while True:
        op, argument = channel.recv()
        if op == "bye":
            return
        if op != "greet" or not isinstance(argument, str):
            channel.send(("error", HandshakeError(loaded.driver, loaded.plugin, f"unknown request {op!r}")))
            continue
        try:
            reply: tuple[str, object] = ("ok", loaded.greet(argument))
        except GreeterError as error:
            reply = ("error", error)
        channel.send(reply)


def _setup_logging(level: int) -> None:
    handler = _LogLineHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _exit_when_orphaned(parent: int) -> None:
    """Exit as soon as the host is gone, even while a plugin call hangs (no orphans).

    The channel's EOF tells an idle worker; this thread tells a busy one. Not
    prctl(PR_SET_PDEATHSIG): it fires when the *thread* that started us ends,
    and hosts start workers from short-lived HTTP request threads.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="greeter-parent-watch", daemon=True).start()
