"""Discovery: plain records from package metadata, never importing a plugin."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from plugins import PluginSpec

import greeter_core
from greeter_core import DuplicateDriverError, NoSuchDriverError, PluginInfo, PluginLoadError

pytestmark = pytest.mark.usefixtures("on_path")


def test_discover_returns_name_distribution_version_and_target(install) -> None:
    """Each record carries what `greeter list` shows."""
    spec = PluginSpec("klingon", version="2.5")
    install(spec)
    [info] = [p for p in greeter_core.discover() if p.name == "klingon"]
    assert info == PluginInfo("klingon", "greeter-klingon", "2.5", spec.target)


def test_discover_does_not_import_plugins(install) -> None:
    """Listing reads metadata only: the plugin's module is never imported."""
    spec = PluginSpec("klingon", code="raise RuntimeError('imported!')")
    install(spec)
    assert "klingon" in {p.name for p in greeter_core.discover()}
    assert spec.module not in sys.modules


def test_a_distribution_seen_twice_on_the_path_is_listed_once(
    install, factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same distribution on two sys.path entries (lib and lib64) is not a duplicate."""
    spec = PluginSpec("klingon")
    install(spec)
    factory.install(spec, tmp_path / "lib64")
    monkeypatch.syspath_prepend(str(tmp_path / "lib64"))
    assert [p.name for p in greeter_core.discover()].count("klingon") == 1
    assert greeter_core.find("klingon").distribution == "greeter-klingon"


def test_two_distributions_with_one_name_are_both_listed_and_refused(install) -> None:
    """find() will not pick one of two distributions registering the same name."""
    install(PluginSpec("klingon"), PluginSpec("klingon", distribution="greeter-klingon-fork"))
    assert [p.distribution for p in greeter_core.discover() if p.name == "klingon"] == [
        "greeter-klingon",
        "greeter-klingon-fork",
    ]
    with pytest.raises(DuplicateDriverError) as caught:
        greeter_core.find("klingon")
    assert {p.distribution for p in caught.value.plugins} == {"greeter-klingon", "greeter-klingon-fork"}


def test_find_unknown_name_lists_what_is_installed(install) -> None:
    """The error for a missing driver carries the installed names."""
    install(PluginSpec("klingon"))
    with pytest.raises(NoSuchDriverError) as caught:
        greeter_core.find("vulcan")
    assert "klingon" in caught.value.installed
    assert re.search(r"pip install --no-index --find-links \S+ greeter-vulcan\b", str(caught.value))


def unreadable_distribution(site: Path, name: str, metadata: str, entry_points: str) -> Path:
    """A dist-info in *site* as a broken installer or a careless hand might leave it; return its path."""
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(metadata, encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return dist_info


#: A distribution registering a plugin, whose METADATA is empty: no Name, no Version.
NO_METADATA = ("greeter_nometa", "", "[greeter.plugins]\nnometa = gt_nowhere:Plugin\n")
#: An unrelated distribution with a malformed entry_points.txt line.
MALFORMED_ENTRY_POINTS = (
    "unrelated",
    "Metadata-Version: 2.1\nName: unrelated\nVersion: 1.0\n",
    "[console_scripts]\nthis line is not an entry point\n",
)


@pytest.mark.parametrize("broken", [NO_METADATA, MALFORMED_ENTRY_POINTS], ids=["no-metadata", "malformed-entry-points"])
def test_a_distribution_that_cannot_be_read_is_skipped_and_logged(install, site: Path, caplog, broken) -> None:
    """discover() lists every other plugin; one warning names the broken distribution and its path."""
    install(PluginSpec("klingon"))
    path = unreadable_distribution(site, *broken)
    assert [p.name for p in greeter_core.discover() if p.name in ("klingon", "nometa")] == ["klingon"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "greeter_core.discovery"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"the distribution at {path} cannot be read: ")


def test_a_plugin_whose_distribution_cannot_be_read_is_that_plugins_error(install, site: Path) -> None:
    """find() of a name only an unreadable distribution registers fails naming it; other names are found."""
    install(PluginSpec("klingon"))
    path = unreadable_distribution(site, *NO_METADATA)
    with pytest.raises(PluginLoadError) as caught:
        greeter_core.find("nometa")
    assert f"plugin 'nometa' failed to load: the distribution at {path} cannot be read: " in str(caught.value)
    assert greeter_core.find("klingon").distribution == "greeter-klingon"


def listed(stdout: str) -> list[tuple[str, str]]:
    """What `list --json` shows of the fixture plugins: (name, distribution)."""
    return [(p["name"], p["distribution"]) for p in json.loads(stdout) if p["name"] in ("klingon", "nometa")]


def checked(stdout: str) -> list[str]:
    """`check`'s row for its plugin, split into columns."""
    return stdout.splitlines()[-1].split()


@pytest.mark.parametrize(
    ("command", "read", "shown"),
    [
        (["--driver", "klingon"], str, "Hi Universe\n"),
        (["list", "--json"], listed, [("klingon", "greeter-klingon")]),
        (["check", "klingon"], checked, ["ok", "klingon", "greeter-klingon", "Test", "Hi", "Universe"]),
    ],
    ids=["greet", "list", "check"],
)
def test_the_cli_works_around_a_broken_distribution(
    cli, install, site: Path, command: list[str], read: Callable[[str], object], shown: object
) -> None:
    """`greeter --driver`, `list` and `check` work with a broken distribution installed, with one warning each."""
    install(PluginSpec("klingon"))
    unreadable_distribution(site, *NO_METADATA)
    unreadable_distribution(site, *MALFORMED_ENTRY_POINTS)
    result = cli(*command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert read(result.stdout) == shown
    assert "cannot be read" in result.stderr


def test_a_running_host_lists_and_swaps_around_a_broken_distribution(start, install, site: Path) -> None:
    """/plugins and swaps answer as usual in a running greeter while a broken distribution is installed."""
    install(PluginSpec("klingon"), PluginSpec("vulcan"))
    greeter = start("--driver", "klingon", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Hi Universe")
    unreadable_distribution(site, *NO_METADATA)
    unreadable_distribution(site, *MALFORMED_ENTRY_POINTS)
    reply = greeter.request("GET", "/plugins")
    assert reply.status == 200
    assert {"klingon", "vulcan"} <= {p["name"] for p in reply.data}
    assert greeter.swap("vulcan").status == 200
    assert greeter.swap("nometa").status == 422
    assert greeter.stop() == 0
