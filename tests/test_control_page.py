"""`GET /` for a browser: the status page, through a real `greeter run` on 127.0.0.1.

Its script, in a real browser: tests/test_control_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re

import pytest
from basics import WAIT
from plugins import ALPHA, BETA, PluginSpec, greet_body
from running import RunningGreeter

#: A plugin whose error is markup: the page must show it as text.
MARKUP = PluginSpec("markup", code=greet_body('raise RuntimeError("<script>alert(1)</script><b>bold</b>")'))
DISABLED = PluginSpec("gamma")
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "Sec-Fetch-Site": "none"}


@pytest.fixture
def alpha(start, install) -> RunningGreeter:
    """`greeter run --driver alpha` with beta and markup installed and gamma disabled, greeting every 10 ms."""
    install(ALPHA, BETA, MARKUP, DISABLED)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--disable", "gamma"
    )
    greeter.wait_greetings("Alpha Universe")
    return greeter


def page(
    greeter: RunningGreeter, path: str = "/", headers: dict[str, str] = BROWSER
) -> tuple[int, dict[str, str], str]:
    """(status, headers with lower-case names, body text) of GET *path* as a browser asks for it."""
    connection = http.client.HTTPConnection("127.0.0.1", greeter.port, timeout=WAIT)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read().decode("utf-8")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def test_a_browser_gets_the_status_page_with_the_driver_and_a_button_per_plugin(alpha: RunningGreeter) -> None:
    """`GET /` with `Accept: text/html`: 200 HTML naming the driver, a swap button for each other enabled plugin."""
    status, headers, body = page(alpha)
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert '<span id="driver">alpha</span>' in body and "(greeter-alpha 1.0)" in body
    buttons = re.findall(r'<button type="button" data-driver="([^"]*)">', body)
    assert {"beta", "markup"} <= set(buttons)
    assert "alpha" not in buttons and "gamma" not in buttons  # greeting now; disabled
    assert "disabled by --disable" in body
    assert alpha.status()["swaps"] == 0


def test_the_page_shows_what_status_reports(alpha: RunningGreeter) -> None:
    """Counts, isolation, the worker and each driver's latency come from /status's own fields."""
    alpha.wait_status(lambda s: s["drivers"]["alpha"]["latency_p50"] is not None)
    _, _, body = page(alpha)
    for field in ("greetings", "errors", "swaps", "reloads", "uptime", "last_error", "isolation", "worker"):
        assert f"<th>{field}</th>" in body, field
    assert "<tr><th>isolation</th><td>none</td></tr>" in body
    [drivers] = re.findall(r'<table id="drivers">(.*?)</table>', body, re.S)
    [row] = re.findall(r"<tr><td>alpha</td>(.*?)</tr>", drivers)
    assert re.search(r'<td class="n">\d+\.\d{3} ms</td>', row), row


def test_a_plugins_error_is_shown_as_text_not_markup(alpha: RunningGreeter) -> None:
    """A plugin's error holding `<script>` reaches the page escaped."""
    assert alpha.swap("markup").status == 200
    alpha.wait_status(lambda s: s["errors"] >= 1)
    _, _, body = page(alpha)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in body
    assert "<b>bold" not in body and body.count("<script>") == 1


def test_the_page_allows_only_its_own_inline_style_and_script(alpha: RunningGreeter) -> None:
    """The CSP allows the page's inline script and style by hash, requests to itself, and no framing; nothing else."""
    _, headers, body = page(alpha)
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    [script] = re.findall(r"<script>(.*?)</script>", body, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", body, re.S)
    for directive, source in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert policy[directive] == f"'sha256-{digest}'"
    assert (policy["default-src"], policy["connect-src"], policy["frame-ancestors"]) == ("'none'", "'self'", "'none'")
    assert headers["x-frame-options"] == "DENY"
    assert not re.search(r"\b(src|href)=", body)  # no external asset of any kind


@pytest.mark.parametrize(
    "headers",
    [{}, {"Accept": "application/json"}, {"Accept": "*/*"}, {"Accept": "text/html;q=0"}],
    ids=["no-accept", "json", "any", "html-refused"],
)
def test_a_client_that_does_not_ask_for_html_gets_the_json_400_as_before(alpha: RunningGreeter, headers) -> None:
    """curl, scripts and `Accept: text/html;q=0` still get the JSON 400 listing the routes."""
    reply = alpha.request("GET", "/", headers=headers)
    assert (reply.status, reply.data["status"]) == (400, 400)
    assert "/status" in reply.data["routes"]


def test_the_go_posts_swap_from_a_browser_is_still_a_swap(alpha: RunningGreeter) -> None:
    """`/?mod=beta` typed into the address bar swaps and answers JSON, as before."""
    status, headers, body = page(alpha, "/?mod=beta")
    assert (status, headers["content-type"]) == (200, "application/json; charset=utf-8")
    assert '"new": {"name": "beta"' in body


def test_a_cross_site_page_cannot_load_the_status_page(alpha: RunningGreeter) -> None:
    """The page obeys the endpoint's rules: another site framing or fetching it gets 403."""
    status, _, _ = page(alpha, headers={**BROWSER, "Sec-Fetch-Site": "cross-site"})
    assert status == 403
