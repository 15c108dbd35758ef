"""Hostile clients of the control endpoint: web pages, slow and malformed requests, descriptor exhaustion, HTTP's edges.

Against a real `greeter run` on 127.0.0.1. A web page the user visits can
make the browser send requests to localhost (cross-site, or under its own
name by DNS rebinding); a client can hold connections open by sending a byte
now and then, or make the process run out of file descriptors. None of them
may drive greeter, or keep a normal ``curl /status`` from being answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from basics import WAIT
from plugins import ALPHA, BETA, PluginSpec, greet_body
from running import RunningGreeter, request

from greeter_core import httpd
from greeter_core.control import FD_RESERVE, bind
from greeter_core.slot import DriverSlot

TOKEN = "s3cret-token"


@pytest.fixture
def alpha(start, install) -> RunningGreeter:
    """`greeter run --driver alpha` with a control endpoint, greeting every 10 ms; beta is installed too."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    return greeter


def exchange(port: int, data: bytes) -> bytes:
    """Send *data* on a fresh connection to 127.0.0.1:port; return all the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(data)
        return read_all(connection)


def read_all(connection: socket.socket) -> bytes:
    reply = b""
    while chunk := connection.recv(65536):
        reply += chunk
    return reply


def parse(reply: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers with lower-case names, body) of a raw HTTP reply."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


def answer(port: int, data: bytes) -> tuple[str, dict[str, Any]]:
    """(status line, JSON body) of the reply to the raw request *data*."""
    status, _, body = parse(exchange(port, data))
    return status, json.loads(body)


# -- item 9: web pages cannot drive greeter ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("GET", "/?mod=beta", {"Host": "attacker.example"}, None, 403),
        ("GET", "/?mod=beta", {"Host": "attacker.example:8080"}, None, 403),
        ("GET", "/status", {"Host": "attacker.example"}, None, 403),
        ("GET", "/?mod=beta", {"Origin": "http://attacker.example"}, None, 403),
        ("GET", "/?mod=beta", {"Sec-Fetch-Site": "cross-site"}, None, 403),
        ("GET", "/?mod=beta", {"Sec-Fetch-Site": "same-site"}, None, 403),
        ("POST", "/driver", {"Content-Type": "text/plain", "Origin": "null"}, '{"driver": "beta"}', 403),
        ("POST", "/driver", {"Content-Type": "text/plain"}, '{"driver": "beta"}', 415),
        ("POST", "/driver", {"Content-Type": "application/x-www-form-urlencoded"}, "driver=beta", 415),
        ("POST", "/driver", {"Content-Type": "multipart/form-data; boundary=x"}, '{"driver": "beta"}', 415),
        ("POST", "/reload", {"Content-Type": "text/plain"}, "", 415),
    ],
    ids=[
        "rebinding",
        "rebinding-port",
        "rebinding-read",
        "cross-origin",
        "sec-fetch-cross-site",
        "sec-fetch-same-site",
        "origin-null",
        "text-plain",
        "form",
        "multipart",
        "reload-text-plain",
    ],
)
def test_what_a_web_page_can_send_is_refused(alpha: RunningGreeter, method, path, headers, body, status) -> None:
    """DNS rebinding, cross-site requests and non-JSON bodies get 403 or 415, in JSON, and change nothing."""
    reply = alpha.request(method, path, body, headers)
    assert (reply.status, reply.data["status"]) == (status, status)
    assert alpha.status()["swaps"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "localhost:{port}"},
        {"Host": "LOCALHOST"},
        {"Host": "127.0.0.1:{port}", "Origin": "http://127.0.0.1:{port}"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "same-origin"},
    ],
    ids=["localhost", "localhost-no-port", "same-origin", "typed-in-the-address-bar", "sec-fetch-same-origin"],
)
def test_what_the_user_sends_is_served(alpha: RunningGreeter, headers: dict[str, str]) -> None:
    """localhost or the bound address, the endpoint's own origin, or a URL the user typed: the swap is made."""
    headers = {name: value.format(port=alpha.port) for name, value in headers.items()}
    assert alpha.request("GET", "/?mod=beta", headers=headers).status == 200


