"""Hostile clients of the control endpoint: web pages, slow and malformed requests, descriptor exhaustion.

Against a real `greeter run` on 127.0.0.1. A web page the user visits can
make the browser send requests to localhost (cross-site, or under its own
name by DNS rebinding); a client can hold connections open by sending a byte
now and then, or make the process run out of file descriptors. None of them
may drive greeter, or keep a normal ``curl /status`` from being answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import ALPHA, BETA, WAIT, PluginSpec, RunningGreeter, greet_body

from greeter_core.control import FD_RESERVE

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
    assert result.stdout.startswith(
        "HostResourceError: greeter could not start a worker for plugin 'alpha' (greeter-alpha 1.0): "
        "[Errno 24] Too many open files; this process is short of resources, not the plugin at fault"
    ), result.stderr


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
