"""Install hints name the user's own index or wheelhouse, and never send an installer to a public index."""

from __future__ import annotations

from pathlib import Path

import pytest

from greeter_core.hints import install_hint

FALLBACK = "pip install --no-index --find-links DIR greeter-french, DIR being a wheelhouse"


@pytest.mark.parametrize(
    ("environ", "hint"),
    [
        ({"PIP_INDEX_URL": "https://pkgs.example/simple"},
         "pip install greeter-french (from your index https://pkgs.example/simple, PIP_INDEX_URL)"),
        ({"UV_INDEX_URL": "http://127.0.0.1:3141/simple"},
         "uv pip install greeter-french (from your index http://127.0.0.1:3141/simple, UV_INDEX_URL)"),
        ({"UV_INDEX": "corp=https://corp.example/simple"},
         "uv pip install greeter-french (from your index https://corp.example/simple, UV_INDEX)"),
        ({"PIP_INDEX_URL": "https://bob:s3cret@pkgs.example/simple"},
         "pip install greeter-french (from your index https://***@pkgs.example/simple, PIP_INDEX_URL)"),
        ({"PIP_FIND_LINKS": "/srv/wheels"}, "pip install --no-index --find-links /srv/wheels greeter-french "),
    ],
)  # fmt: skip
def test_a_configured_index_or_wheelhouse_is_named(environ: dict[str, str], hint: str) -> None:
    """The hint is the command that installs from where this user's settings say greeter comes from."""
    assert install_hint("greeter-french", {"HOME": "/nonexistent", **environ}).startswith(hint)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"PIP_INDEX_URL": "https://pypi.org/simple"},
        {"UV_DEFAULT_INDEX": "https://pypi.org/simple"},
        {"PIP_INDEX_URL": "https://pkgs.example/simple", "PIP_EXTRA_INDEX_URL": "https://pypi.org/simple"},
        {"PIP_FIND_LINKS": "https://pypi.org/simple/greeter-french/"},
    ],
)
def test_a_public_index_gets_the_safe_text(environ: dict[str, str]) -> None:
    """No setting, or one that reaches PyPI (anyone may register greeter-french there): --no-index only."""
    assert install_hint("greeter-french", {"HOME": "/nonexistent", **environ}).startswith(FALLBACK)


def test_pip_config_file_index_is_named(tmp_path: Path) -> None:
    """An index-url in pip's config (here PIP_CONFIG_FILE) counts like PIP_INDEX_URL."""
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://conf.example/simple\n")
    hint = install_hint("greeter-french", {"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(config)})
    assert hint == f"pip install greeter-french (from your index https://conf.example/simple, {config})"
