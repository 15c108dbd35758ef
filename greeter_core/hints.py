"""Install hints: a command that installs a plugin from where *this user* gets greeter, never a public index.

greeter's distributions are not on PyPI, and anyone could register
``greeter-french`` there: a hint that sends pip or uv to a public index for
that name invites dependency confusion. So a hint names the index the user
configured (pip's ``PIP_INDEX_URL`` or pip config, uv's ``UV_INDEX_URL``,
``UV_DEFAULT_INDEX``, ``UV_INDEX``), or a wheelhouse given by
``PIP_FIND_LINKS``/``UV_FIND_LINKS`` with ``--no-index``, and falls back to
a ``--no-index --find-links DIR`` text. Read on error paths only: nothing
here runs on a greeting's way.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["install_hint"]

#: Indexes that serve names greeter does not own.
_PUBLIC_HOSTS = ("pypi.org", "pypi.python.org", "files.pythonhosted.org", "test.pypi.org")


def install_hint(distribution: str, environ: Mapping[str, str] | None = None) -> str:
    """A command installing *distribution* from the user's own index or wheelhouse, or a safe text."""
    env = os.environ if environ is None else environ
    for variable in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX"):
        url = _first_url(env.get(variable, ""))
        if url and _owned(url) and not _public_extras(env.get("UV_EXTRA_INDEX_URL", "")):
            return f"uv pip install {distribution} (from your index {_shown(url)}, {variable})"
    url, source = _pip_index(env)
    if url and _owned(url) and not _public_extras(env.get("PIP_EXTRA_INDEX_URL", "")):
        return f"pip install {distribution} (from your index {_shown(url)}, {source})"
    for variable in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
        links = env.get(variable, "").split()
        if links and not any(_public_extras(link) for link in links):
            return (
                f"pip install --no-index --find-links {links[0]} {distribution} (the wheelhouse in {variable}; "
                f"greeter plugins are not on PyPI)"
            )
    return (
        f"pip install --no-index --find-links DIR {distribution}, DIR being a wheelhouse that holds it; or set "
        f"PIP_INDEX_URL to the package index that serves greeter (greeter plugins are not on PyPI)"
    )


def _first_url(value: str) -> str:
    """The URL of an index setting; uv's ``UV_INDEX`` may be ``name=url`` and list several."""
    first = value.split()[0] if value.split() else ""
    return first.split("=", 1)[1] if re.match(r"^[\w.-]+=", first) else first


def _owned(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return bool(url) and not any(host == public or host.endswith(f".{public}") for public in _PUBLIC_HOSTS)


def _public_extras(value: str) -> bool:
    """Whether extra indexes include a public one: then a bare install could fetch the name from it."""
    return any(not _owned(_first_url(part)) for part in value.split())


def _shown(url: str) -> str:
    """*url* without credentials: a hint is printed and logged."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return parts._replace(netloc=f"***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")).geturl()


def _pip_index(env: Mapping[str, str]) -> tuple[str, str]:
    """pip's index URL and where it was set: ``PIP_INDEX_URL``, else the first pip config file naming one."""
    if env.get("PIP_INDEX_URL"):
        return env["PIP_INDEX_URL"].split()[0], "PIP_INDEX_URL"
    for path in _pip_config_files(env):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        for section in ("install", "global"):
            if parser.has_option(section, "index-url"):
                return parser.get(section, "index-url").split()[0], str(path)
    return "", ""


def _pip_config_files(env: Mapping[str, str]) -> Iterator[Path]:
    """pip's config files, the one that wins first (pip's own order, reversed)."""
    if env.get("PIP_CONFIG_FILE"):
        yield Path(env["PIP_CONFIG_FILE"])
    if env.get("VIRTUAL_ENV"):
        yield Path(env["VIRTUAL_ENV"], "pip.conf")
    home = Path(env.get("HOME", "~")).expanduser()
    yield Path(env.get("XDG_CONFIG_HOME") or home / ".config", "pip", "pip.conf")
    yield home / ".pip" / "pip.conf"
    yield from (Path(d, "pip", "pip.conf") for d in env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep))
    yield Path("/etc/pip.conf")
