"""Sphinx configuration for greeter's documentation (``tox -e docs``).

The guides are the README's own sections, included with MyST rather than
copied; the API reference comes from docstrings; the plugin list from
stevedore's Sphinx extension, over whatever is installed where Sphinx runs.
"""

import greeter_core

project = "greeter"
author = "greeter maintainers"
copyright = "greeter maintainers"
release = greeter_core.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "stevedore.sphinxext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
# GitHub-style anchors, so links into README sections work on GitHub and here.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = f"greeter {release}"
