"""A worker's stdout and stderr, drained into the host's logging: bounded, attributed, one record per line.

Each pipe is read in chunks by a thread of its own for the worker's whole
life, so a full pipe never blocks the plugin. What the host keeps is bounded,
whatever the plugin writes: a line is cut at :data:`LINE_LIMIT` bytes (the
rest of it is read and dropped; the record says so), and at most
:data:`RATE` bytes of lines per second are logged from each pipe (beyond
that, lines are dropped and one record a second says how many). A
``\\r`` progress bar or hundreds of megabytes without a newline cost the
host one line buffer.

Everything is logged under the plugin's own logger, ``greeter.plugins.<driver>``:
a worker's log records keep their level (clamped to DEBUG..CRITICAL), while
the name of the logger they came from becomes part of the message. Control
characters are escaped and a record's continuation lines indented, so nothing
a plugin writes can pass for a line of the host's own log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import IO

from ..printable import printable
from .protocol import LOG_MARK

__all__ = ["LINE_LIMIT", "RATE", "forward"]

#: Longest line kept from a worker's output, in bytes; the rest of a longer line is dropped.
LINE_LIMIT = 16 * 1024

#: Bytes of output lines logged per second from each pipe; more is dropped, and said so.
RATE = 256 * 1024

#: What a line costs at least against :data:`RATE`: a flood of empty lines is a flood of records.
LINE_COST = 64

_MARK = LOG_MARK.encode()


def forward(stream: IO[bytes], logger: logging.Logger, name: str) -> threading.Thread:
    """Drain one of the worker's pipes (*name*: ``stdout`` or ``stderr``) into *logger*, in a thread."""
    pump = _Pump(logger, name)
    thread = threading.Thread(target=pump.run, args=(stream,), name=f"greeter-worker-{name}", daemon=True)
    thread.start()
    return thread


class _Pump:
    def __init__(self, logger: logging.Logger, name: str) -> None:
        self.logger = logger
        self.name = name
        self.fatal = False  # after "Fatal Python error", the rest of stderr is the crash report: ERROR
        self.window = 0.0
        self.used = 0
        self.dropped_lines = self.dropped_bytes = 0

    def run(self, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        line = bytearray()  # the line being read, never longer than LINE_LIMIT
        skipping = False  # inside a line already cut at LINE_LIMIT
        try:
            while chunk := os.read(fd, 65536):
                start = 0
                while start < len(chunk):
                    end = chunk.find(b"\n", start)
                    stop = len(chunk) if end < 0 else end
                    if not skipping:
                        room = LINE_LIMIT - len(line)
                        line += chunk[start : min(stop, start + room)]
                        if stop - start > room:
                            self.emit(bytes(line), truncated=True)
                            line.clear()
                            skipping = True
                    if end < 0:
                        break
                    if skipping:
                        skipping = False
                    else:
                        self.emit(bytes(line))
                        line.clear()
                    start = end + 1
        except OSError:
            pass
        finally:
            if line:
                self.emit(bytes(line))
            self.report_drops()
            stream.close()

    def emit(self, raw: bytes, *, truncated: bool = False) -> None:
        if not self.admit(len(raw)):
            return
        if raw.startswith(_MARK) and not truncated and self.log_record(raw[len(_MARK) :]):
            return
        text = printable(raw.decode("utf-8", "replace").rstrip("\r"))
        self.fatal = self.fatal or text.startswith("Fatal Python error")
        suffix = f" [line cut at {LINE_LIMIT} bytes; the rest of it was dropped]" if truncated else ""
        self.logger.log(logging.ERROR if self.fatal else logging.WARNING, "%s: %s%s", self.name, text, suffix)

    def log_record(self, payload: bytes) -> bool:
        """Log a worker's log record, under the plugin's logger; False if it is not one."""
        try:
            level, source, message = json.loads(payload)
        except (ValueError, TypeError):
            return False
        if type(level) is not int or not isinstance(source, str) or not isinstance(message, str):
            return False
        text = "\n    ".join(map(printable, message.split("\n")))
        if source != self.logger.name:
            text = f"{printable(source[:200])}: {text}"
        self.logger.log(min(max(level, logging.DEBUG), logging.CRITICAL), "%s", text)
        return True

    def admit(self, size: int) -> bool:
        """Count a line against this second's budget; False (and counted as dropped) if it is spent."""
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.report_drops()
            self.window, self.used = now, 0
        cost = max(size, LINE_COST)
        if self.used + cost > RATE:
            self.dropped_lines += 1
            self.dropped_bytes += size
            return False
        self.used += cost
        return True

    def report_drops(self) -> None:
        if self.dropped_lines:
            self.logger.warning(
                "%s: dropped %d lines (%d bytes) of output over the limit of %d KiB per second",
                self.name,
                self.dropped_lines,
                self.dropped_bytes,
                RATE // 1024,
            )
            self.dropped_lines = self.dropped_bytes = 0
