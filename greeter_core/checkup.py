"""``greeter check``: load each plugin, greet once, and report how each went, independently.

The contract itself (what makes an object a Greeter) is checked in
:mod:`greeter_core.contract`; this module runs every installed plugin
through the whole greeting path and collects one result per plugin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .api import DEFAULT_NAME
from .discovery import PluginInfo, discover, find
from .drive import CHECK_ISOLATION, LoadOptions, load
from .errors import GreeterError

__all__ = ["CheckResult", "check_plugins"]


class CheckResult(NamedTuple):
    """The outcome for one plugin."""

    name: str
    distribution: str
    version: str
    language: str
    """The plugin's ``language`` attribute, once loaded."""

    ok: bool
    detail: str
    """The greeting when ok, else the one-line reason."""

    exit_code: int
    """0 when ok, else the exit status the failure maps to."""

    disabled: bool = False
    """Left out, never imported: ``--plugins``/``--disable`` say so (only when not named explicitly)."""

    sandbox: dict[str, object] | None = None
    """Under ``--isolation process``: the worker's grants and what its sandbox put in force."""

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


def check_plugins(names: Iterable[str] | None = None, options: LoadOptions | None = None) -> list[CheckResult]:
    """Check the named plugins (default: every installed one that the policy allows), each independently.

    A plugin the policy disables is never imported: by default it is
    reported as disabled; named explicitly, it fails as the CLI would. By
    default each runs in a worker process (:data:`~greeter_core.drive.CHECK_ISOLATION`),
    so that a plugin calling ``os._exit`` or crashing cannot end the report.
    """
    plugins = discover()
    options = options or LoadOptions(isolation=CHECK_ISOLATION)
    if names is not None:
        return [_check_one(name, plugins, options) for name in names]
    results = []
    for name in sorted({p.name for p in plugins}):
        setting = options.policy.disabled_by(name) if options.policy is not None else None
        if setting is None:
            results.append(_check_one(name, plugins, options))
        else:
            info = next(p for p in plugins if p.name == name)
            detail = f"disabled by {setting}; not imported"
            results.append(CheckResult(name, info.distribution, info.version, "", False, detail, 0, disabled=True))
    return results


def _check_one(name: str, plugins: tuple[PluginInfo, ...], options: LoadOptions) -> CheckResult:
    distribution = version = language = ""
    try:
        info = find(name, plugins)
        distribution, version = info.distribution, info.version
        with load(info, options) as loaded:
            language = loaded.language
            text = loaded.greet(DEFAULT_NAME)
            sandbox = (loaded.status() or {}).get("sandbox")
    except GreeterError as error:
        return CheckResult(name, distribution, version, language, False, str(error), error.exit_code)
    return CheckResult(name, distribution, version, language, True, text, 0, sandbox=_dict_or_none(sandbox))


def _dict_or_none(value: object) -> dict[str, object] | None:
    return value if isinstance(value, dict) else None
