"""The status page in a real headless Chromium (Debian's `chromium`): a click on a swap button swaps the driver.

Run by `tox -e browser` (CI installs chromium in .ci/run). Chromium is
driven over its DevTools pipe (``--remote-debugging-pipe``: JSON messages
ended by NUL on its descriptors 3 and 4) with the standard library only.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from basics import WAIT
from plugins import ALPHA, BETA
from running import RunningGreeter

pytestmark = pytest.mark.browser

#: As root Chromium needs --no-sandbox; the rest keep it off the network it has no route to.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


class Chromium:
    """One headless Chromium and its DevTools pipe: :meth:`send` a command, get its result."""

    def __init__(self, profile: Path, log: Path) -> None:
        binary = shutil.which("chromium")
        assert binary, "tox -e browser needs Debian's chromium: apt-get install chromium"
        commands_r, self._commands = os.pipe()  # Chromium reads commands on its fd 3
        self._events, events_w = os.pipe()  # and writes replies and events on its fd 4
        with log.open("wb") as stderr:
            command = [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{commands_r} 4>&{events_w}', "chromium", *command],
                pass_fds=(commands_r, events_w),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        os.close(commands_r)
        os.close(events_w)
        self._buffer = b""
        self._last_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if not select.select([self._events], [], [], WAIT)[0]:
                raise TimeoutError(f"chromium sent nothing for {WAIT:g} s")
            chunk = os.read(self._events, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)  # type: ignore[no-any-return]

    def open(self, url: str) -> str:
        """A new tab at *url*; its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.navigate", {"url": url}, session)
        return session

    def wait_for(self, session: str, expression: str) -> Any:
        """The value of *expression* in the page once it is truthy (a page being replaced is waited out)."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
                value = result["result"].get("value") if "exceptionDetails" not in result else None
            except RuntimeError:  # the execution context went away: the page is reloading
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)

    def click(self, session: str, selector: str) -> None:
        """A real mouse click (press and release) in the middle of the element *selector* names."""
        box = self.wait_for(
            session,
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView(); const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()",
        )
        for kind in ("mousePressed", "mouseReleased"):
            event = {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
            self.send("Input.dispatchMouseEvent", event, session)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._commands)
        os.close(self._events)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    browser = Chromium(tmp_path / "profile", tmp_path / "chromium.log")
    yield browser
    browser.close()


def test_a_click_on_a_swap_button_swaps_the_driver(start, install, chromium: Chromium) -> None:
    """In Chromium, the page's button for beta POSTs the swap (its script passes the CSP); /status then says beta."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    session = chromium.open(f"http://127.0.0.1:{greeter.port}/")
    assert chromium.wait_for(session, "document.getElementById('driver')?.textContent") == "alpha"
    chromium.click(session, 'button[data-driver="beta"]')
    status = greeter.wait_status(lambda s: s["driver"] == "beta")
    assert status["swaps"] == 1
    greeter.wait_greetings("Beta Universe")
    # The page reloads itself after the swap and shows the new driver, with a button back to alpha.
    assert chromium.wait_for(session, "document.getElementById('driver')?.textContent === 'beta'")
    assert chromium.wait_for(session, "!!document.querySelector('button[data-driver=\"alpha\"]')")


@contextmanager
def attacker_site() -> Iterator[str]:
    """Another origin: a page served on another port of 127.0.0.1."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!DOCTYPE html><title>attacker</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_swap_through_the_browser(start, install, chromium: Chromium) -> None:
    """A page served from another port of 127.0.0.1 fetches /?mod=beta and POSTs /driver: the driver stays alpha."""
    install(ALPHA, BETA)
    greeter: RunningGreeter = start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Alpha Universe")
    target = f"http://127.0.0.1:{greeter.port}"
    attack = (
        "Promise.allSettled(["
        f"fetch('{target}/?mod=beta', {{mode: 'no-cors'}}),"
        f"fetch('{target}/driver', {{method: 'POST', headers: {{'Content-Type': 'application/json'}},"
        " body: JSON.stringify({driver: 'beta'})}),"
        f"fetch('{target}/driver', {{method: 'POST', mode: 'no-cors', body: JSON.stringify({{driver: 'beta'}})}}),"
        "]).then(() => 'sent')"
    )
    with attacker_site() as site:
        session = chromium.open(site)
        chromium.wait_for(session, "document.title === 'attacker'")
        evaluation = {"expression": attack, "awaitPromise": True, "returnByValue": True}
        assert chromium.send("Runtime.evaluate", evaluation, session)["result"]["value"] == "sent"
    greeter.stderr.search(r"control endpoint: refused [A-Z]+ '/(\?mod=beta|driver)' from 127\.0\.0\.1 \(cross-site\)")
    assert greeter.status()["swaps"] == 0
