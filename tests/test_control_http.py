"""The control endpoint's HTTP details (RFC 9112), and the warnings an operator gets when a client is refused.

Against a real `greeter run` on 127.0.0.1, in raw bytes where http.client
would fill in what the test leaves out.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
from helpers import ALPHA, BETA, WAIT, RunningGreeter, request

from greeter_core import httpd
from greeter_core.control import bind
from greeter_core.slot import DriverSlot


@pytest.fixture
def alpha(start, install) -> RunningGreeter:
    """`greeter run --driver alpha` with a control endpoint, greeting every 10 ms; beta is installed too."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    return greeter


def read_reply(connection: socket.socket) -> bytes:
    reply = b""
    while chunk := connection.recv(65536):
        reply += chunk
    return reply


def exchange(port: int, data: bytes) -> tuple[str, dict[str, object]]:
    """Send *data* on a fresh connection; (status line, JSON body) of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(data)
        head, _, body = read_reply(connection).partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n")[0], json.loads(body)


def test_an_http_1_1_request_without_host_is_400(alpha: RunningGreeter) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request that names no Host is 400."""
    status, data = exchange(alpha.port, b"GET /status HTTP/1.1\r\n\r\n")
    assert (status, data["status"]) == ("HTTP/1.0 400 Bad Request", 400)
    assert "Host" in str(data["error"])


def test_an_http_1_0_request_may_leave_out_the_host(alpha: RunningGreeter) -> None:
    """HTTP/1.0 has no Host requirement: such a request is served."""
    status, data = exchange(alpha.port, b"GET /status HTTP/1.0\r\n\r\n")
    assert (status, data["driver"]) == ("HTTP/1.0 200 OK", "alpha")


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/status", "HTTP://localhost:{port}/status?x=1"])
def test_an_absolute_form_target_is_served(alpha: RunningGreeter, target: str) -> None:
    """`GET http://127.0.0.1:PORT/status` (what a proxy client sends) is the route /status."""
    line = f"GET {target.format(port=alpha.port)} HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, data = exchange(alpha.port, line.encode())
    assert (status, data["driver"]) == ("HTTP/1.0 200 OK", "alpha")


def test_an_absolute_form_swap_without_a_slash_switches(alpha: RunningGreeter) -> None:
    """`GET http://127.0.0.1:PORT?mod=beta` is `/?mod=beta`."""
    line = f"GET http://127.0.0.1:{alpha.port}?mod=beta HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, data = exchange(alpha.port, line.encode())
    assert (status, data["new"]["name"]) == ("HTTP/1.0 200 OK", "beta")  # type: ignore[index]


def test_an_absolute_form_authority_is_held_to_the_host_rules(alpha: RunningGreeter) -> None:
    """The target's authority takes the place of the Host (RFC 9112 3.2.2): a foreign one is refused."""
    line = f"GET http://attacker.example:{alpha.port}/?mod=beta HTTP/1.1\r\nHost: 127.0.0.1:{alpha.port}\r\n\r\n"
    status, _ = exchange(alpha.port, line.encode())
    assert status == "HTTP/1.0 403 Forbidden"
    assert alpha.status()["swaps"] == 0


@pytest.mark.parametrize("host", ["127.0.0.1:{other}", "localhost:{other}", "localhost:0{port}0", "localhost:x"])
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
        status, _, data = read_reply(connection).partition(b"\r\n")
    assert status == b"HTTP/1.0 200 OK"
    assert json.loads(data.partition(b"\r\n\r\n")[2])["new"]["name"] == "beta"


def test_expect_100_continue_on_a_refused_body_gets_the_refusal_at_once(alpha: RunningGreeter) -> None:
    """No 100 for a body that is refused anyway (here: not JSON): the final 415 comes straight away."""
    status, data = exchange(
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
    assert "s3cret" not in record.getMessage() and "wrong" not in record.getMessage().replace("a wrong token", "")


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
