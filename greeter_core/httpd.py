"""A hardened HTTP server on :mod:`http.server`: hostile clients expected, every reply JSON.

It knows nothing of greeter. A subclass of :class:`HardenedServer` gives it a
table of routes (path -> method -> handler, dispatched as ``http.server``
dispatches ``do_`` + command) and says how its own exceptions become replies
(:meth:`HardenedServer.answer`); what follows holds for any table.

On any path: 401 without the token (when one is set), 403 for a request a
web page made (see below), 404 for an unknown path, 405 (with ``Allow``) for
a wrong method. An HTTP/1.1 request must name a ``Host`` (400 otherwise, as
RFC 9112 says); an absolute-form target (``GET http://HOST:PORT/path``) is
served, its authority taking the place of the ``Host``. A request without
``Content-Length`` has an empty body, as HTTP/1.1 says; a body sent with
``Transfer-Encoding`` (chunked) is refused with 411, one over
:data:`MAX_BODY` bytes with 413, one that is not ``application/json`` with
415. ``Expect: 100-continue`` is answered at once: 100 when the body is
wanted, else the final reply. One request per connection.

**Web pages cannot drive it.** Any page the user visits can make the browser
send requests to ``localhost``. Without a token (a loopback bind), the
``Host`` must name this endpoint (``localhost`` or the bound address, and the
bound port if it gives one), which defeats DNS rebinding; with or without
one, a browser's cross-site request (an ``Origin`` that is not this
endpoint, ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``) is
refused, and a ``POST`` body must be JSON, which no page can send cross-site
without the browser asking first. Each refusal is logged at WARNING with its
reason, at most one line per reason a second (:class:`_Refusals`).

**It cannot be starved** (:class:`_Admission`): at most :data:`MAX_CONNECTIONS`
connections at once, each with :data:`REQUEST_DEADLINE` seconds in all to
deliver its request (408 after that, however slowly the bytes trickle in);
when all are taken, the one that has been sending its request the longest
is cut (503) to let a new client in. File descriptors are kept in reserve
for the rest of the process, and an ``accept`` that fails for want of them
pauses instead of spinning.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import logging
import re
import resource
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from .printable import printable

__all__ = [
    "FD_RESERVE",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "REQUEST_DEADLINE",
    "HardenedHandler",
    "HardenedServer",
    "Reject",
    "Request",
    "Table",
    "Text",
    "is_loopback",
    "parse_address",
    "resolve",
]

#: Largest request body accepted.
MAX_BODY = 4096

#: Most connections held at once; a busy process needs a handful.
MAX_CONNECTIONS = 64

#: Seconds a client has, from being accepted, to deliver its whole request (not per read).
REQUEST_DEADLINE = 10.0

#: File descriptors the server leaves to the rest of the process: it holds fewer
#: connections, and refuses one whose descriptor lands this close to the ``nofile`` limit.
FD_RESERVE = 128

#: Seconds ``accept`` pauses after failing for want of file descriptors (no busy loop).
_ACCEPT_PAUSE = 0.25

#: Most bytes of an unread body read before closing, so that the client gets to read our reply.
_DRAIN_LIMIT = 64 * 1024

#: Seconds in all spent reading what a client sends after our reply.
_LINGER = 1.0

#: Seconds over which refusals of one reason are logged once (the rest are counted).
_REFUSAL_WINDOW = 1.0


class Reject(Exception):
    """A request the server refuses before (or instead of) a handler's answer.

    *refusal* names why a client was refused for what it is (``token``,
    ``rebinding``, ``cross-site``): those are logged at WARNING, rate-limited,
    with *why* (what the log may say and the reply need not; the message by default).
    """

    def __init__(
        self, status: int, message: str, *, refusal: str | None = None, why: str | None = None, **extra: object
    ) -> None:
        super().__init__(message)
        self.status = status
        self.refusal = refusal
        self.why = why or message
        self.payload: dict[str, object] = {"error": message, **extra}
        self.headers: dict[str, str] = {}


class Text(NamedTuple):
    """A reply that is not JSON (a handler returns it instead of a JSON-able object)."""

    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class Request(NamedTuple):
    """What a route's handler is given: the request, read whole and checked."""

    method: str
    path: str
    query: str
    body: bytes
    headers: Message


#: A route's handler: (the server, the request) -> a JSON-able object or :class:`Text`.
Handler = Callable[[Any, Request], object]

#: path -> method -> handler: the one table a server dispatches from.
Table = Mapping[str, Mapping[str, Handler]]


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::1]:8080")
    if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError("expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8080")
    return host or default_host, int(port)


def resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """(address family, socket address) to bind for *host*; ValueError when it does not resolve."""
    try:
        [(family, _, _, _, address), *_] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise ValueError(f"cannot resolve {host!r}: {error}") from None
    return family, address


def is_loopback(address: str) -> bool:
    """Whether *address* (an IP, maybe with a ``%scope``) is a loopback address."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


class _Held:
    """One connection the server holds: until when it may send, whether it is being answered, why it was cut."""

    __slots__ = ("busy", "cut", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.busy = False
        self.cut: Reject | None = None


class _Admission:
    """Which connections the server holds, and for how long: what keeps it from being starved.

    One thread per connection, as ``http.server`` has it, but never more than
    *limit* of them, and each must deliver its whole request within
    *deadline* seconds of being accepted, however slowly its bytes trickle in.
    When all are taken, the connection that has been sending its request the
    longest is cut to let the next one in: a new ``curl /status`` is served
    even while hundreds of slow clients queue for a place. A connection being
    answered (``busy``) is never cut: what it waits on has deadlines of its own.

    Cutting is ``shutdown(SHUT_RD)``: the handler's read returns at once, and
    it can still write its 408 or 503.
    """

    def __init__(self, limit: int, deadline: float) -> None:
        self.limit = limit
        self.deadline = deadline
        self._changed = threading.Condition()
        self._held: dict[socket.socket, _Held] = {}  # in the order they were accepted

    def __len__(self) -> int:
        return len(self._held)

    def make_room(self, wait: float) -> bool:
        """Whether one more connection may be accepted now, cutting the slowest reader if all are taken."""
        with self._changed:
            self._expire()
            if len(self._held) < self.limit:
                return True
            self.relieve()
            self._changed.wait_for(lambda: len(self._held) < self.limit, wait)
            return len(self._held) < self.limit

    def admit(self, connection: socket.socket) -> None:
        with self._changed:
            self._held[connection] = _Held(time.monotonic() + self.deadline)

    def begin_work(self, connection: socket.socket) -> Reject | None:
        """The request has arrived whole: from now on it is answered, never cut; or why it was cut already."""
        with self._changed:
            held = self._held.get(connection)
            if held is None or held.cut is not None:
                return held.cut if held is not None else Reject(503, "the connection was dropped")
            held.busy = True
            return None

    def cut_reason(self, connection: socket.socket) -> Reject | None:
        with self._changed:
            held = self._held.get(connection)
            return held.cut if held is not None else None

    def release(self, connection: socket.socket) -> None:
        with self._changed:
            if self._held.pop(connection, None) is not None:
                self._changed.notify_all()

    def expire(self) -> None:
        """Cut every connection whose request is overdue."""
        with self._changed:
            self._expire()

    def relieve(self) -> bool:
        """Cut the connection that has been sending its request the longest; False if none is."""
        with self._changed:
            for connection, held in self._held.items():
                if not held.busy and held.cut is None:
                    self._cut(connection, held, Reject(503, "too many connections; this one was the slowest"))
                    return True
            return False

    def _expire(self) -> None:
        now = time.monotonic()
        for connection, held in self._held.items():
            if not held.busy and held.cut is None and held.deadline <= now:
                late = Reject(408, f"the request did not arrive within {self.deadline:g} s")
                self._cut(connection, held, late)

    @staticmethod
    def _cut(connection: socket.socket, held: _Held, why: Reject) -> None:
        held.cut = why
        with suppress(OSError):  # already closed by its handler
            connection.shutdown(socket.SHUT_RD)


class _Refusals:
    """Refused clients, logged at WARNING so that an operator sees an attack, but never a flood.

    At most one line per reason per *window* seconds; the refusals in between
    are counted, and the count is logged with the next line of that reason or,
    when none comes, once the window has passed (:meth:`flush`).
    """

    def __init__(
        self,
        log: logging.Logger,
        name: str,
        window: float = _REFUSAL_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._name, self._window, self._clock = log, name, window, clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # reason -> when its last line was logged
        self._suppressed: dict[str, int] = {}

    def refused(self, reason: str, client: str, what: str, why: str) -> None:
        now = self._clock()
        with self._lock:
            if now - self._last.get(reason, -self._window) < self._window:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return
            self._last[reason] = now
            more = self._suppressed.pop(reason, 0)
        self._log.warning(
            "%s: refused %s from %s (%s): %s%s",
            self._name,
            printable(what),
            client,
            reason,
            printable(why),
            f" ({more} more refused for this reason since the last such line)" if more else "",
        )

    def flush(self) -> None:
        """Log the count of refusals held back, for each reason whose window has passed."""
        now = self._clock()
        with self._lock:
            due = [r for r, n in self._suppressed.items() if n and now - self._last[r] >= self._window]
            counts = [(reason, self._suppressed.pop(reason)) for reason in due]
            for reason, _ in counts:
                self._last[reason] = now
        for reason, count in counts:
            self._log.warning(
                "%s: %d more requests refused (%s) in the last %g s", self._name, count, reason, self._window
            )


def nofile() -> int:
    """This process's soft limit on open file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 1 << 20


