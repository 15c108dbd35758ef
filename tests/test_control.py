"""The HTTP control endpoint of `greeter run`, against a real process on 127.0.0.1: every route and status code."""

from __future__ import annotations

import json
import socket

import pytest
from plugins import ALPHA, BETA, BROKEN_IMPORT, NO_GREET, PANIC, SYS_EXIT, PluginSpec
from running import RunningGreeter, post_json

TOKEN = "s3cret-token"
TWIN_A = PluginSpec("twin", distribution="greeter-twin-a")
TWIN_B = PluginSpec("twin", distribution="greeter-twin-b")


@pytest.fixture
def alpha(start, install) -> RunningGreeter:
    """`greeter run --driver alpha` with a control endpoint, greeting every 10 ms."""
    install(ALPHA, BETA, PANIC, SYS_EXIT, BROKEN_IMPORT, NO_GREET)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    return greeter


def swap_by_query(greeter: RunningGreeter, driver: str):
    return greeter.request("GET", f"/?mod={driver}")


def swap_by_body(greeter: RunningGreeter, driver: str):
    return post_json(greeter.port, "/driver", {"driver": driver})


SWAPS = pytest.mark.parametrize("swap", [swap_by_query, swap_by_body], ids=["GET-mod", "POST-driver"])


@SWAPS
def test_a_swap_replies_old_and_new_and_the_new_driver_greets_from_then_on(alpha: RunningGreeter, swap) -> None:
    """A swap answers 200 with the old and new plugin; once the new one greets, the old one never does again."""
    reply = swap(alpha, "beta")
    assert reply.status == 200
    assert (reply.data["old"]["name"], reply.data["new"]["name"]) == ("alpha", "beta")
    assert reply.data["new"]["distribution"] == "greeter-beta"
    alpha.wait_greetings("Beta Universe", 3)
    lines = alpha.stdout.lines
    assert "Alpha Universe" not in lines[lines.index("Beta Universe") :]


def test_status_reports_the_driver_and_the_counters(alpha: RunningGreeter) -> None:
    """GET /status: driver, distribution, version, greetings, errors, swaps, reloads, last error, uptime, drivers."""
    status = alpha.wait_status(lambda s: s["greetings"] >= 1)
    assert status.keys() == {
        "driver",
        "distribution",
        "version",
        "isolation",
        "greetings",
        "errors",
        "swaps",
        "reloads",
        "last_error",
        "uptime",
        "drivers",
        "worker",
    }
    assert (status["driver"], status["distribution"], status["version"]) == ("alpha", "greeter-alpha", "1.0")
    assert (status["errors"], status["swaps"], status["reloads"], status["last_error"]) == (0, 0, 0, None)
    assert (status["isolation"], status["worker"]) == ("none", None)
    assert status["uptime"] >= 0


def test_plugins_lists_the_same_records_as_greeter_list_json(alpha: RunningGreeter, cli) -> None:
    """GET /plugins returns exactly what `greeter list --json` prints."""
    reply = alpha.request("GET", "/plugins")
    assert reply.status == 200
    assert reply.data == json.loads(cli("list", "--json").stdout)


