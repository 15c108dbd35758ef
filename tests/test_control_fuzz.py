"""Fuzz the control endpoint (hypothesis): random methods, paths, queries, bodies and headers.

The driver slot, its greeting loop and the control server run in this process
(threads), so that thousands of requests stay fast and the test can watch
what gets loaded: only records of registered ``greeter.plugins`` entry
points, and never a module a request named.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from plugins import ALPHA, BETA, NO_GREET, PANIC

from greeter_core import discover, load
from greeter_core.control import bind
from greeter_core.loop import GreetingLoop
from greeter_core.slot import DriverSlot

pytestmark = pytest.mark.usefixtures("on_path")

EXAMPLES = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SPECS = (ALPHA, BETA, PANIC, NO_GREET)
SUSPICIOUS = [
    "this",
    "os",
    "os:system",
    "greeter_core.cli",
    "greeter_core.cli:main",
    "../alpha",
    "/etc/passwd",
    "alpha:Plugin",
    ALPHA.module,
    ALPHA.target,
    f"{ALPHA.module}.sub",
    "gt_fuzz_never_installed",
    "",
    "x" * 200,
]
INSTALLED = st.sampled_from(["alpha", "beta", "panic", "nogreet"])
NAMES = st.one_of(INSTALLED, INSTALLED, st.sampled_from(SUSPICIOUS), st.text(max_size=30))
SWAPS = st.sampled_from([("GET", "/"), ("POST", "/driver")])
ROUTES = st.sampled_from([("GET", "/status"), ("GET", "/plugins"), ("POST", "/reload")])
ANYWHERE = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]) | st.from_regex(r"\A[A-Z]{1,10}\Z"),
    st.sampled_from(["/", "/driver", "/status"])
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(lambda text: "/" + text),
)
QUERIES = st.one_of(
    st.builds(lambda name: [("mod", name)], NAMES),
    st.lists(st.tuples(st.sampled_from(["mod", "driver", "x"]) | st.text(max_size=6), NAMES), max_size=3),
)
HEADER_NAMES = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z").filter(
    lambda name: name.lower() not in {"content-length", "transfer-encoding", "host"}
)
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
BODIES = st.one_of(
    st.builds(lambda name: json.dumps({"driver": name}).encode(), NAMES),
    st.builds(lambda name: json.dumps({"driver": name}).encode(), NAMES),
    st.none(),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=5000),
)
# Mostly right; else missing or not a length at all (one longer than the body would only make the server wait).
LENGTHS = st.sampled_from(["exact"] * 16 + ["none", "abc", "-1", "+5", "1e3", "0x10", " ", "99999999"])


class Request(NamedTuple):
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes | None
    length: str
    names: list[str]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Mostly well-aimed requests (a real route and method), else anything http.client can send."""
    method, path = draw(st.one_of(SWAPS, SWAPS, SWAPS, ROUTES, ANYWHERE))
    pairs = draw(QUERIES)
    if pairs:
        path += "?" + urlencode(pairs, quote_via=quote)
    body = draw(BODIES)
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    names = [value for _, value in pairs]
    if body is not None:
        with suppress(ValueError, TypeError, KeyError):
            names.append(str(json.loads(body)["driver"]))
    return Request(method, path, headers, body, draw(LENGTHS), names)


def send(port: int, request: Request) -> tuple[int, bytes]:
    """Send *request* exactly as drawn (no header added but Host); return status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(request.method, request.path, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        body = request.body or b""
        if request.length == "exact":
            connection.putheader("Content-Length", str(len(body)))
        elif request.length != "none":
            connection.putheader("Content-Length", request.length)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Served(NamedTuple):
    port: int
    slot: DriverSlot
    loaded: list[Any]
    out: io.StringIO


@pytest.fixture
def served(install) -> Iterator[Served]:
    """A driver slot greeting every 5 ms, served on 127.0.0.1, with a loader that records what it loads."""
    install(*SPECS)
    loaded: list[Any] = []

    def recording_loader(info: Any, *options: Any, **keywords: Any) -> Any:
        loaded.append(info)
        return load(info, *options, **keywords)

    slot = DriverSlot(loader=recording_loader)
    slot.start("alpha")
    out = io.StringIO()
    loop = GreetingLoop(slot, who="Universe", interval=0.005, out=out)
    thread = threading.Thread(target=loop.run)
    thread.start()
    server = bind("127.0.0.1:0", token=None)
    server.start(slot)
    try:
        yield Served(server.port, slot, loaded, out)
    finally:
        server.close()
        loop.stop()
        thread.join()
        slot.close()
        loop.close()


def test_random_requests_never_get_a_5xx_and_load_nothing_outside_greeter_plugins(served: Served) -> None:
    """No random request gets a 5xx or a non-JSON body; only registered entry points are ever loaded."""
    modules_before = set(sys.modules)
    named: set[str] = set()
    swaps_accepted = 0

    @EXAMPLES
    @given(requests())
    def check(request: Request) -> None:
        nonlocal swaps_accepted
        named.update(request.names)
        status, body = send(served.port, request)
        event(f"status {status}")  # see: pytest --hypothesis-show-statistics
        assert 200 <= status < 500, (status, body)
        if request.method != "HEAD":
            assert isinstance(json.loads(body), (dict, list))
        if status == 200 and request.path.partition("?")[0] in ("/", "/driver"):
            reply = json.loads(body)
            swaps_accepted += reply["old"] != reply["new"]  # naming the current driver switches nothing

    check()

    registered = {(p.name, p.target) for p in discover()}
    assert {(info.name, info.target) for info in served.loaded} <= registered
    assert not {name for name in named if name not in modules_before} & set(sys.modules)
    status = served.slot.status()
    assert status["swaps"] == swaps_accepted
    assert set(served.out.getvalue().splitlines()) <= {"Alpha Universe", "Beta Universe"}


def test_with_a_token_no_random_request_without_it_gets_past_401(install) -> None:
    """With a token set, every random request lacking it is answered 401 and swaps nothing."""
    install(*SPECS)
    slot = DriverSlot()
    slot.start("alpha")
    server = bind("127.0.0.1:0", token="fuzz-token")
    server.start(slot)

    @EXAMPLES
    @given(requests())
    def check(request: Request) -> None:
        status, _ = send(server.port, request)
        assert status == 401

    try:
        check()
    finally:
        server.close()
        slot.close()
    assert slot.swaps == 0
