"""The HTTP control endpoint of ``greeter run``: the Go original's ``curl localhost:8080?mod=chinese``.

A thin shell over :class:`~greeter_core.slot.DriverSlot`, served by the
hardened server of :mod:`greeter_core.httpd` (admission, deadlines, the
``Host``/``Origin`` rules against web pages, body limits: read its
docstring). This module holds greeter's part: :data:`ROUTES`, the one list
of routes, what they do, their handlers and their status codes, from which
the server's dispatch table, the CLI's help, the error replies and the docs
are made; and the mapping of a :class:`~greeter_core.errors.GreeterError` to
a status code. Every reply is JSON, errors included (``/metrics`` alone
answers in the Prometheus text format, and ``GET /`` without ``?mod=`` gives a
browser, which asks for ``text/html``, the :mod:`~greeter_core.statuspage`). ``HEAD`` is ``GET`` without the
body, where ``GET`` only reads; a ``POST`` body with a key twice is 400.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from . import statuspage
from .errors import (
    GreeterError,
    NoSuchDriverError,
    RuntimeStoppedError,
    UsageError,
)
from .httpd import (
    FD_RESERVE,
    MAX_BODY,
    MAX_CONNECTIONS,
    REQUEST_DEADLINE,
    HardenedServer,
    Reject,
    Request,
    Text,
    is_loopback,
    resolve,
)
from .httpd import parse_address as parse_host_port
from .settings import env
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
TOKEN_ENV = env("control_token")

DEFAULT_HOST = "127.0.0.1"


# -- the handlers: (server, request) -> a JSON-able reply -------------------------------------


def _swap_by_query(server: ControlServer, request: Request) -> object:
    fields = _query(request.query)
    if "mod" not in fields and statuspage.wants_html(request.headers.get_all("Accept") or []):
        slot = server.running()  # a person, in a browser: the status page, from /status's and /plugins' data
        return Text(statuspage.render(slot.status(), slot.plugins()), "text/html; charset=utf-8", statuspage.HEADERS)
    return server.running().swap(_name_from_query(fields)).as_dict()


def _swap_by_body(server: ControlServer, request: Request) -> object:
    return server.running().swap(_name_from_body(request.body)).as_dict()


def _reload(server: ControlServer, request: Request) -> object:
    return server.running().reload().as_dict()


def _status(server: ControlServer, request: Request) -> object:
    return server.running().status()


def _plugins(server: ControlServer, request: Request) -> object:
    return server.running().plugins()


def _metrics(server: ControlServer, request: Request) -> object:
    return server.metrics()


class Route(NamedTuple):
    """One route of the control endpoint."""

    method: str
    path: str
    usage: str
    """How it is called, e.g. ``/?mod=NAME``."""

    does: str
    statuses: tuple[int, ...]
    """The status codes it answers with, besides those any path may get: 401, 403, 404, 405,
    and 408 or 503 for a connection cut short (see :mod:`greeter_core.httpd`)."""

    handler: Callable[[ControlServer, Request], object]

    @property
    def safe(self) -> bool:
        """Whether it only reads: then ``HEAD`` is allowed too (``GET /?mod=`` switches the driver, so not there)."""
        return self.method == "GET" and self.path != "/"


ROUTES = (
    Route(
        "GET",
        "/",
        "/?mod=NAME",
        "switch the driver (as in the Go original); without ?mod=, a browser gets a status page",
        (200, 400, 403, 404, 409, 422),
        _swap_by_query,
    ),
    Route(
        "POST",
        "/driver",
        '/driver {"driver": NAME}',
        "switch the driver",
        (200, 400, 403, 404, 409, 411, 413, 415, 422),
        _swap_by_body,
    ),
    Route(
        "POST",
        "/reload",
        "/reload",
        "a new instance of the current driver, running newly installed code (--isolation process)",
        (200, 400, 404, 409, 411, 413, 415, 422),
        _reload,
    ),
    Route(
        "GET",
        "/status",
        "/status",
        "driver, distribution, version, counters, last error, uptime, per-driver numbers, worker",
        (200,),
        _status,
    ),
    Route("GET", "/plugins", "/plugins", "the installed plugins, as greeter list --json", (200,), _plugins),
    Route(
        "GET",
        "/metrics",
        "/metrics",
        "counters and greet() latency in the Prometheus text format (needs greeter-core[metrics])",
        (200, 501),
        _metrics,
    ),
)

#: path -> method -> handler, the server's dispatch table, and path -> method -> what it does,
#: the routes as error replies list them; both from ROUTES. HEAD is GET without the body, on
#: the routes that only read: a HEAD request never switches the driver.
_TABLE: dict[str, dict[str, Callable[[ControlServer, Request], object]]] = {}
_METHODS: dict[str, dict[str, str]] = {}
for _route in ROUTES:
    _TABLE.setdefault(_route.path, {})[_route.method] = _route.handler
    _METHODS.setdefault(_route.path, {})[_route.method] = f"{_route.usage}: {_route.does}"
    if _route.safe:
        _TABLE[_route.path]["HEAD"] = _route.handler
        _METHODS[_route.path]["HEAD"] = f"{_route.usage}: as GET, without the body"


def status_for(error: GreeterError) -> int:
    """The HTTP status for a slot's error: whose fault, and can it be retried (``http_status`` on its class)."""
    return error.http_status


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to loopback."""
    try:
        return parse_host_port(text, DEFAULT_HOST)
    except ValueError as error:
        raise UsageError(f"--control {text!r}: {error}") from None


def _check_token(token: str | None) -> None:
    if token is None:
        return
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise UsageError("the control token must be non-empty printable ASCII without spaces")


def bind(address: str, token: str | None = None) -> ControlServer:
    """Bind the control endpoint (not serving yet); every user mistake is a UsageError."""
    host, port = parse_address(address)
    _check_token(token)
    try:
        family, sockaddr = resolve(host, port)
    except ValueError as error:
        raise UsageError(f"--control {address!r}: {error}") from None
    shown = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
    if token is None and not is_loopback(sockaddr[0]):
        raise UsageError(
            f"refusing to serve the control endpoint on {shown}, a non-loopback address, without a "
            f"token: anyone who can reach it could switch plugins; set --control-token or ${TOKEN_ENV}, "
            f"or bind 127.0.0.1"
        )
    try:
        return ControlServer(family, sockaddr, token)
    except OSError as error:
        raise UsageError(f"cannot serve the control endpoint on {shown}:{port}: {error.strerror or error}") from None


class ControlServer(HardenedServer):
    """The bound control endpoint; :meth:`start` serves a driver slot from a background thread."""

    name = "control endpoint"
    software = "greeter-control"
    short_of_descriptors = "greeter is short of file descriptors; try again later"

    def __init__(self, family: int, sockaddr: tuple[Any, ...], token: str | None) -> None:
        self.slot: DriverSlot | None = None
        self._metrics: SlotMetrics | None = None
        self._metrics_lock = threading.Lock()
        super().__init__(family, sockaddr, token, _TABLE, _METHODS, log)

    def start(self, slot: DriverSlot) -> None:
        """Serve *slot* from a daemon thread; log where (port 0 becomes a real one)."""
        self.slot = slot
        self.serve("greeter-control")
        log.info("control endpoint on %s", self.url)

    def running(self) -> DriverSlot:
        """The slot being served; RuntimeStoppedError once it is gone."""
        slot = self.slot
        if slot is None:
            raise RuntimeStoppedError
        return slot

    def metrics(self) -> Text:
        """``GET /metrics``: the slot's numbers in the Prometheus text format, from a registry of its own.

        ``prometheus_client`` is imported here, on the first request, never before.
        """
        slot = self.running()
        with self._metrics_lock:
            if self._metrics is None:
                try:
                    from .metrics import SlotMetrics
                except ImportError as error:
                    raise Reject(
                        501,
                        f"GET /metrics needs the metrics extra, which is not installed here ({error}); "
                        "install it with: pip install 'greeter-core[metrics]'",
                        extra="greeter-core[metrics]",
                    ) from None
                self._metrics = SlotMetrics(slot)
            metrics = self._metrics
        from .metrics import CONTENT_TYPE

        return Text(metrics.exposition(), CONTENT_TYPE)

    def answer(self, error: Exception) -> tuple[int, object, dict[str, str]] | None:
        """A slot's GreeterError as its status and a reply naming the driver asked for and the current one."""
        if not isinstance(error, GreeterError):
            return None
        status = status_for(error)
        payload: dict[str, object] = {"error": str(error), "status": status}
        if error.driver is not None:
            payload["driver"] = error.driver
        if isinstance(error, NoSuchDriverError):
            payload["installed"] = list(error.installed)
        slot = self.slot
        if slot is not None and not isinstance(error, RuntimeStoppedError):
            payload["current"] = slot.current.name
        return status, payload, {}


def _query(query: str) -> dict[str, list[str]]:
    try:
        return parse_qs(query, keep_blank_values=True, max_num_fields=32)
    except ValueError:
        raise Reject(400, "too many query parameters") from None


def _name_from_query(fields: dict[str, list[str]]) -> str:
    names = fields.get("mod", [])
    if not names:
        raise Reject(400, "GET / switches the driver: give ?mod=NAME (see: GET /plugins)", routes=_METHODS)
    if len(names) > 1:
        raise Reject(400, "give ?mod=NAME once")
    return names[0]


def _name_from_body(body: bytes) -> str:
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_one_of_each)
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or list(data) != ["driver"] or not isinstance(data["driver"], str):
        raise Reject(400, 'expected a JSON object like {"driver": "english"}')
    return data["driver"]


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (JSON would keep the last, silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise Reject(400, f"the JSON body gives {key[:40]!r} twice")
        result[key] = value
    return result
