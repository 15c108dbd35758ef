"""``GET /`` for a browser: what ``greeter run`` is doing, on one small HTML page, and a button to swap.

A person who opens the control endpoint in a browser gets this page rather
than the JSON 400 that ``GET /`` without ``?mod=`` gives a script. It is made
from what ``GET /status`` and ``GET /plugins`` return, nothing else: the
current driver, the counters, each driver's numbers and latency, isolation
and every other field of ``/status`` (a sandbox's, when there is one), and
each installed plugin with a button.

No framework and no external asset: the CSS and the script are inline, and
the ``Content-Security-Policy`` allows exactly those two (by hash), requests
to this origin only, and no framing. A button swaps by a ``POST /driver``
with a JSON body from the page's own origin, so the endpoint's rules against
web pages hold as they are: another site's page cannot send that request.
Every value is HTML-escaped; a plugin's name or error reaches the page as
text, never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["HEADERS", "render", "wants_html"]

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: .2em .8em .2em 0; text-align: left; vertical-align: top; }
th { font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
button { font: inherit; padding: .1em .8em; } #said { min-height: 1.4em; color: #a40; }
"""

_SCRIPT = """
"use strict";
async function swap(name) {
  const said = document.getElementById("said");
  said.textContent = "switching to " + name + "\\u2026";
  try {
    const reply = await fetch("/driver", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({driver: name}),
      cache: "no-store",
    });
    const data = await reply.json();
    if (reply.ok) {
      location.reload();
    } else {
      said.textContent = data.error;
    }
  } catch (error) {
    said.textContent = "no reply from greeter: " + error;
  }
}
for (const button of document.querySelectorAll("button[data-driver]")) {
  button.addEventListener("click", () => swap(button.dataset.driver));
}
"""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


#: The page's headers: a CSP that allows its own inline style and script and nothing else.
HEADERS = (
    (
        "Content-Security-Policy",
        f"default-src 'none'; style-src {_hash(_STYLE)}; script-src {_hash(_SCRIPT)}; connect-src 'self'; "
        "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)

#: The fields of /status the page shows in its own places; any other is listed under "running".
_PLACED = {"driver", "distribution", "version", "greetings", "errors", "swaps", "reloads", "last_error", "uptime"}


def wants_html(accept: Sequence[str]) -> bool:
    """Whether the ``Accept`` headers name ``text/html`` (what a browser sends on navigation), with q > 0."""
    for item in ",".join(accept).split(","):
        kind, *parameters = (part.strip().lower() for part in item.split(";"))
        if kind == "text/html":
            weight = next((p[2:].strip() for p in parameters if p.startswith("q=")), "1")
            try:
                return float(weight) > 0
            except ValueError:
                return False
    return False


def _text(value: object) -> str:
    """A value of /status as escaped text: None as a dash, objects as compact JSON."""
    if value is None:
        return "\u2014"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return escape(str(value))


def _seconds(value: object) -> str:
    return f"{value * 1000:.3f} ms" if isinstance(value, (int, float)) else _text(value)


def _rows(pairs: Mapping[str, object]) -> str:
    return "".join(f"<tr><th>{escape(key)}</th><td>{_text(value)}</td></tr>" for key, value in pairs.items())


def render(status: Mapping[str, object], plugins: Sequence[Mapping[str, object]]) -> bytes:
    """The page for *status* (``GET /status``'s reply) and *plugins* (``GET /plugins``'s), as UTF-8."""
    drivers = status.get("drivers")
    driver_rows = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(
            f'<td class="n">{_seconds(numbers.get(key)) if key.startswith("latency") else _text(numbers.get(key))}</td>'
            for key in ("greetings", "errors", "latency_p50", "latency_p99", "worker_starts", "worker_crashes")
        )
        + "</tr>"
        for name, numbers in (drivers.items() if isinstance(drivers, dict) else ())
        if isinstance(numbers, dict)
    )
    plugin_rows = "".join(_plugin_row(plugin, status.get("driver")) for plugin in plugins)
    counts = {key: status.get(key) for key in ("greetings", "errors", "swaps", "reloads", "uptime", "last_error")}
    running = {key: value for key, value in status.items() if key not in _PLACED and key != "drivers"}
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>greeter: {_text(status.get("driver"))}</title>
<style>{_STYLE}</style>
</head><body>
<h1>greeting with <span id="driver">{_text(status.get("driver"))}</span>
({_text(status.get("distribution"))} {_text(status.get("version"))})</h1>
<p id="said" role="status"></p>
<table id="counts">{_rows(counts)}</table>
<h2>Running</h2>
<table id="running">{_rows(running)}</table>
<h2>Plugins</h2>
<table id="plugins"><tr><th>name</th><th>distribution</th><th>version</th><th></th></tr>{plugin_rows}</table>
<h2>Drivers since start</h2>
<table id="drivers"><tr><th>driver</th><th>greetings</th><th>errors</th><th>greet() p50</th><th>greet() p99</th>
<th>worker starts</th><th>worker crashes</th></tr>{driver_rows}</table>
<p>The same data as JSON: <code>GET /status</code>, <code>GET /plugins</code>.</p>
<script>{_SCRIPT}</script>
</body></html>
"""
    return page.encode("utf-8")


def _plugin_row(plugin: Mapping[str, object], current: object) -> str:
    name = str(plugin.get("name"))
    if plugin.get("disabled"):
        action = f"disabled by {_text(plugin.get('disabled_by'))}"
    elif name == current:
        action = "greeting now"
    else:
        action = f'<button type="button" data-driver="{escape(name, quote=True)}">swap to {escape(name)}</button>'
    cells = "".join(f"<td>{_text(plugin.get(key))}</td>" for key in ("name", "distribution", "version"))
    return f"<tr>{cells}<td>{action}</td></tr>"
