"""Which plugins are installed, read from package metadata without importing any.

stevedore's entry points carry no distribution (``entry_point.dist`` is
``None`` when they come from its cache), so this module reads
:mod:`importlib.metadata` directly, like flake8's and pluggy's finders. It is
a fresh scan each time: use it to list, to name a distribution in a message,
and where a long-running process must see installs and uninstalls as they
happen. The one-shot greeting path does not call it (see ``loading``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .api import GROUP
from .errors import DuplicateDriverError, NoSuchDriverError

__all__ = ["PluginInfo", "discover", "find"]


class PluginInfo(NamedTuple):
    """One installed plugin, as its distribution's metadata declares it."""

    name: str
    """The entry-point name: what ``--driver`` takes."""

    distribution: str
    """The distribution that registers it, e.g. ``greeter-english``."""

    version: str
    """That distribution's version."""

    target: str
    """The object the entry point names, ``module:attr``."""

    def as_dict(self) -> dict[str, str]:
        return self._asdict()


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def discover() -> tuple[PluginInfo, ...]:
    """Every plugin registered in ``greeter.plugins``, sorted, without importing any.

    A distribution found twice on ``sys.path`` (lib and lib64, a stray
    ``*.egg-info``) is listed once; two different distributions registering
    the same name are both listed, so that :func:`find` can refuse them.
    """
    from importlib.metadata import entry_points

    found: dict[tuple[str, str], PluginInfo] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        if dist is None:  # pragma: no cover - importlib.metadata always sets it
            info = PluginInfo(ep.name, "unknown", "unknown", ep.value)
        else:
            meta = dist.metadata  # parsed once per entry point, not twice
            info = PluginInfo(ep.name, meta["Name"], meta["Version"], ep.value)
        found.setdefault((info.name, _canonical(info.distribution)), info)
    return tuple(sorted(found.values()))


def find(name: str, plugins: tuple[PluginInfo, ...] | None = None) -> PluginInfo:
    """The one installed plugin called *name*.

    Raises :class:`NoSuchDriverError` (listing what is installed) or
    :class:`DuplicateDriverError` (naming every distribution).
    """
    plugins = discover() if plugins is None else plugins
    matches = [p for p in plugins if p.name == name]
    if not matches:
        raise NoSuchDriverError(name, sorted({p.name for p in plugins}))
    if len(matches) > 1:
        raise DuplicateDriverError(name, matches)
    return matches[0]
