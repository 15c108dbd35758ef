"""tox's inline plugin: find this machine's CPython 3.11-3.13 and never download one.

tox-uv asks uv for ``python3.12`` and the like. Under pyenv those names on
PATH are shims that fail for every version but the global one, so uv would
report the env as broken (or, if allowed, download a Python). Putting each
real ``~/.pyenv/versions/3.1x*/bin`` first on PATH lets uv find all three;
a version that is truly missing still fails the run loudly
(``skip_missing_interpreters = false`` in tox.ini).
"""

from __future__ import annotations

import glob
import os

_bins = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin")))
os.environ["PATH"] = os.pathsep.join([*_bins, os.environ.get("PATH", "")])
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