class HardenedServer(ThreadingHTTPServer):
    """A bound server dispatching from :attr:`table`; :meth:`serve` serves it from a background thread.

    *token*, when given, must come as ``Authorization: Bearer <token>`` on every request.
    """

    daemon_threads = True
    request_queue_size = 128  # many clients at once must wait, not be refused

    #: What the log lines call this server.
    name = "HTTP endpoint"
    #: The ``Server`` header.
    software = "hardened-httpd"
    #: The 503 for a connection that would eat into the descriptors kept in reserve.
    short_of_descriptors = "the server is short of file descriptors; try again later"

    def __init__(
        self,
        family: int,
        sockaddr: tuple[Any, ...],
        token: str | None,
        table: Table,
        described: Mapping[str, Mapping[str, str]],
        log: logging.Logger | None = None,
    ) -> None:
        self.address_family = family
        self.token = token
        self.table = table
        #: path -> method -> what it does: how 404 replies list the routes.
        self.described = described
        self.log = log or logging.getLogger(__name__)
        self.refusals = _Refusals(self.log, self.name)
        self._thread: threading.Thread | None = None
        self.admission = _Admission(max(1, min(MAX_CONNECTIONS, (nofile() - FD_RESERVE) // 2)), REQUEST_DEADLINE)
        self._refused = 0  # accepts failed for want of descriptors, in the current shortage
        super().__init__(sockaddr, HardenedHandler)

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: its socket.getfqdn() can wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)
        #: The names a request's Host may give: this server's own (see HardenedHandler._refuse_web_pages).
        self.host_names = frozenset({"localhost", self.server_name.lower()})

    @property
    def port(self) -> int:
        """The port bound (a free one when asked for port 0)."""
        return self.server_port

    @property
    def url(self) -> str:
        host = self.server_name
        shown = f"[{host}]" if self.address_family == socket.AF_INET6 else host
        return f"http://{shown}:{self.server_port}"

    def answer(self, error: Exception) -> tuple[int, object, dict[str, str]] | None:
        """(status, payload, headers) for an exception a handler raised; None: it is a bug (500)."""
        return None

    def serve(self, thread_name: str) -> None:
        """Serve from a daemon thread until :meth:`close`."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=thread_name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port; requests in flight finish on their own threads."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is not the host's problem.
        self.log.debug("%s: connection from %s failed", self.name, client_address, exc_info=True)

    # -- admission: see _Admission ----------------------------------------------------------

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept one connection, if there is room for it and descriptors to spare."""
        if not self.admission.make_room(wait=_ACCEPT_PAUSE):
            raise OSError(errno.EAGAIN, "every connection is being answered; the next waits its turn")
        try:
            connection, address = self.socket.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._short_of_descriptors(error)
            raise
        if self._refused:
            self.log.info("%s: accepting again (%d refused for want of descriptors)", self.name, self._refused)
            self._refused = 0
        if connection.fileno() >= max(16, nofile() - FD_RESERVE):  # the limit may have changed since
            # The process is close to its limit (a plugin holding files, say): keep the rest for it.
            self._refuse(connection, self.short_of_descriptors)
            self.admission.relieve()
            raise OSError(errno.EMFILE, "refused a connection to keep descriptors in reserve")
        self.admission.admit(connection)
        return connection, address

    def _short_of_descriptors(self, error: OSError) -> None:
        if not self._refused:
            self.log.warning(
                "%s: cannot accept connections: %s (nofile %d); pausing until descriptors are free",
                self.name,
                error.strerror or error,
                nofile(),
            )
        self._refused += 1
        self.admission.relieve()  # a slow client's descriptor is the first to give back
        time.sleep(_ACCEPT_PAUSE)  # the listening socket stays readable: do not spin on it

    @staticmethod
    def _refuse(connection: socket.socket, message: str) -> None:
        body = (json.dumps({"error": message, "status": 503}) + "\n").encode()
        head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        with suppress(OSError):  # a refusal is best effort
            connection.setblocking(False)
            connection.send(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        connection.close()

    def shutdown_request(self, request: Any) -> None:
        self.admission.release(request)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        self.admission.expire()
        self.refusals.flush()


class HardenedHandler(BaseHTTPRequestHandler):
    """One request on one connection: authorize, refuse web pages, dispatch from the table, reply.

    Where ``http.server`` gets an edge wrong, this class fixes it: an HTTP/0.9
    or one-word request line is answered at once with a status line (not
    after waiting for headers that never come, not with a bare body), and any
    method, known or not, goes through the table (405 or 404 in JSON, not
    ``http.server``'s HTML 501).
    """

    server: HardenedServer
    timeout = REQUEST_DEADLINE  # per read; the whole request has REQUEST_DEADLINE too (see _Admission)
    raw_requestline: bytes
    _authority: str | None = None  # of an absolute-form target: it takes the place of the Host
    _consumed = False
    _answered = False

    def handle_one_request(self) -> None:
        # http.server's, dispatching from the table where it calls getattr(self, "do_" + command).
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
            self.wfile.flush()
        except TimeoutError as error:
            self.log_error("Request timed out: %r", error)
            self.close_connection = True

    def parse_request(self) -> bool:
        # http.server takes a two-word line for HTTP/0.9 and then waits for
        # headers anyway (REQUEST_DEADLINE seconds of silence), and answers a
        # one-word line without a status line. Refuse both at once.
        if len(self.raw_requestline.split()) < 3:
            self.command, self.request_version, self.close_connection = "", "HTTP/1.0", True
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.send_error(400, "expected a request line like 'GET /status HTTP/1.1' (HTTP/0.9 is not supported)")
            return False
        if not super().parse_request():
            return False
        absolute = _ABSOLUTE_FORM.fullmatch(self.path)
        if absolute:  # RFC 9112 3.2.2: its authority, not the Host header, names the server asked
            self._authority, path = absolute.group("authority", "path")
            self.path = path if path.startswith("/") else "/" + path
        return True

    def _dispatch(self) -> None:
        try:
            status, payload, headers = self._respond()
        except Exception:
            self.server.log.exception("%s: request %s %r failed", self.server.name, self.command, self.path)
            status, payload, headers = 500, {"error": "internal error; see the server's log", "status": 500}, {}
        self._reply(status, payload, headers)
        self._linger()

    def _respond(self) -> tuple[int, object, dict[str, str]]:
        try:
            self._authorize()
            self._refuse_web_pages()
            path, _, query = self.path.partition("?")
            methods = self.server.table.get(path)
            if methods is None:
                raise Reject(404, f"no such endpoint: {path[:100]!r}", routes=self.server.described)
            handler = methods.get(self.command)
            if handler is None:
                reject = Reject(405, f"{path} accepts {', '.join(methods)} only", allowed=list(methods))
                reject.headers["Allow"] = ", ".join(methods)
                raise reject
            body = self._read_body() if self.command == "POST" else b""
            cut = self.server.admission.begin_work(self.connection)
            if cut is not None:
                raise cut  # too late, or dropped to let another client in: nothing is done
            return 200, handler(self.server, Request(self.command, path, query, body, self.headers)), {}
        except Reject as reject:
            if reject.refusal is not None:
                self.server.refusals.refused(
                    reject.refusal, self.client_address[0], f"{self.command} {self.path[:100]!r}", reject.why
                )
            return reject.status, {**reject.payload, "status": reject.status}, reject.headers
        except Exception as error:
            answer = self.server.answer(error)
            if answer is None:
                raise
            return answer

    def _authorize(self) -> None:
        token = self.server.token
        if token is None:
            return
        scheme, _, given = str(self.headers.get("Authorization", "")).partition(" ")
        expected = token.encode("ascii")
        ok = hmac.compare_digest(given.strip().encode("latin-1", "replace"), expected)
        if not (ok and scheme.lower() == "bearer"):
            why = "no token given" if not given and not scheme else "a wrong token"
            reject = Reject(401, "this endpoint needs 'Authorization: Bearer <token>'", refusal="token", why=why)
            reject.headers["WWW-Authenticate"] = 'Bearer realm="greeter"'
            raise reject

    def _refuse_web_pages(self) -> None:
        """400 for an HTTP/1.1 request without a Host; 403 for what a web page made the browser send.

        Without a token the server is on loopback, and the ``Host`` must name
        it, port included: a rebinding page reaches 127.0.0.1 under its own
        name. With a token the server may have any name, and a page cannot know
        the token. Either way an ``Origin`` must be this server itself, and
        ``Sec-Fetch-Site`` (which browsers send even where they send no
        ``Origin``, as on a cross-site ``<img src>``) must say the user or this
        server asked.
        """
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            raise Reject(400, "give one Host header")
        host = self._authority if self._authority is not None else str(hosts[0]).strip() if hosts else None
        if host is None and self.request_version != "HTTP/1.0":
            raise Reject(400, "an HTTP/1.1 request must name the Host it is for (RFC 9112)")
        if self.server.token is None and host is not None and not self._is_this_server(host):
            raise Reject(
                403,
                f"Host {host[:100]!r} is not this endpoint: call it as localhost or {self.server.server_name} "
                f"on port {self.server.server_port} (requests under another name are refused, against DNS rebinding)",
                refusal="rebinding",
            )
        origin = self.headers.get("Origin")
        if origin is not None and (host is None or str(origin).strip().lower() != f"http://{host.lower()}"):
            raise Reject(403, f"cross-site request from origin {str(origin)[:100]!r} refused", refusal="cross-site")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and str(site).strip().lower() not in ("same-origin", "none"):
            raise Reject(403, f"cross-site request refused (Sec-Fetch-Site: {str(site)[:40]})", refusal="cross-site")

    def _is_this_server(self, host: str) -> bool:
        """Whether a Host (``[::1]:8080``, ``localhost``) names this server: its name, and its port if it gives one."""
        if host.startswith("["):
            name, _, port = host[1:].partition("]")
            port = port.removeprefix(":")
        else:
            name, sep, port = host.rpartition(":")
            if not sep:
                name, port = host, ""
        if port and not (port.isascii() and port.isdigit() and port.lstrip("0") == str(self.server.server_port)):
            return False
        return name.lower().removesuffix(".") in self.server.host_names

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise Reject(411, "send the body with a Content-Length; transfer codings (chunked) are not accepted")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1 or (lengths and not re.fullmatch(r"[0-9]+", lengths[0])):
            raise Reject(400, "Content-Length must be one whole number")
        digits = lengths[0].lstrip("0") if lengths else ""
        if len(digits) > len(str(MAX_BODY)) or int(digits or 0) > MAX_BODY:  # no int() of a thousand digits
            raise Reject(413, f"the body may be {MAX_BODY} bytes at most")
        length = int(digits or 0)
        types = self.headers.get_all("Content-Type") or []
        # A web page can send text/plain or a form anywhere without asking; JSON makes the browser ask first.
        if (types or length) and not _is_json(types):
            raise Reject(415, "send the body as JSON, with 'Content-Type: application/json'")
        if not length:
            return b""
        self._consumed = True
        if self.request_version != "HTTP/1.0" and str(self.headers.get("Expect", "")).lower() == "100-continue":
            # The body is wanted: say so now, or the client waits (curl: a second) before sending it.
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise Reject(408, "the body did not arrive in time") from None
        if len(body) != length:
            raise Reject(400, "the body is shorter than its Content-Length")
        return body

    def _reply(self, status: int, payload: object, headers: dict[str, str]) -> None:
        cut = self.server.admission.cut_reason(self.connection)
        if cut is not None and not self._answered:  # whatever the half-read request came to: say why it was cut
            status, payload, headers = cut.status, {**cut.payload, "status": cut.status}, cut.headers
        self._answered = True
        if self.request_version == "HTTP/0.9":  # http.server would leave out the status line and headers
            self.request_version = "HTTP/1.0"
        if isinstance(payload, Text):
            body, content_type, extra = payload
            headers = {**dict(extra), **headers}
        else:
            body = (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
            content_type = "application/json; charset=utf-8"
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _linger(self) -> None:
        """Read what the client still sends after our reply (bounded in bytes and in time), so closing
        does not reset the connection before the client has read the reply."""
        if self._consumed:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + _LINGER
            budget = _DRAIN_LIMIT
            while budget > 0 and (left := end - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(budget, 8192))
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers too long...), as JSON."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._reply(code, {"error": message or phrase, "status": code}, {})

    def version_string(self) -> str:
        return self.server.software  # the Server header: http.server would append " " + sys_version

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.debug("%s %s", self.address_string(), format % args)


#: An absolute-form request target, ``http://127.0.0.1:8080/status``: its authority and the rest.
_ABSOLUTE_FORM = re.compile(r"(?i:https?)://(?P<authority>[^/?#]*)(?P<path>.*)", re.S)


def _is_json(types: list[str]) -> bool:
    """Whether the request's Content-Type headers say JSON: one header, ``application/json``, any parameters."""
    return len(types) == 1 and types[0].partition(";")[0].strip().lower() == "application/json"