@pytest.mark.parametrize("failing", ["panic", "sysexit"])
def test_a_failing_plugin_swapped_in_and_back_out_leaves_greetings_resuming(
    alpha: RunningGreeter, failing: str
) -> None:
    """Swapping to a plugin that raises or calls sys.exit() only counts errors; swapping back greets again."""
    assert alpha.swap(failing).status == 200
    failed = alpha.wait_status(lambda s: s["errors"] >= 3)
    assert failed["last_error"].startswith(f"plugin {failing!r} (greeter-{failing} 1.0) failed: ")
    assert alpha.swap("alpha").status == 200
    alpha.wait_greetings("Alpha Universe", 3)
    assert alpha.process.poll() is None


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", "/", None, {}),
        ("GET", "/?mod=", None, {}),
        ("GET", "/?mod=beta&mod=alpha", None, {}),
        ("GET", "/?mod=" + "x" * 129, None, {}),
        ("POST", "/driver", "not json", {}),
        ("POST", "/driver", b"\xff\xfe", {}),
        ("POST", "/driver", '{"driver": 1}', {}),
        ("POST", "/driver", '["beta"]', {}),
        ("POST", "/driver", '{"driver": "beta", "extra": 1}', {}),
        ("POST", "/driver", "[" * 2000 + "]" * 2000, {}),
        ("POST", "/driver", None, {}),
        ("POST", "/driver", b"", {"Content-Length": "1e3"}),
    ],
    ids=[
        "no-mod",
        "empty-mod",
        "two-mods",
        "long-name",
        "not-json",
        "not-utf8",
        "not-a-string",
        "not-an-object",
        "extra-key",
        "deep-json",
        "no-body",
        "bad-length",
    ],
)
def test_a_missing_or_malformed_parameter_is_400(alpha: RunningGreeter, method, path, body, headers) -> None:
    """A missing, repeated, oversized or malformed driver parameter or JSON body is 400 and changes nothing."""
    if method == "POST":
        headers = {"Content-Type": "application/json", **headers}
    reply = alpha.request(method, path, body, headers)
    assert (reply.status, reply.data["status"]) == (400, 400)
    assert reply.data["error"]
    assert alpha.status()["swaps"] == 0


def test_the_server_header_names_greeter_control_without_a_trailing_space(alpha: RunningGreeter) -> None:
    """The raw `Server:` header line is exactly `Server: greeter-control`."""
    with socket.create_connection(("127.0.0.1", alpha.port), timeout=60) as connection:
        connection.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(4096)
            assert chunk, head
            head += chunk
    [server] = [line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("server:")]
    assert server == "Server: greeter-control"


def test_a_swap_to_the_driver_already_running_switches_nothing_and_says_so(alpha: RunningGreeter) -> None:
    """`?mod=alpha` while alpha greets: 200 with old == new, no swap counted, and the log says nothing switched."""
    reply = alpha.swap("alpha")
    assert reply.status == 200
    assert reply.data["old"] == reply.data["new"] and reply.data["new"]["name"] == "alpha"
    assert (reply.data["swaps"], alpha.status()["swaps"]) == (0, 0)
    alpha.stderr.search(r"INFO greeter_core\.runtime: already greeting with alpha \(greeter-alpha 1\.0\); nothing to")


def test_get_root_without_mod_lists_the_routes(alpha: RunningGreeter) -> None:
    """GET / with no ?mod= is a 400 whose reply lists the routes, as help."""
    reply = alpha.request("GET", "/")
    assert set(reply.data["routes"]) == {"/", "/driver", "/reload", "/status", "/plugins", "/metrics"}


@pytest.mark.parametrize("name", ["french", ALPHA.module, ALPHA.target, "../alpha", "greeter_core.cli", "os:system"])
def test_a_name_not_registered_in_greeter_plugins_is_404_with_the_installed_names(alpha: RunningGreeter, name) -> None:
    """Only entry-point names are loaded: anything else, module names and paths included, is 404."""
    reply = post_json(alpha.port, "/driver", {"driver": name})
    assert reply.status == 404
    assert {"alpha", "beta"} <= set(reply.data["installed"])
    assert (reply.data["driver"], reply.data["current"]) == (name, "alpha")


def test_an_unknown_path_is_404(alpha: RunningGreeter) -> None:
    """A path that is not a route is 404, in JSON."""
    reply = alpha.request("GET", "/admin")
    assert (reply.status, reply.data["status"]) == (404, 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/status", "GET, HEAD"),
        ("DELETE", "/", "GET"),
        ("GET", "/driver", "POST"),
        ("BREW", "/reload", "POST"),
    ],
)
def test_a_wrong_method_is_405_with_allow(alpha: RunningGreeter, method: str, path: str, allowed: str) -> None:
    """A route called with a method it does not take is 405, naming the allowed ones in Allow."""
    reply = alpha.request(method, path)
    assert reply.status == 405
    assert reply.headers["allow"] == allowed


def test_reload_without_process_isolation_is_409(alpha: RunningGreeter) -> None:
    """POST /reload in-process is refused with 409: stevedore and Python cannot load new code in place."""
    reply = alpha.request("POST", "/reload")
    assert reply.status == 409
    assert "--isolation process" in reply.data["error"]
    assert alpha.status()["reloads"] == 0


