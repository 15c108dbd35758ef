"""Which plugins are installed, read from package metadata without importing any.

stevedore's entry points carry no distribution (``entry_point.dist`` is
``None`` when they come from its cache), so this module reads
:mod:`importlib.metadata` directly, like flake8's and pluggy's finders.
:func:`discover` and :func:`find` are a fresh scan each time; ``greeter run``
and ``greeter list`` keep a scan for as long as nothing it depends on changed
(:mod:`greeter_core.catalog`). The one-shot greeting path does not call it
(see ``loading``).

One broken distribution must not hide every plugin: a distribution whose
``entry_points.txt`` or metadata cannot be read is skipped, with one warning
naming it and its path. Only when the plugin asked for lives there is it an
error, and that plugin's (:func:`find`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

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
    return scan().plugins


def find(name: str, plugins: tuple[PluginInfo, ...] | None = None) -> PluginInfo:
    """The one installed plugin called *name*.

    Raises :class:`NoSuchDriverError` (listing what is installed),
    :class:`DuplicateDriverError` (naming every distribution), or
    :class:`PluginLoadError` when the distribution registering *name* cannot be read.
    """
    return scan().find(name) if plugins is None else Scan(plugins).find(name)


class Scan(NamedTuple):
    """What one look at the installed metadata found: the plugins, and what could not be read."""

    plugins: tuple[PluginInfo, ...]
    """Every plugin registered in ``greeter.plugins``, sorted."""

    unreadable: Mapping[str, str] = MappingProxyType({})
    """Plugin name -> why the distribution registering it cannot be read."""

    problems: tuple[tuple[str, str], ...] = ()
    """``(where, problem)`` for each distribution skipped, as the warning names it."""

    sources: tuple[str, ...] = ()
    """The metadata directory of every distribution that registers a plugin or could not be read:
    what a cache of this scan must watch (see :mod:`greeter_core.catalog`)."""

    def find(self, name: str) -> PluginInfo:
        """The one plugin called *name* in this scan; the errors of :func:`find`."""
        matches = [p for p in self.plugins if p.name == name]
        if not matches and name in self.unreadable:
            raise PluginLoadError(name, None, self.unreadable[name])
        if not matches:
            raise NoSuchDriverError(name, sorted({p.name for p in self.plugins}))
        if len(matches) > 1:
            raise DuplicateDriverError(name, matches)
        return matches[0]

    def warn(self) -> None:
        """Log the warning for each distribution skipped, once per process (as the scan itself does)."""
        for where, problem in self.problems:
            _warn_once(where, problem)


def scan() -> Scan:
    """Read every distribution's metadata now, without importing anything.

    Like ``importlib.metadata.entry_points()``, but one distribution at a
    time: that function gives up on all of them at the first malformed line.
    Each distribution that cannot be read is skipped and logged, once.
    """
    from importlib.metadata import distributions

    from .environments import ready

    found: dict[tuple[str, str, str], PluginInfo] = {}
    unreadable: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    sources: list[str] = []
    seen: set[tuple[str, str]] = set()
    # The host's distributions, then each environment of its own (greeter install), found alike.
    every = [(dist, "") for dist in distributions()]
    every += [(dist, env.root) for env in ready() for dist in distributions(path=[env.site_packages])]
    for dist, environment in every:
        try:
            entry_points = dist.entry_points.select(group=GROUP)
        except Exception as error:
            problems.append(_skip(dist, f"its entry points cannot be read ({one_line(error)})"))
            sources.append(problems[-1][0])
            continue
        if not entry_points:
            continue
        sources.append(_where(dist))
        try:
            meta = dist.metadata  # parsed once per distribution
            # get_all, not meta["Name"]: Python 3.13 warns when a field is missing (and will raise).
            name, version = ((meta.get_all(field) or [""])[0] if meta is not None else "" for field in _FIELDS)
            if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
                raise ValueError("its metadata gives no Name or no Version")
        except Exception as error:
            problems.append(_skip(dist, one_line(error).removeprefix("ValueError: ")))
            unreadable.update((ep.name, _text(*problems[-1])) for ep in entry_points)
            continue
        canonical = _canonical(name)
        if (canonical, environment) in seen:  # the same distribution again, further down sys.path
            continue
        seen.add((canonical, environment))
        for ep in entry_points:
            record = PluginInfo(ep.name, name, version, ep.value, environment)
            found.setdefault((ep.name, canonical, environment), record)
    return Scan(tuple(sorted(found.values())), unreadable, tuple(problems), tuple(sources))


def _where(dist: Distribution) -> str:
    return str(getattr(dist, "_path", None) or dist.locate_file(""))


def _text(where: str, problem: str) -> str:
    return f"the distribution at {where} cannot be read: {problem}"


def _skip(dist: Distribution, problem: str) -> tuple[str, str]:
    """Log (once) that *dist* is skipped because of *problem*; return where it is and the problem."""
    where = _where(dist)
    _warn_once(where, problem)
    return where, problem


def _warn_once(where: str, problem: str) -> None:
    if (where, problem) not in _warned:
        _warned.add((where, problem))
        log.warning("%s; skipping the plugins it may register (reinstall or remove it)", _text(where, problem))
