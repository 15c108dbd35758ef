"""Which plugins are installed, read from package metadata without importing any.

stevedore's entry points carry no distribution (``entry_point.dist`` is
``None`` when they come from its cache), so this module reads
:mod:`importlib.metadata` directly, like flake8's and pluggy's finders. It is
a fresh scan each time: use it to list, to name a distribution in a message,
and where a long-running process must see installs and uninstalls as they
happen. The one-shot greeting path does not call it (see ``loading``).

One broken distribution must not hide every plugin: a distribution whose
``entry_points.txt`` or metadata cannot be read is skipped, with one warning
naming it and its path. Only when the plugin asked for lives there is it an
error, and that plugin's (:func:`find`).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from .api import GROUP
from .errors import DuplicateDriverError, NoSuchDriverError, PluginLoadError, one_line
from .record import PluginInfo

if TYPE_CHECKING:
    from importlib.metadata import Distribution

__all__ = ["PluginInfo", "discover", "find"]

log = logging.getLogger(__name__)

#: The metadata fields a record needs.
_FIELDS = ("Name", "Version")

#: What was already warned about, so that a long-running process says it once.
_warned: set[tuple[str, str]] = set()


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def discover() -> tuple[PluginInfo, ...]:
    """Every plugin registered in ``greeter.plugins``, sorted, without importing any.

    A distribution found twice on ``sys.path`` (lib and lib64, a stray
    ``*.egg-info``) is listed once; two different distributions registering
    the same name are both listed, so that :func:`find` can refuse them. A
    distribution that cannot be read is skipped and logged.
    """
    return _scan()[0]


def find(name: str, plugins: tuple[PluginInfo, ...] | None = None) -> PluginInfo:
    """The one installed plugin called *name*.

    Raises :class:`NoSuchDriverError` (listing what is installed),
    :class:`DuplicateDriverError` (naming every distribution), or
    :class:`PluginLoadError` when the distribution registering *name* cannot be read.
    """
    unreadable: dict[str, str] = {}
    if plugins is None:
        plugins, unreadable = _scan()
    matches = [p for p in plugins if p.name == name]
    if not matches and name in unreadable:
        raise PluginLoadError(name, None, unreadable[name])
    if not matches:
        raise NoSuchDriverError(name, sorted({p.name for p in plugins}))
    if len(matches) > 1:
        raise DuplicateDriverError(name, matches)
    return matches[0]


def _scan() -> tuple[tuple[PluginInfo, ...], dict[str, str]]:
    """The plugins installed, and the names of those whose distribution cannot be read (with why).

    Like ``importlib.metadata.entry_points()``, but one distribution at a
    time: that function gives up on all of them at the first malformed line.
    """
    from importlib.metadata import distributions

    found: dict[tuple[str, str], PluginInfo] = {}
    unreadable: dict[str, str] = {}
    seen: set[str] = set()
    for dist in distributions():
        try:
            entry_points = dist.entry_points.select(group=GROUP)
        except Exception as error:
            _skip(dist, f"its entry points cannot be read ({one_line(error)})")
            continue
        if not entry_points:
            continue
        try:
            meta = dist.metadata  # parsed once per distribution
            # get_all, not meta["Name"]: Python 3.13 warns when a field is missing (and will raise).
            name, version = ((meta.get_all(field) or [""])[0] if meta is not None else "" for field in _FIELDS)
            if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
                raise ValueError("its metadata gives no Name or no Version")
        except Exception as error:
            problem = _skip(dist, one_line(error).removeprefix("ValueError: "))
            unreadable.update((ep.name, problem) for ep in entry_points)
            continue
        canonical = _canonical(name)
        if canonical in seen:  # the same distribution again, further down sys.path
            continue
        seen.add(canonical)
        for ep in entry_points:
            found.setdefault((ep.name, canonical), PluginInfo(ep.name, name, version, ep.value))
    return tuple(sorted(found.values())), unreadable


def _skip(dist: Distribution, problem: str) -> str:
    """Log (once) that *dist* is skipped because of *problem*; return the problem, naming where it is."""
    where = str(getattr(dist, "_path", None) or dist.locate_file(""))
    text = f"the distribution at {where} cannot be read: {problem}"
    if (where, problem) not in _warned:
        _warned.add((where, problem))
        log.warning("%s; skipping the plugins it may register (reinstall or remove it)", text)
    return text
