"""With greeter-core and no plugin at all (tox -e core-only), the CLI says so and shows how to install one."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.core_only


def test_no_plugin_is_installed_here() -> None:
    """This environment really has no plugin: otherwise the tests below prove nothing."""
    import greeter_core

    assert greeter_core.discover() == ()


def test_greeting_without_plugins_says_none_is_installed(cli) -> None:
    """`greeter --driver english` explains that no plugin is installed and how to get one; exit 2."""
    result = cli("--driver", "english")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no greeter plugins are installed" in result.stderr
    assert re.search(r"pip install --no-index --find-links \S+ greeter-english\b", result.stderr)


def test_list_without_plugins_shows_how_to_install_one(cli) -> None:
    """`greeter list` prints nothing on stdout and the install hint on stderr; exit 0."""
    result = cli("list")
    assert (result.returncode, result.stdout) == (0, "")
    assert re.search(r"pip install --no-index --find-links \S+ greeter-english\b", result.stderr)


def test_list_json_without_plugins_is_an_empty_array(cli) -> None:
    """Scripts get valid JSON even when nothing is installed."""
    assert json.loads(cli("list", "--json").stdout) == []


def test_check_without_plugins_fails(cli) -> None:
    """Nothing to check is a failure for `greeter check`: exit 1 and the install hint."""
    result = cli("check")
    assert result.returncode == 1
    assert re.search(r"pip install --no-index --find-links \S+ greeter-english\b", result.stderr)


def test_bare_greeter_without_plugins_says_none_is_installed_and_how_to_get_one(cli) -> None:
    """`greeter` alone, with nothing installed: the usage, then that no plugin is installed and where one comes from."""
    result = cli()
    assert result.returncode == 2
    error = result.stderr.splitlines()[-1]
    assert error.startswith("greeter: error: no greeter plugins are installed; install one, e.g.: ")
    assert re.search(r"pip install --no-index --find-links \S+ greeter-english\b", error) and "not on PyPI" in error
