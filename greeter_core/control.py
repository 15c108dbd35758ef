"""The HTTP control endpoint of ``greeter run``: the Go original's ``curl localhost:8080?mod=chinese``.

A thin shell over :class:`~greeter_core.slot.DriverSlot`: it parses a
request, calls the slot and maps a :class:`~greeter_core.errors.GreeterError`
to a status code. Every reply is JSON, errors included. The routes, what
they do and their status codes are :data:`ROUTES`, the one list that the
CLI's help, the error replies and the docs are made from.

On any path: 401 without the token (when one is set), 404 for an unknown
path, 405 (with ``Allow``) for a wrong method. A request without
``Content-Length`` has an empty body, as HTTP/1.1 says; a body sent with
``Transfer-Encoding`` (chunked) is refused with 411, one over 4 KiB with 413.
One request per connection.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from .errors import (
    DuplicateDriverError,
    GreeterError,
    NoSuchDriverError,
    ReloadUnsupportedError,
    RuntimeStoppedError,
    UsageError,
)
from .slot import DriverSlot

__all__ = ["MAX_BODY", "ROUTES", "TOKEN_ENV", "ControlServer", "Route", "bind", "parse_address", "status_for"]

log = logging.getLogger(__name__)

#: Environment variable holding the token when ``--control-token`` is not given.
TOKEN_ENV = "GREETER_CONTROL_TOKEN"

DEFAULT_HOST = "127.0.0.1"

#: Largest request body accepted.
MAX_BODY = 4096

#: Most bytes of an unread body read before closing, so that the client gets to read our reply.
_DRAIN_LIMIT = 64 * 1024


class Route(NamedTuple):
    """One route of the control endpoint."""

    method: str
    path: str
    usage: str
    """How it is called, e.g. ``/?mod=NAME``."""

    does: str
    statuses: tuple[int, ...]
    """The status codes it answers with, besides 401, 404 and 405 that any path may get."""


ROUTES = (
    Route("GET", "/", "/?mod=NAME", "switch the driver (as in the Go original)", (200, 400, 404, 409, 422)),
    Route("POST", "/driver", '/driver {"driver": NAME}', "switch the driver", (200, 400, 404, 409, 411, 413, 422)),
    Route(
        "POST",
        "/reload",
        "/reload",
        "a new instance of the current driver, running newly installed code (--isolation process)",
        (200, 404, 409, 411, 413, 422),
    ),
    Route("GET", "/status", "/status", "driver, distribution, version, counters, last error, uptime, worker", (200,)),
    Route("GET", "/plugins", "/plugins", "the installed plugins, as greeter list --json", (200,)),
)

#: path -> {method: what it does}: the routes as error replies list them.
_METHODS: dict[str, dict[str, str]] = {}
for _route in ROUTES:
    _METHODS.setdefault(_route.path, {})[_route.method] = f"{_route.usage}: {_route.does}"


def status_for(error: GreeterError) -> int:
    """The HTTP status for a slot's error: whose fault, and can it be retried."""
    if isinstance(error, NoSuchDriverError):
        return 404
    if isinstance(error, (DuplicateDriverError, ReloadUnsupportedError, RuntimeStoppedError)):
        return 409
    if isinstance(error, UsageError):
        return 400
    return 422  # the plugin failed to load or broke the contract


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


class ControlServer(ThreadingHTTPServer):
    """The bound control endpoint; :meth:`start` serves a driver slot from a background thread."""

    daemon_threads = True
    request_queue_size = 128  # many clients at once must wait, not be refused

    def __init__(self, family: int, sockaddr: tuple[Any, ...], token: str | None) -> None:
        self.address_family = family
        self.token = token
        self.slot: DriverSlot | None = None
        self._thread: threading.Thread | None = None
        super().__init__(sockaddr, _Handler)

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: its socket.getfqdn() can wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

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


class _Handler(BaseHTTPRequestHandler):
    """One request on one connection: authorize, route, reply JSON."""

    server: ControlServer
    server_version = "greeter-control"
    timeout = 10  # seconds a client may take to send its request
    _consumed = False

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Every method, known or not, goes through one dispatcher: so an odd
        # method gets 405 (or 404) in JSON rather than http.server's HTML 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

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
            path, _, query = self.path.partition("?")
            methods = _METHODS.get(path)
            if methods is None:
                raise _Reject(404, f"no such endpoint: {path[:100]!r}", routes=_METHODS)
            if self.command not in methods:
                reject = _Reject(405, f"{path} accepts {', '.join(methods)} only", allowed=list(methods))
                reject.headers["Allow"] = ", ".join(methods)
                raise reject
            return 200, self._route(path, query), {}
        except _Reject as reject:
            return reject.status, {**reject.payload, "status": reject.status}, reject.headers
        except GreeterError as error:
            return self._error(error)

    def _route(self, path: str, query: str) -> object:
        slot = self._slot()
        if path == "/status":
            return slot.status()
        if path == "/plugins":
            return slot.plugins()
        if path == "/reload":
            self._read_body()
            return slot.reload().as_dict()
        name = self._name_from_query(query) if path == "/" else self._name_from_body()
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

    def _name_from_body(self) -> str:
        body = self._read_body()
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or list(data) != ["driver"] or not isinstance(data["driver"], str):
            raise _Reject(400, 'expected a JSON object like {"driver": "english"}')
        return data["driver"]

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise _Reject(411, "send the body with a Content-Length; transfer codings (chunked) are not accepted")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,12}", lengths[0]):
            raise _Reject(400, "Content-Length must be one whole number")
        length = int(lengths[0])
        if length > MAX_BODY:
            raise _Reject(413, f"the body may be {MAX_BODY} bytes at most")
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
        body = (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _linger(self) -> None:
        """Read what the client still sends after our reply (bounded), so closing does not reset
        the connection before the client has read the reply."""
        if self._consumed:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            budget = _DRAIN_LIMIT
            while budget > 0 and (chunk := self.rfile.read1(min(budget, 8192))):
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
