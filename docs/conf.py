"""Sphinx configuration for greeter's documentation (``tox -e docs``).

The guides are the README's own sections, included with MyST rather than
copied; the API reference comes from docstrings; the plugin list from
stevedore's Sphinx extension, over whatever is installed where Sphinx runs
(through ``listplugins.py``: a plugin disabled by GREETER_DISABLE or
GREETER_PLUGINS is listed but never imported).
"""

import sys
from pathlib import Path

import greeter_core

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
exclude_patterns = ["_build"]
# GitHub-style anchors, so links into README sections work on GitHub and here.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = f"greeter {release}"
