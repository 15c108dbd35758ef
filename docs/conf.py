"""Sphinx configuration for greeter's documentation (``tox -e docs``).

The front page is the README itself, included with MyST; the API reference
comes from docstrings; the plugin list from stevedore's Sphinx extension,
over whatever is installed where Sphinx runs (through ``listplugins.py``: a
plugin disabled by GREETER_DISABLE or GREETER_PLUGINS is listed but never
imported); the control endpoint's route table from
``greeter_core.control.ROUTES``, written here at build time.
"""

import logging
import sys
from pathlib import Path

import greeter_core
from greeter_core.control import ROUTES

sys.path.insert(0, str(Path(__file__).parent))  # listplugins.py, the extension beside this file

project = "greeter"
author = "greeter maintainers"
copyright = "greeter maintainers"
release = greeter_core.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    # stevedore.sphinxext's list-plugins, importing only the plugins greeter's policy allows
    "listplugins",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "generated"]
# GitHub-style anchors, so links into README sections work on GitHub and here.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = f"greeter {release}"


def routes_table() -> str:
    """The control endpoint's routes as a Markdown table: one row per entry of ``ROUTES``."""
    rows = ["| request | what it does | status codes |", "|---|---|---|"]
    for route in ROUTES:
        statuses = ", ".join(map(str, route.statuses))
        rows.append(f"| `{route.method} {route.usage}` | {route.does} | {statuses} |")
    return "\n".join(rows) + "\n"


_generated = Path(__file__).parent / "generated"
_generated.mkdir(exist_ok=True)
(_generated / "routes.md").write_text(routes_table(), encoding="utf-8")


def _not_mysts_config(record: logging.LogRecord) -> bool:
    """MyST logs its whole configuration, one very long line, at the start of every build: drop that line."""
    return "myst v%s:" not in str(record.msg)  # the format, in bold or not


# Sphinx's loggers are "sphinx." + the module's name.
logging.getLogger("sphinx.myst_parser.sphinx_ext.main").addFilter(_not_mysts_config)
