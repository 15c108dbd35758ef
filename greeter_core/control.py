"""The HTTP control endpoint of ``greeter run``: the Go original's ``curl localhost:8080?mod=chinese``.

A thin shell over :class:`~greeter_core.slot.DriverSlot`: it parses a
request, calls the slot and maps a :class:`~greeter_core.errors.GreeterError`
to a status code. Every reply is JSON, errors included (``/metrics`` alone
answers in the Prometheus text format). The routes, what
they do and their status codes are :data:`ROUTES`, the one list that the
CLI's help, the error replies and the docs are made from.

On any path: 401 without the token (when one is set), 403 for a request a
web page made (see below), 404 for an unknown path, 405 (with ``Allow``) for
a wrong method; ``HEAD`` is ``GET`` without the body, where ``GET`` only reads. A request without
``Content-Length`` has an empty body, as HTTP/1.1 says; a body sent with
``Transfer-Encoding`` (chunked) is refused with 411, one over 4 KiB with 413,
one that is not ``application/json`` with 415, one with a key twice with 400.
One request per connection.

**Web pages cannot drive it.** Any page the user visits can make the browser
send requests to ``localhost``. Without a token (a loopback bind), the
``Host`` must name this endpoint (``localhost`` or the bound address), which
defeats DNS rebinding; with or without one, a browser's cross-site request
(an ``Origin`` that is not this endpoint, ``Sec-Fetch-Site`` other than
``same-origin`` or ``none``) is refused, and a ``POST`` body must be JSON,
which no page can send cross-site without the browser asking first.

**It cannot be starved** (:class:`_Admission`): at most :data:`MAX_CONNECTIONS`
connections at once, each with :data:`REQUEST_DEADLINE` seconds in all to
deliver its request (408 after that, however slowly the bytes trickle in);
when all are taken, the one that has been sending its request the longest
is cut (503) to let a new client in. File descriptors are kept in reserve
for the greeting loop and worker restarts, and an ``accept`` that fails for
want of them pauses instead of spinning.
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
from collections.abc import Callable
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from .errors import (
    GreeterError,
    NoSuchDriverError,
    RuntimeStoppedError,
    UsageError,
)
from .slot import DriverSlot

if TYPE_CHECKING:
    from .metrics import SlotMetrics

__all__ = [
    "FD_RESERVE",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "REQUEST_DEADLINE",
    "ROUTES",
    "TOKEN_ENV",
    "ControlServer",
    "Route",
    "bind",
    "parse_address",
    "status_for",
]

log = logging.getLogger(__name__)

#: Environment variable holding the token when ``--control-token`` is not given.
TOKEN_ENV = "GREETER_CONTROL_TOKEN"

DEFAULT_HOST = "127.0.0.1"

#: Largest request body accepted.
MAX_BODY = 4096

#: Most connections held at once; a busy process needs a handful.
MAX_CONNECTIONS = 64

#: Seconds a client has, from being accepted, to deliver its whole request (not per read).
REQUEST_DEADLINE = 10.0

#: File descriptors the control endpoint leaves to the rest of the process (the greeting
#: loop, plugins, worker restarts): it holds fewer connections, and refuses one whose
#: descriptor lands this close to the ``nofile`` limit.
FD_RESERVE = 128

#: Seconds ``accept`` pauses after failing for want of file descriptors (no busy loop).
_ACCEPT_PAUSE = 0.25

#: Most bytes of an unread body read before closing, so that the client gets to read our reply.
_DRAIN_LIMIT = 64 * 1024

#: Seconds in all spent reading what a client sends after our reply.
_LINGER = 1.0


class Route(NamedTuple):
    """One route of the control endpoint."""

    method: str
    path: str
    usage: str
    """How it is called, e.g. ``/?mod=NAME``."""

    does: str
    statuses: tuple[int, ...]
    """The status codes it answers with, besides those any path may get: 401, 403, 404, 405,
    and 408 or 503 for a connection cut short (see :class:`_Admission`)."""

    @property
    def safe(self) -> bool:
        """Whether it only reads: then ``HEAD`` is allowed too (``GET /?mod=`` switches the driver, so not there)."""
        return self.method == "GET" and self.path != "/"


ROUTES = (
    Route("GET", "/", "/?mod=NAME", "switch the driver (as in the Go original)", (200, 400, 403, 404, 409, 422)),
    Route(
        "POST",
        "/driver",
        '/driver {"driver": NAME}',
        "switch the driver",
        (200, 400, 403, 404, 409, 411, 413, 415, 422),
    ),
    Route(
        "POST",
        "/reload",
        "/reload",
        "a new instance of the current driver, running newly installed code (--isolation process)",
        (200, 400, 404, 409, 411, 413, 415, 422),
    ),
    Route(
        "GET",
        "/status",
        "/status",
        "driver, distribution, version, counters, last error, uptime, per-driver numbers, worker",
        (200,),
    ),
    Route("GET", "/plugins", "/plugins", "the installed plugins, as greeter list --json", (200,)),
    Route(
        "GET",
        "/metrics",
        "/metrics",
        "counters and greet() latency in the Prometheus text format (needs greeter-core[metrics])",
        (200, 501),
    ),
)

#: path -> {method: what it does}: the routes as error replies list them. HEAD is GET without the
#: body, on the routes that only read: a HEAD request never switches the driver.
_METHODS: dict[str, dict[str, str]] = {}
for _route in ROUTES:
    _METHODS.setdefault(_route.path, {})[_route.method] = f"{_route.usage}: {_route.does}"
    if _route.safe:
        _METHODS[_route.path]["HEAD"] = f"{_route.usage}: as GET, without the body"


def status_for(error: GreeterError) -> int:
    """The HTTP status for a slot's error: whose fault, and can it be retried (``http_status`` on its class)."""
    return error.http_status