@pytest.mark.parametrize("target", ["localhost:{port}?mod=beta", "127.0.0.1:{port}/?mod=beta"])
def test_the_go_posts_curl_still_swaps(alpha: RunningGreeter, target: str) -> None:
    """The request curl sends for `curl 'localhost:8080?mod=chinese'` (curl 7.88, byte for byte) swaps as before."""
    host, _, path = target.format(port=alpha.port).partition("?")
    host, _, _ = host.partition("/")
    request = f"GET /?{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
    status, headers, body = parse(exchange(alpha.port, request.encode()))
    assert status == "HTTP/1.0 200 OK"
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(body)["new"]["name"] == "beta"


def test_with_a_token_any_host_is_served_but_not_a_web_page(start, install) -> None:
    """With a token (any bind address), the Host is not checked; a cross-site request is still refused."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--control", "0.0.0.0:0", "--control-token", TOKEN, "--interval", "0.01"
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = {**auth, "Origin": "http://attacker.example"}
    assert greeter.request("GET", "/?mod=beta", headers=page).status == 403
    assert greeter.request("GET", "/?mod=beta", headers={**auth, "Host": "my-host.example:8080"}).status == 200


# -- item 10: the edges of HTTP ------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"GET /status\r\n", b"FOO\r\n", b"\r\n"], ids=["http-0.9", "one-word", "empty"])
def test_a_request_line_without_a_version_gets_a_status_line_and_json_at_once(alpha: RunningGreeter, line) -> None:
    """HTTP/0.9 and malformed request lines are answered 400 with a status line, without waiting for headers."""
    status, headers, body = parse(exchange(alpha.port, line))
    assert status.startswith("HTTP/1.0 400 ")
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(body)["status"] == 400


@pytest.mark.parametrize("length", ["1000000000000", "9" * 5000, "0" * 20 + "4097"], ids=["1e12", "5000-digits", "0s"])
def test_a_huge_content_length_is_413(alpha: RunningGreeter, length: str) -> None:
    """However many digits it has, a Content-Length over 4 KiB is 413, before anything is read."""
    request = (
        f"POST /driver HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    status, _, body = parse(exchange(alpha.port, request.encode()))
    assert status.startswith("HTTP/1.0 413 ")
    assert json.loads(body)["status"] == 413


def test_a_json_body_with_a_key_twice_is_400(alpha: RunningGreeter) -> None:
    """{"driver": "beta", "driver": "alpha"} is refused rather than read as its last value."""
    reply = alpha.request(
        "POST", "/driver", '{"driver": "beta", "driver": "alpha"}', {"Content-Type": "application/json"}
    )
    assert (reply.status, reply.data["error"]) == (400, "the JSON body gives 'driver' twice")
    assert alpha.status()["swaps"] == 0


def test_head_never_switches_the_driver(alpha: RunningGreeter) -> None:
    """HEAD /?mod=beta is refused with 405 (Allow: GET): a HEAD request must not change what greets."""
    status, headers, body = parse(exchange(alpha.port, b"HEAD /?mod=beta HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
    assert (status, headers["allow"], body) == ("HTTP/1.0 405 Method Not Allowed", "GET", b"")
    assert alpha.status()["driver"] == "alpha"


@pytest.mark.parametrize("path", ["/status", "/plugins"])
def test_head_is_get_without_the_body(alpha: RunningGreeter, path: str) -> None:
    """HEAD on a GET route answers 200 with GET's headers (Content-Length included) and no body."""
    status, headers, body = parse(exchange(alpha.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()))
    assert status == "HTTP/1.0 200 OK"
    assert int(headers["content-length"]) > 2
    assert body == b""


# -- item 8: it cannot be starved ------------------------------------------------------------------


def test_a_request_must_arrive_whole_within_the_deadline_however_it_trickles(alpha: RunningGreeter) -> None:
    """A client sending one byte of its headers every half second is cut off with 408, not held forever."""
    with socket.create_connection(("127.0.0.1", alpha.port), timeout=WAIT) as connection:
        connection.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + WAIT
        reply = b""
        while time.monotonic() < deadline:
            connection.settimeout(0.5)
            try:
                reply = connection.recv(65536)
                break
            except TimeoutError:
                connection.sendall(b"x")
    assert parse(reply)[0].startswith("HTTP/1.0 408 ")


