"""``greeter check``: load each plugin, validate it, greet once, and say how it went."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .api import DEFAULT_NAME
from .discovery import PluginInfo, discover, find
from .errors import GreeterError
from .loading import call_greet, close_quietly, load

__all__ = ["CheckResult", "check"]


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

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


def check(
    names: Iterable[str] | None = None,
    *,
    config: Mapping[str, str] | None = None,
    isolation: str = "none",
    verify: bool = False,
    call_timeout: float = 5.0,
) -> list[CheckResult]:
    """Check the named plugins (default: every installed one), each independently."""
    plugins = discover()
    wanted = list(names) if names is not None else sorted({p.name for p in plugins})
    return [_check_one(name, plugins, config, isolation, verify, call_timeout) for name in wanted]


def _check_one(
    name: str,
    plugins: tuple[PluginInfo, ...],
    config: Mapping[str, str] | None,
    isolation: str,
    verify: bool,
    call_timeout: float,
) -> CheckResult:
    distribution = version = language = ""
    try:
        info = find(name, plugins)
        distribution, version = info.distribution, info.version
        greeter = load(info, config=config, isolation=isolation, verify=verify, call_timeout=call_timeout)
        try:
            language = str(getattr(greeter, "language", "") or "")
            text = call_greet(greeter, DEFAULT_NAME, name, info)
        finally:
            close_quietly(greeter, name)
    except GreeterError as error:
        return CheckResult(name, distribution, version, language, False, str(error), error.exit_code)
    return CheckResult(name, distribution, version, language, True, text, 0)
