"""The fixtures of the isolation tests: ``plugins`` installs what a test names, ``isolated`` starts workers on it.

The contract is a marker, not a fixture each module redefines: a test (or its
module, through ``pytestmark``) says which fixture plugins its workers load with
``@pytest.mark.plugins(SPEC, ...)``; ``plugins`` installs every one it finds
into ``site``, puts that on this process's sys.path (and so on its workers')
and returns it; ``isolated`` depends on ``plugins``. A test that asks for
either without naming a plugin fails, saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greeter_core import find, load
from greeter_core.drive import DEFAULT_CALL_TIMEOUT
from greeter_core.worker.client import WorkerPlugin
from greeter_core.worker.supervision import Supervision


@pytest.fixture
def plugins(request: pytest.FixtureRequest, install: Callable[..., None], on_path: Path) -> Path:
    """The fixture plugins of every ``@pytest.mark.plugins(...)`` on the test, installed and on sys.path; the site."""
    marks = list(request.node.iter_markers("plugins"))
    if not any(mark.args for mark in marks):
        pytest.fail(f"{request.node.nodeid} asks for plugins but names none: add @pytest.mark.plugins(SPEC, ...)")
    for mark in marks:
        install(*mark.args)
    return on_path


@pytest.fixture
def isolated(plugins: Path) -> Iterator[Callable[..., WorkerPlugin]]:
    """``isolated(name, **options)`` starts a worker-backed plugin, closed after the test.

    It loads from what :func:`plugins` installed. With
    ``supervision=Supervision(...)`` the options are :class:`WorkerPlugin`'s own
    (``load()`` takes no supervision numbers).
    """
    opened: list[WorkerPlugin] = []

    def start(name: str, supervision: Supervision | None = None, **options: Any) -> WorkerPlugin:
        if supervision is None:
            greeter = load(name, isolation="process", **options)
        else:
            options.setdefault("call_timeout", DEFAULT_CALL_TIMEOUT)
            greeter = WorkerPlugin(find(name), supervision=supervision, **options).start()
        assert isinstance(greeter, WorkerPlugin)
        opened.append(greeter)
        return greeter

    yield start
    for greeter in opened:
        greeter.close()