class _Text(NamedTuple):
    """A reply that is not JSON: ``/metrics``."""

    body: bytes
    content_type: str


class _Reject(Exception):
    """A request the control plane refuses before it reaches the runtime."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.payload: dict[str, object] = {"error": message, **extra}
        self.headers: dict[str, str] = {}


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to loopback."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--control {text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise UsageError(f"--control {text!r}: expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8080")
    return host or DEFAULT_HOST, int(port)


def _resolve(text: str, host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    try:
        [(family, _, _, _, address), *_] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UsageError(f"--control {text!r}: cannot resolve {host!r}: {error}") from None
    return family, address


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _check_token(token: str | None) -> None:
    if token is None:
        return
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise UsageError("the control token must be non-empty printable ASCII without spaces")


def bind(address: str, token: str | None = None) -> ControlServer:
    """Bind the control endpoint (not serving yet); every user mistake is a UsageError."""
    host, port = parse_address(address)
    _check_token(token)
    family, sockaddr = _resolve(address, host, port)
    shown = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
    if token is None and not _is_loopback(sockaddr[0]):
        raise UsageError(
            f"refusing to serve the control endpoint on {shown}, a non-loopback address, without a "
            f"token: anyone who can reach it could switch plugins; set --control-token or ${TOKEN_ENV}, "
            f"or bind 127.0.0.1"
        )
    try:
        return ControlServer(family, sockaddr, token)
    except OSError as error:
        raise UsageError(f"cannot serve the control endpoint on {shown}:{port}: {error.strerror or error}") from None


class _Held:
    """One connection the endpoint holds: until when it may send, whether it is being answered, why it was cut."""

    __slots__ = ("busy", "cut", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.busy = False
        self.cut: _Reject | None = None


class _Admission:
    """Which connections the control endpoint holds, and for how long: what keeps it from being starved.

    One thread per connection, as ``http.server`` has it, but never more than
    *limit* of them, and each must deliver its whole request within
    *deadline* seconds of being accepted, however slowly its bytes trickle in.
    When all are taken, the connection that has been sending its request the
    longest is cut to let the next one in: a new ``curl /status`` is served
    even while hundreds of slow clients queue for a place. A connection being
    answered (``busy``) is never cut: what it waits on, the slot, has
    deadlines of its own.

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

    def begin_work(self, connection: socket.socket) -> _Reject | None:
        """The request has arrived whole: from now on it is answered, never cut; or why it was cut already."""
        with self._changed:
            held = self._held.get(connection)
            if held is None or held.cut is not None:
                return held.cut if held is not None else _Reject(503, "the connection was dropped")
            held.busy = True
            return None

    def cut_reason(self, connection: socket.socket) -> _Reject | None:
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
                    self._cut(connection, held, _Reject(503, "too many connections; this one was the slowest"))
                    return True
            return False

    def _expire(self) -> None:
        now = time.monotonic()
        for connection, held in self._held.items():
            if not held.busy and held.cut is None and held.deadline <= now:
                late = _Reject(408, f"the request did not arrive within {self.deadline:g} s")
                self._cut(connection, held, late)

    @staticmethod
    def _cut(connection: socket.socket, held: _Held, why: _Reject) -> None:
        held.cut = why
        with suppress(OSError):  # already closed by its handler
            connection.shutdown(socket.SHUT_RD)