def test_a_name_registered_by_two_distributions_is_409(start, install) -> None:
    """A swap to a name two distributions register is refused with 409 naming both."""
    install(ALPHA, TWIN_A, TWIN_B)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    reply = greeter.swap("twin")
    assert reply.status == 409
    assert "greeter-twin-a" in reply.data["error"] and "greeter-twin-b" in reply.data["error"]


def test_a_chunked_body_is_411(alpha: RunningGreeter) -> None:
    """A body sent with Transfer-Encoding (chunked) is refused with 411: send a Content-Length."""
    reply = alpha.request("POST", "/driver", iter([b'{"driver": "beta"}']))  # type: ignore[arg-type]
    assert reply.status == 411
    assert alpha.status()["driver"] == "alpha"


def test_a_body_over_4_kib_is_413(alpha: RunningGreeter) -> None:
    """A body over 4 KiB is refused with 413 before it is read."""
    reply = post_json(alpha.port, "/driver", {"driver": "beta", "padding": "x" * 5000})
    assert reply.status == 413
    assert alpha.status()["driver"] == "alpha"


@pytest.mark.parametrize("spec", [BROKEN_IMPORT, NO_GREET], ids=["fails-to-load", "breaks-the-contract"])
def test_a_plugin_that_cannot_be_loaded_is_422_and_the_current_driver_keeps_greeting(
    alpha: RunningGreeter, spec
) -> None:
    """A swap to a plugin that fails to import or is not a Greeter is 422 with the reason; nothing changes."""
    reply = alpha.swap(spec.driver)
    assert reply.status == 422
    assert reply.data["error"].startswith(f"plugin {spec.driver!r} (greeter-{spec.driver} 1.0) ")
    assert reply.data["current"] == "alpha"
    alpha.wait_greetings("Alpha Universe", 3)
    assert alpha.status()["swaps"] == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong-token", "no-scheme", "basic"],
)
def test_with_a_token_a_request_without_it_is_401(start, install, headers: dict[str, str]) -> None:
    """With --control-token, a request without `Authorization: Bearer <token>` is 401 and changes nothing."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--control-token", TOKEN
    )
    for method, path in [("GET", "/?mod=beta"), ("GET", "/status"), ("GET", "/nowhere")]:
        reply = greeter.request(method, path, headers=headers)
        assert (reply.status, reply.headers["www-authenticate"]) == (401, 'Bearer realm="greeter"')
    assert greeter.status({"Authorization": f"Bearer {TOKEN}"})["swaps"] == 0


def test_the_token_may_come_from_the_environment(start, install) -> None:
    """GREETER_CONTROL_TOKEN sets the token when --control-token is not given."""
    install(ALPHA)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--control", "127.0.0.1:0", env_extra={"GREETER_CONTROL_TOKEN": TOKEN}
    )
    assert greeter.request("GET", "/status").status == 401
    assert greeter.request("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_with_a_token_a_non_loopback_bind_is_allowed(start, install) -> None:
    """Binding 0.0.0.0 works with a token (the test connects through 127.0.0.1 only)."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--control", "0.0.0.0:0", "--control-token", TOKEN, "--interval", "0.01"
    )
    greeter.stderr.search(r"control endpoint on http://0\.0\.0\.0:\d+")
    reply = greeter.request("GET", "/?mod=beta", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200


@pytest.mark.shipped
def test_the_go_posts_session_replays(start, install) -> None:
    """Greet in Chinese, swap to English over HTTP, to a panicking plugin and back: greetings resume."""
    install(PANIC)
    greeter: RunningGreeter = start("--driver", "chinese", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("你好宇宙")
    assert greeter.swap("english").data["new"]["name"] == "english"
    greeter.wait_greetings("Hello Universe")
    assert greeter.swap("panic").status == 200
    greeter.stderr.search(r"plugin 'panic' \(greeter-panic 1\.0\) failed: RuntimeError: I'm gone\.$")
    assert greeter.swap("chinese").status == 200
    greeter.wait_greetings("你好宇宙")
    assert greeter.stop() == 0
    assert greeter.summary()[2] == 3