@contextlib.contextmanager
def slow_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """*count* connections that each send a partial request, then one more byte every second (slowloris)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 256:
        pytest.skip(f"this test needs {count + 256} file descriptors; the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else count * 4, hard))
    clients: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for client in clients:
                with contextlib.suppress(OSError):  # the server cut it off: that is its right
                    client.send(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(count):
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            client.setblocking(False)
            with contextlib.suppress(OSError):
                client.send(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            clients.append(client)
        thread.start()
        yield clients
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for client in clients:
            client.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_the_control_plane_stays_reachable_under_a_thousand_slow_connections(alpha: RunningGreeter) -> None:
    """With nofile=1024 and 1,000 slowloris connections, /status answers, swaps work, greetings go on."""
    pid = alpha.process.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, 1024))
    with slow_clients(alpha.port, 1000):
        started = time.monotonic()
        status = alpha.status()  # a generous wait: only reached when something is wrong
        answered = time.monotonic() - started
        held = open_descriptors(pid)
        assert alpha.swap("beta").status == 200
        alpha.wait_greetings("Beta Universe", 3)
    print(f"\n/status answered in {answered:.3f} s under 1,000 slow connections; the host held {held} descriptors")
    assert status["driver"] == "alpha"
    assert held < 1024 - FD_RESERVE
    assert alpha.stop() == 0


#: Alternates: one greeting opens descriptors until none is left and keeps them, the next gives them back.
HOG = PluginSpec(
    "hog",
    code=greet_body(
        """held = self.__dict__.setdefault("held", [])
if held:
    for fd in held:
        os.close(fd)
    held.clear()
    return "Hog released"
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
self.context.logger.warning("holding %d descriptors", len(held))
return "Hog holding"
""",
        "import os",
    ),
)


def test_running_out_of_descriptors_pauses_accept_instead_of_spinning(start, install) -> None:
    """While a plugin holds every descriptor, accept pauses (a few tries a second), then serves the waiting client."""
    install(ALPHA, HOG)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "2", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    resource.prlimit(greeter.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    assert greeter.swap("hog").status == 200
    greeter.stderr.search("greeter.plugins.hog: holding")
    started = time.monotonic()
    assert greeter.status()["driver"] == "hog"  # waits in the listen queue until the plugin lets go
    elapsed = time.monotonic() - started
    greeter.stderr.search(r"control endpoint: cannot accept connections: Too many open files \(nofile 256\)")
    refused = int(greeter.stderr.search(r"accepting again \((\d+) refused for want of descriptors\)").group(1))
    print(f"\n{refused} accepts refused over {elapsed:.2f} s of exhaustion")
    assert 1 <= refused <= 8 * elapsed + 8  # a pause of 0.25 s between tries; a busy loop makes thousands
    assert greeter.stop() == 0


def test_a_worker_that_cannot_start_for_want_of_descriptors_is_not_blamed_on_the_plugin(
    install, greeter_env, tmp_path
) -> None:
    """Out of descriptors, starting a worker fails with the host's error, naming the shortage, not the plugin's."""
    install(ALPHA)
    script = textwrap.dedent(
        """
        import os, resource
        import greeter_core.worker.client  # everything imported before the descriptors run out
        from greeter_core import GreeterError, find, load
        record = find("alpha")
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            load(record, isolation="process")
        except GreeterError as error:
            print(type(error).__name__, error, sep=": ")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=greeter_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # The file it could not open may be named (the sandbox reads what the worker will need first).
    assert re.match(
        r"HostResourceError: greeter could not start a worker for plugin 'alpha' \(greeter-alpha 1\.0\): "
        r"\[Errno 24\] Too many open files(: '[^']*')?; this process is short of resources, not the plugin at fault",
        result.stdout,
    ), (result.stdout, result.stderr)


#: Holds descriptors until only 40 are left under the limit; gives them back when closed.
HALF_HOG = PluginSpec(
    "halfhog",
    code=greet_body(
        """if not hasattr(self, "held"):
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    self.held = [os.open(os.devnull, os.O_RDONLY)]
    while self.held[-1] < limit - 40:
        self.held.append(os.open(os.devnull, os.O_RDONLY))
    self.context.logger.warning("holding %d descriptors", len(self.held))
return "Half hog"
""",
        "import os, resource",
    )
    + "\n    def close(self):\n        for fd in getattr(self, 'held', ()):\n            os.close(fd)\n",
)


