"""Discovery: plain records from package metadata, never importing a plugin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import PluginSpec

import greeter_core
from greeter_core import DuplicateDriverError, NoSuchDriverError, PluginInfo

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
    assert "pip install --find-links WHEELHOUSE greeter-vulcan" in str(caught.value)