def _nofile() -> int:
    """This process's soft limit on open file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 1 << 20


class ControlServer(ThreadingHTTPServer):
    """The bound control endpoint; :meth:`start` serves a driver slot from a background thread."""

    daemon_threads = True
    request_queue_size = 128  # many clients at once must wait, not be refused

    def __init__(self, family: int, sockaddr: tuple[Any, ...], token: str | None) -> None:
        self.address_family = family
        self.token = token
        self.slot: DriverSlot | None = None
        self._thread: threading.Thread | None = None
        self._metrics: SlotMetrics | None = None
        self._metrics_lock = threading.Lock()
        nofile = _nofile()
        self.admission = _Admission(max(1, min(MAX_CONNECTIONS, (nofile - FD_RESERVE) // 2)), REQUEST_DEADLINE)
        self._refused = 0  # accepts failed for want of descriptors, in the current shortage
        super().__init__(sockaddr, _Handler)

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: its socket.getfqdn() can wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)
        #: The names a request's Host may give: this endpoint's own (see _Handler._refuse_web_pages).
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

    def start(self, slot: DriverSlot) -> None:
        """Serve *slot* from a daemon thread; log where (port 0 becomes a real one)."""
        self.slot = slot
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="greeter-control", daemon=True
        )
        self._thread.start()
        log.info("control endpoint on %s", self.url)

    def metrics(self) -> _Text:
        """``GET /metrics``: the slot's numbers in the Prometheus text format, from a registry of its own.

        ``prometheus_client`` is imported here, on the first request, never before.
        """
        slot = self.slot
        if slot is None:
            raise RuntimeStoppedError
        with self._metrics_lock:
            if self._metrics is None:
                try:
                    from .metrics import SlotMetrics
                except ImportError as error:
                    raise _Reject(
                        501,
                        f"GET /metrics needs the metrics extra, which is not installed here ({error}); "
                        "install it with: pip install 'greeter-core[metrics]'",
                        extra="greeter-core[metrics]",
                    ) from None
                self._metrics = SlotMetrics(slot)
            metrics = self._metrics
        from .metrics import CONTENT_TYPE

        return _Text(metrics.exposition(), CONTENT_TYPE)

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
        log.debug("control connection from %s failed", client_address, exc_info=True)

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
            log.info("control endpoint: accepting again (%d refused for want of descriptors)", self._refused)
            self._refused = 0
        if connection.fileno() >= max(16, _nofile() - FD_RESERVE):  # the limit may have changed since
            # The process is close to its limit (a plugin holding files, say): keep the rest for it.
            self._refuse(connection, "greeter is short of file descriptors; try again later")
            self.admission.relieve()
            raise OSError(errno.EMFILE, "refused a connection to keep descriptors in reserve")
        self.admission.admit(connection)
        return connection, address

    def _short_of_descriptors(self, error: OSError) -> None:
        if not self._refused:
            log.warning(
                "control endpoint: cannot accept connections: %s (nofile %d); pausing until descriptors are free",
                error.strerror or error,
                _nofile(),
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


class _Handler(BaseHTTPRequestHandler):
    """One request on one connection: authorize, refuse web pages, route, reply JSON.

    Where ``http.server`` gets an edge wrong, this class fixes it: an HTTP/0.9
    or one-word request line is answered at once with a status line (not
    after waiting for headers that never come, not with a bare body).
    """

    server: ControlServer
    server_version = "greeter-control"
    timeout = REQUEST_DEADLINE  # per read; the whole request has REQUEST_DEADLINE too (see _Admission)
    raw_requestline: bytes
    _consumed = False
    _answered = False

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Every method, known or not, goes through one dispatcher: so an odd
        # method gets 405 (or 404) in JSON rather than http.server's HTML 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def parse_request(self) -> bool:
        # http.server takes a two-word line for HTTP/0.9 and then waits for
        # headers anyway (REQUEST_DEADLINE seconds of silence), and answers a
        # one-word line without a status line. Refuse both at once.
        if len(self.raw_requestline.split()) < 3:
            self.command, self.request_version, self.close_connection = "", "HTTP/1.0", True
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.send_error(400, "expected a request line like 'GET /status HTTP/1.1' (HTTP/0.9 is not supported)")
            return False
        return super().parse_request()

    def _dispatch(self) -> None:
        try:
            status, payload, headers = self._respond()
        except Exception:
            log.exception("control request %s %r failed", self.command, self.path)
            status, payload, headers = 500, {"error": "internal error; see greeter's log", "status": 500}, {}
        self._reply(status, payload, headers)
        self._linger()

    def _respond(self) -> tuple[int, object, dict[str, str]]:
        try:
            self._authorize()
            self._refuse_web_pages()
            path, _, query = self.path.partition("?")
            methods = _METHODS.get(path)
            if methods is None:
                raise _Reject(404, f"no such endpoint: {path[:100]!r}", routes=_METHODS)
            if self.command not in methods:
                reject = _Reject(405, f"{path} accepts {', '.join(methods)} only", allowed=list(methods))
                reject.headers["Allow"] = ", ".join(methods)
                raise reject
            body = self._read_body() if self.command == "POST" else b""
            cut = self.server.admission.begin_work(self.connection)
            if cut is not None:
                raise cut  # too late, or dropped to let another client in: nothing is done
            return 200, self._route(path, query, body), {}
        except _Reject as reject:
            return reject.status, {**reject.payload, "status": reject.status}, reject.headers
        except GreeterError as error:
            return self._error(error)

    def _route(self, path: str, query: str, body: bytes) -> object:
        slot = self._slot()
        if path == "/status":
            return slot.status()
        if path == "/plugins":
            return slot.plugins()
        if path == "/metrics":
            return self.server.metrics()
        if path == "/reload":
            return slot.reload().as_dict()
        name = self._name_from_query(query) if path == "/" else self._name_from_body(body)
        return slot.swap(name).as_dict()

    def _slot(self) -> DriverSlot:
        slot = self.server.slot
        if slot is None:
            raise RuntimeStoppedError
        return slot

    def _authorize(self) -> None:
        token = self.server.token
        if token is None:
            return
        scheme, _, given = str(self.headers.get("Authorization", "")).partition(" ")
        expected = token.encode("ascii")
        ok = hmac.compare_digest(given.strip().encode("latin-1", "replace"), expected)
        if not (ok and scheme.lower() == "bearer"):
            reject = _Reject(401, "this endpoint needs 'Authorization: Bearer <token>'")
            reject.headers["WWW-Authenticate"] = 'Bearer realm="greeter"'
            raise reject

    def _refuse_web_pages(self) -> None:
        """403 for what a web page made the browser send: DNS rebinding, cross-site requests.

        Without a token the endpoint is on loopback, and the ``Host`` must name
        it: a rebinding page reaches 127.0.0.1 under its own name. With a token
        the endpoint may have any name, and a page cannot know the token. Either
        way an ``Origin`` must be this endpoint itself, and ``Sec-Fetch-Site``
        (which browsers send even where they send no ``Origin``, as on a
        cross-site ``<img src>``) must say the user or this endpoint asked.
        """
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            raise _Reject(400, "give one Host header")
        host = str(hosts[0]).strip() if hosts else None
        if self.server.token is None and host is not None and _host_name(host) not in self.server.host_names:
            raise _Reject(
                403,
                f"Host {host[:100]!r} is not this endpoint: call it as localhost or {self.server.server_name} "
                f"(requests under another name are refused, against DNS rebinding)",
            )
        origin = self.headers.get("Origin")
        if origin is not None and (host is None or str(origin).strip().lower() != f"http://{host.lower()}"):
            raise _Reject(403, f"cross-site request from origin {str(origin)[:100]!r} refused")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and str(site).strip().lower() not in ("same-origin", "none"):
            raise _Reject(403, f"cross-site request refused (Sec-Fetch-Site: {str(site)[:40]})")

    def _name_from_query(self, query: str) -> str:
        try:
            fields = parse_qs(query, keep_blank_values=True, max_num_fields=32)
        except ValueError:
            raise _Reject(400, "too many query parameters") from None
        names = fields.get("mod", [])
        if not names:
            raise _Reject(400, "GET / switches the driver: give ?mod=NAME (see: GET /plugins)", routes=_METHODS)
        if len(names) > 1:
            raise _Reject(400, "give ?mod=NAME once")
        return names[0]

    def _name_from_body(self, body: bytes) -> str:
        try:
            data = json.loads(body.decode("utf-8"), object_pairs_hook=_one_of_each)
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or list(data) != ["driver"] or not isinstance(data["driver"], str):
            raise _Reject(400, 'expected a JSON object like {"driver": "english"}')
        return data["driver"]

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise _Reject(411, "send the body with a Content-Length; transfer codings (chunked) are not accepted")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1 or (lengths and not re.fullmatch(r"[0-9]+", lengths[0])):
            raise _Reject(400, "Content-Length must be one whole number")
        digits = lengths[0].lstrip("0") if lengths else ""
        if len(digits) > len(str(MAX_BODY)) or int(digits or 0) > MAX_BODY:  # no int() of a thousand digits
            raise _Reject(413, f"the body may be {MAX_BODY} bytes at most")
        length = int(digits or 0)
        types = self.headers.get_all("Content-Type") or []
        # A web page can send text/plain or a form anywhere without asking; JSON makes the browser ask first.
        if (types or length) and not _is_json(types):
            raise _Reject(415, "send the body as JSON, with 'Content-Type: application/json'")
        if not length:
            return b""
        self._consumed = True
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise _Reject(408, "the body did not arrive in time") from None
        if len(body) != length:
            raise _Reject(400, "the body is shorter than its Content-Length")
        return body

    def _error(self, error: GreeterError) -> tuple[int, object, dict[str, str]]:
        status = status_for(error)
        payload: dict[str, object] = {"error": str(error), "status": status}
        if error.driver is not None:
            payload["driver"] = error.driver
        if isinstance(error, NoSuchDriverError):
            payload["installed"] = list(error.installed)
        slot = self.server.slot
        if slot is not None and not isinstance(error, RuntimeStoppedError):
            payload["current"] = slot.current.name
        return status, payload, {}

    def _reply(self, status: int, payload: object, headers: dict[str, str]) -> None:
        cut = self.server.admission.cut_reason(self.connection)
        if cut is not None and not self._answered:  # whatever the half-read request came to: say why it was cut
            status, payload, headers = cut.status, {**cut.payload, "status": cut.status}, cut.headers
        self._answered = True
        if self.request_version == "HTTP/0.9":  # http.server would leave out the status line and headers
            self.request_version = "HTTP/1.0"
        if isinstance(payload, _Text):
            body, content_type = payload
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
        return self.server_version  # the Server header: http.server would append " " + sys_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _host_name(host: str) -> str:
    """The name in a Host header, without the port or brackets, lower case: ``[::1]:8080`` -> ``::1``."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name, sep, port = host.rpartition(":")
        if not sep or not port.isdigit():
            name = host
    return name.lower().removesuffix(".")


def _is_json(types: list[str]) -> bool:
    """Whether the request's Content-Type headers say JSON: one header, ``application/json``, any parameters."""
    return len(types) == 1 and types[0].partition(";")[0].strip().lower() == "application/json"


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (JSON would keep the last, silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Reject(400, f"the JSON body gives {key[:40]!r} twice")
        result[key] = value
    return result