def test_a_connection_that_would_eat_into_the_reserve_is_refused_503(start, install, tmp_path) -> None:
    """With the process near its descriptor limit, a new connection gets 503 at once; the reserve stays free."""
    install(ALPHA, HALF_HOG)
    driver = tmp_path / "driver"
    driver.write_text("alpha", encoding="utf-8")
    greeter: RunningGreeter = start("--driver-file", str(driver), "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    resource.prlimit(greeter.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    driver.write_text("halfhog", encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.stderr.search("greeter.plugins.halfhog: holding")
    reply = greeter.request("GET", "/status")
    assert (reply.status, reply.data["error"]) == (503, "greeter is short of file descriptors; try again later")
    driver.write_text("alpha", encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.status()["driver"] == "alpha"
    assert greeter.stop() == 0


# -- issue 22: the details of HTTP (RFC 9112) ---------------------------------------------------


def test_an_http_1_1_request_without_host_is_400(alpha: RunningGreeter) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request that names no Host is 400."""
    status, data = answer(alpha.port, b"GET /status HTTP/1.1\r\n\r\n")
    assert (status, data["status"]) == ("HTTP/1.0 400 Bad Request", 400)
    assert "Host" in str(data["error"])


def test_an_http_1_0_request_may_leave_out_the_host(alpha: RunningGreeter) -> None:
    """HTTP/1.0 has no Host requirement: such a request is served."""
    status, data = answer(alpha.port, b"GET /status HTTP/1.0\r\n\r\n")
    assert (status, data["driver"]) == ("HTTP/1.0 200 OK", "alpha")


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/status", "HTTP://localhost:{port}/status?x=1"])
def test_an_absolute_form_target_is_served(alpha: RunningGreeter, target: str) -> None:
    """`GET http://127.0.0.1:PORT/status` (what a proxy client sends) is the route /status."""
    line = f"GET {target.format(port=alpha.port)} HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, data = answer(alpha.port, line.encode())
    assert (status, data["driver"]) == ("HTTP/1.0 200 OK", "alpha")


def test_an_absolute_form_swap_without_a_slash_switches(alpha: RunningGreeter) -> None:
    """`GET http://127.0.0.1:PORT?mod=beta` is `/?mod=beta`."""
    line = f"GET http://127.0.0.1:{alpha.port}?mod=beta HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, data = answer(alpha.port, line.encode())
    assert (status, data["new"]["name"]) == ("HTTP/1.0 200 OK", "beta")


def test_an_absolute_form_authority_is_held_to_the_host_rules(alpha: RunningGreeter) -> None:
    """The target's authority takes the place of the Host (RFC 9112 3.2.2): a foreign one is refused."""
    line = f"GET http://attacker.example:{alpha.port}/?mod=beta HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, _ = answer(alpha.port, line.encode())
    assert status == "HTTP/1.0 403 Forbidden"
    assert alpha.status()["swaps"] == 0


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{other}", "localhost:{other}", "localhost:0{port}0", "localhost:1{port:06d}", "localhost:x"]
)
def test_a_host_naming_another_port_is_refused(alpha: RunningGreeter, host: str) -> None:
    """Without a token the Host's port, when it gives one, must be the bound port: 403 otherwise."""
    host = host.format(port=alpha.port, other=alpha.port + 1 if alpha.port < 65535 else 1)
    reply = alpha.request("GET", "/?mod=beta", headers={"Host": host})
    assert (reply.status, reply.data["status"]) == (403, 403)
    assert alpha.status()["swaps"] == 0


def test_expect_100_continue_is_answered_before_the_body_is_sent(alpha: RunningGreeter) -> None:
    """A client that waits for `100 Continue` before sending its body gets it at once, then the swap's 200."""
    body = b'{"driver": "beta"}'
    head = (
        f"POST /driver HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", alpha.port), timeout=WAIT) as connection:
        connection.sendall(head.encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = connection.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        status, _, data = read_all(connection).partition(b"\r\n")
    assert status == b"HTTP/1.0 200 OK"
    assert json.loads(data.partition(b"\r\n\r\n")[2])["new"]["name"] == "beta"


def test_expect_100_continue_on_a_refused_body_gets_the_refusal_at_once(alpha: RunningGreeter) -> None:
    """No 100 for a body that is refused anyway (here: not JSON): the final 415 comes straight away."""
    status, data = answer(
        alpha.port,
        f"POST /driver HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: 18\r\nExpect: 100-continue\r\n\r\n".encode(),
    )
    assert (status, data["status"]) == ("HTTP/1.0 415 Unsupported Media Type", 415)


# -- refused clients are logged, at WARNING, with their reason, rate-limited -----------------------


@pytest.mark.parametrize(
    ("headers", "reason", "why"),
    [
        ({"Host": "attacker.example"}, "rebinding", "Host 'attacker.example' is not this endpoint"),
        ({"Origin": "http://attacker.example"}, "cross-site", "origin 'http://attacker.example' refused"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site", "(Sec-Fetch-Site: cross-site)"),
    ],
    ids=["rebinding", "origin", "sec-fetch-site"],
)
def test_a_web_page_refused_is_a_warning_with_its_reason(alpha: RunningGreeter, headers, reason, why) -> None:
    """An operator sees on greeter's stderr what was refused, from where, and why."""
    assert alpha.request("GET", "/?mod=beta", headers=headers).status == 403
    line = alpha.stderr.search(r"WARNING greeter_core\.control: control endpoint: refused GET '/\?mod=beta' .*$")
    assert f"from 127.0.0.1 ({reason}): " in line.group()
    assert why in line.group()


@pytest.fixture
def token_server(install, on_path):
    """An in-process control endpoint with a token, over a slot greeting nothing."""
    install(ALPHA)
    slot = DriverSlot()
    slot.start("alpha")
    server = bind("127.0.0.1:0", token="s3cret-token")
    server.start(slot)
    yield server
    server.close()
    slot.close()


@pytest.mark.parametrize(("auth", "why"), [(None, "no token given"), ("Bearer wrong", "a wrong token")])
def test_a_bad_token_is_a_warning_that_never_shows_the_token(token_server, caplog, auth, why) -> None:
    """A 401 is logged at WARNING with why; neither the token nor what was sent in its place is in the line."""
    caplog.set_level(logging.WARNING, logger="greeter_core.control")
    headers = {"Authorization": auth} if auth else {}
    assert request(token_server.port, "GET", "/status", headers=headers).status == 401
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "refused GET '/status' from 127.0.0.1 (token): " in record.getMessage()
    assert why in record.getMessage()
    assert "s3cret" not in record.getMessage() and "Bearer wrong" not in record.getMessage()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_logged_once_per_reason_per_second_and_the_rest_counted(caplog) -> None:
    """A flood of refusals makes one line per reason a second, then one line with how many were held back."""
    clock = Clock()
    log = logging.getLogger("test.refusals")
    caplog.set_level(logging.WARNING, logger="test.refusals")
    refusals = httpd._Refusals(log, "endpoint", window=1.0, clock=clock)
    for _ in range(50):
        refusals.refused("rebinding", "127.0.0.1", "GET '/'", "Host 'evil' is not this endpoint")
    refusals.refused("token", "127.0.0.1", "GET '/'", "no token given")
    clock.now += 0.5
    refusals.flush()  # not a second yet: nothing
    assert [r.getMessage() for r in caplog.records] == [
        "endpoint: refused GET '/' from 127.0.0.1 (rebinding): Host 'evil' is not this endpoint",
        "endpoint: refused GET '/' from 127.0.0.1 (token): no token given",
    ]
    clock.now += 0.5
    refusals.flush()
    assert caplog.records[-1].getMessage() == "endpoint: 49 more requests refused (rebinding) in the last 1 s"
    assert len(caplog.records) == 3
    clock.now += 1.0
    refusals.refused("rebinding", "127.0.0.1", "GET '/x\\n'", "again\x1b[31m")
    assert caplog.records[-1].getMessage() == "endpoint: refused GET '/x\\n' from 127.0.0.1 (rebinding): again\\x1b[31m"
