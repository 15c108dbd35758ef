"""Which installed plugins greeter may load: an allow-list and a deny-list, decided once per run.

pytest grew ``-p no:NAME`` and ``PYTEST_PLUGINS``, llm and Datasette
``LLM_LOAD_PLUGINS`` and ``DATASETTE_LOAD_PLUGINS``, after plugins that loaded
themselves broke the host. Here the two lists are one frozen record,
:class:`PluginPolicy`, built once from the environment and the command line
and carried in :class:`~greeter_core.drive.LoadOptions`, so that the one-shot
CLI, ``greeter check``, ``greeter run``'s swaps and a program using the API
consult the same one. The check is by entry-point name and comes before
anything is imported, in this process or in a worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from .errors import PluginDisabledError
from .settings import env, flag

if TYPE_CHECKING:
    from .discovery import PluginInfo

__all__ = ["ALLOW_ENV", "DISABLE_ENV", "PluginPolicy", "listing"]

log = logging.getLogger(__name__)

#: Only the plugins named here (comma-separated) are ever loaded; set but empty: none at all.
ALLOW_ENV = env("plugins")
#: The plugins named here (comma-separated) are never loaded.
DISABLE_ENV = env("disable")
#: The command-line options of the same meaning.
ALLOW_OPTION = flag("plugins")
DISABLE_OPTION = flag("disable")


def split_names(text: str) -> tuple[str, ...]:
    """``"a, b,,a"`` -> ``("a", "b")``: the names of a comma-separated list, in order, once each."""
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


class PluginPolicy(NamedTuple):
    """The allow-list and the deny-list, each with the setting it came from (for the messages)."""

    only: tuple[str, ...] | None = None
    """The only names that may be loaded; None: any installed plugin."""

    only_setting: str = ALLOW_ENV
    """Where ``only`` came from: ``GREETER_PLUGINS`` or ``--plugins``."""

    disabled: tuple[tuple[str, str], ...] = ()
    """``(name, setting)`` for every name that is never loaded, sorted."""

    @classmethod
    def from_settings(
        cls, environ: Mapping[str, str] | None = None, *, plugins: str | None = None, disable: Iterable[str] = ()
    ) -> PluginPolicy | None:
        """The policy that the environment and the command line set, or None when neither sets any.

        ``--plugins`` replaces ``GREETER_PLUGINS``; ``--disable`` adds to
        ``GREETER_DISABLE``, so a name the environment disables stays disabled.
        """
        environ = os.environ if environ is None else environ
        only: tuple[str, ...] | None = None
        only_setting = ALLOW_ENV
        if plugins is not None:
            only, only_setting = split_names(plugins), ALLOW_OPTION
        elif ALLOW_ENV in environ:
            only = split_names(environ[ALLOW_ENV])
        disabled = dict.fromkeys(split_names(environ.get(DISABLE_ENV, "")), DISABLE_ENV)
        for item in disable:
            for name in split_names(item):
                disabled.setdefault(name, DISABLE_OPTION)
        if only is None and not disabled:
            return None
        return cls(only, only_setting, tuple(sorted(disabled.items())))

    def disabled_by(self, name: str) -> str | None:
        """The setting that keeps *name* from being loaded, or None when it may be loaded."""
        for disabled, setting in self.disabled:
            if disabled == name:
                return setting
        if self.only is not None and name not in self.only:
            return self.only_setting
        return None

    def check(self, plugin: str | PluginInfo) -> None:
        """Raise :class:`PluginDisabledError` naming the setting, if *plugin* may not be loaded."""
        name, record = (plugin, None) if isinstance(plugin, str) else (plugin.name, plugin)
        setting = self.disabled_by(name)
        if setting is None:
            return
        if setting in (ALLOW_ENV, ALLOW_OPTION):
            if self.only:
                why = f"it allows only {', '.join(self.only)}; add {name!r} there to load it"
            else:
                why = "it is set but empty, so no plugin is loaded at all; name the plugins to load there"
        else:
            why = f"greeter never imports a plugin named there; remove {name!r} from {setting} to load it"
        raise PluginDisabledError(name, record, setting, why)

    def unknown(self, installed: Iterable[str]) -> list[tuple[str, str]]:
        """``(name, setting)`` for every name the settings list that no installed plugin has."""
        known = set(installed)
        named = [(name, self.only_setting) for name in self.only or ()] + list(self.disabled)
        return [(name, setting) for name, setting in named if name not in known]

    def warn_unknown(self, plugins: Iterable[PluginInfo]) -> None:
        """Log a warning (not an error) for every listed name that is not installed: a typo, or an uninstall."""
        plugins = list(plugins)
        installed = sorted({p.name for p in plugins})
        for name, setting in self.unknown(installed):
            log.warning(
                "%s names %r, but no installed plugin is called that (installed: %s)",
                setting,
                name,
                ", ".join(installed) or "none",
            )


def listing(plugins: Iterable[PluginInfo], policy: PluginPolicy | None) -> list[dict[str, object]]:
    """The records of ``greeter list --json`` and ``GET /plugins``: each plugin, and whether it is disabled."""
    records: list[dict[str, object]] = []
    for plugin in plugins:
        setting = policy.disabled_by(plugin.name) if policy is not None else None
        records.append({**plugin.as_dict(), "disabled": setting is not None, "disabled_by": setting})
    return records
