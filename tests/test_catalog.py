"""The discovery cache: a scan is used again only while nothing it was read from changed.

An installation is made old first (every time set a minute back, as if
installed long ago), because files changed within two seconds of a scan make
it good for that scan only. Each change is then made to look as if it came
one second after the scan: its directory's time set to one second after the
old one, well within the two minutes that a time rounded to a 32-bit float
cannot tell apart.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugins import ALPHA_V1, ALPHA_V2, GAMMA, PluginFactory, PluginSpec, imports_of, marking
from running import RunningGreeter
from wheels import Venv, uv

import greeter_core
from greeter_core import NoSuchDriverError, catalog, discovery
from greeter_core.catalog import Catalog

SECOND = 1_000_000_000


def settle(root: Path, age: float = 60.0) -> int:
    """Set every time under *root* (and of *root*) *age* seconds back, as if installed long ago; return it (ns)."""
    then = time.time_ns() - int(age * SECOND)
    for directory, _, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(directory, name), ns=(then, then), follow_symlinks=False)
        os.utime(directory, ns=(then, then))
    return then


def a_second_later(then: int, *paths: Path) -> None:
    """Make *paths* look changed one second after *then*, as on a file system that stamps whole seconds."""
    for path in paths:
        os.utime(path, ns=(then + SECOND, then + SECOND))


def entry_points_of(site: Path, spec: PluginSpec) -> Path:
    return site / f"{spec.dist.replace('-', '_')}-{spec.version}.dist-info" / "entry_points.txt"


def no_plugins_distribution(site: Path) -> Path:
    """An installed distribution that registers no plugin (a console script only); its entry_points.txt."""
    dist_info = site / "unrelated-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: unrelated\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[console_scripts]\nunrelated = unrelated:main\n")
    return dist_info / "entry_points.txt"


# -- in process: what `greeter run` keeps ---------------------------------------------------------------


#: The fixture plugins the in-process tests install.
KLINGON, VULCAN = PluginSpec("klingon"), PluginSpec("vulcan")


@pytest.fixture
def scans(site: Path, factory: PluginFactory, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the scans the catalog makes; sys.path: the fixture site and the standard library, nothing else.

    Nothing else on that path changes while a test runs. The wheels are built
    first: building needs the test environment on sys.path.
    """
    for spec in (KLINGON, VULCAN, ALPHA_V1, ALPHA_V2, GAMMA):
        factory.wheel(spec)
    base = Path(sys.base_prefix).resolve()
    stdlib = [entry for entry in sys.path if entry and Path(entry).resolve().is_relative_to(base)]
    monkeypatch.setattr(sys, "path", [str(site), *stdlib])
    counted: list[int] = []

    def counting() -> discovery.Scan:
        counted.append(1)
        return discovery.scan()

    monkeypatch.setattr(catalog, "scan", counting)
    return counted


def test_an_unchanged_installation_is_not_scanned_again(install, site: Path, scans: list[int]) -> None:
    """Looking names up again and again costs a few stats, not a scan, while nothing changed."""
    install(KLINGON, VULCAN)
    settle(site)
    plugins = Catalog()
    assert [plugins.find(name).name for name in ("klingon", "vulcan", "klingon")] == ["klingon", "vulcan", "klingon"]
    assert len(scans) == 1
    assert [p.name for p in plugins.scan(thorough=True).plugins] == ["klingon", "vulcan"]
    assert [p.name for p in plugins.scan(thorough=True).plugins] == ["klingon", "vulcan"]
    assert len(scans) == 2  # a swap's snapshot cannot answer for every entry_points.txt; the next one can


def rewrite_in_place(file: Path, old: str, new: str) -> None:
    """Edit *file* where it is (no new file, no rename): only its own times change, not its directory's."""
    with open(file, "r+", encoding="utf-8") as text:
        content = text.read().replace(old, new)
        text.seek(0)
        text.write(content)
        text.truncate()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("install", {"alpha": ("1.0", ":Plugin"), "gamma": ("1.0", ":Plugin")}),
        ("uninstall", {}),
        ("upgrade", {"alpha": ("2.0", ":Plugin")}),
        ("entry-points-rewritten-in-place", {"alpha": ("1.0", ":Other")}),
        ("metadata-rewritten-in-place", {"alpha": ("1.1", ":Plugin")}),
    ],
)
def test_a_change_made_a_second_after_the_scan_is_seen(
    install, factory: PluginFactory, site: Path, scans: list[int], change: str, expected: dict[str, tuple[str, str]]
) -> None:
    """An install, an uninstall, an upgrade or an edit in place, a second after the scan: the next look sees it."""
    install(ALPHA_V1)
    then = settle(site)
    plugins = Catalog()
    assert plugins.find("alpha").version == "1.0"
    dist_info = entry_points_of(site, ALPHA_V1).parent
    if change == "install":
        factory.install(GAMMA, site)
    elif change == "uninstall":
        shutil.rmtree(dist_info)
    elif change == "upgrade":
        shutil.rmtree(dist_info)
        factory.install(ALPHA_V2, site)
    elif change == "entry-points-rewritten-in-place":
        rewrite_in_place(dist_info / "entry_points.txt", ":Plugin", ":Other")
    else:
        rewrite_in_place(dist_info / "METADATA", "Version: 1.0", "Version: 1.1")
    if change.endswith("in-place"):
        a_second_later(then, *dist_info.iterdir())
    else:
        a_second_later(then, site)
    assert {p.name: (p.version, p.target[p.target.index(":") :]) for p in plugins.scan().plugins} == expected


def test_a_plugin_added_in_place_to_a_distribution_without_any_is_found(install, site: Path, scans: list[int]) -> None:
    """A swap's snapshot does not watch every entry_points.txt: a name it does not know is looked up fresh."""
    install(KLINGON)
    file = no_plugins_distribution(site)
    then = settle(site)
    plugins = Catalog()
    assert [p.name for p in plugins.scan().plugins] == ["klingon"]
    file.write_text(file.read_text() + "[greeter.plugins]\nvulcan = gt_vulcan:Plugin\n")
    os.utime(file, ns=(then, then))  # even with its old time
    assert plugins.find("vulcan").distribution == "unrelated"
    with pytest.raises(NoSuchDriverError):
        plugins.find("romulan")


def test_a_thorough_look_sees_a_plugin_added_in_place_to_a_distribution_without_any(
    install, site: Path, scans: list[int]
) -> None:
    """`GET /plugins` and `greeter list` watch every entry_points.txt, with its old time or not."""
    install(KLINGON)
    file = no_plugins_distribution(site)
    then = settle(site)
    plugins = Catalog()
    assert [p.name for p in plugins.scan(thorough=True).plugins] == ["klingon"]
    file.write_text(file.read_text() + "[greeter.plugins]\nvulcan = gt_vulcan:Plugin\n")
    os.utime(file, ns=(then, then))
    assert [p.name for p in plugins.scan(thorough=True).plugins] == ["klingon", "vulcan"]


def test_files_changed_just_before_a_scan_make_it_good_for_that_scan_only(
    install, site: Path, scans: list[int]
) -> None:
    """A change within the file system's time granularity of the scan could leave no trace: scan again."""
    install(KLINGON)  # just now: within two seconds
    plugins = Catalog()
    plugins.find("klingon")
    plugins.find("klingon")
    assert len(scans) == 2


# -- on disk: what the one-shot `greeter list` keeps ---------------------------------------------------


def site_packages(venv: Venv) -> Path:
    [path] = venv.python.parent.parent.glob("lib/python*/site-packages")
    return path


def greeter(venv: Venv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.python.parent / "greeter"), *args],
        env=venv.env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def listing(venv: Venv) -> dict[str, str]:
    """`greeter list --json` as {name: version}; it must succeed with no traceback."""
    result = greeter(venv, "list", "--json", "--debug")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return {record["name"]: record["version"] for record in json.loads(result.stdout)}


def read_from_cache(venv: Venv) -> bool:
    """Whether `greeter list` answered from its cache file (it says so with --debug)."""
    result = greeter(venv, "list", "--debug")
    assert result.returncode == 0, result.stderr
    return "installed plugins read from" in result.stderr


def cache_files(venv: Venv) -> list[Path]:
    return sorted(Path(venv.env["XDG_CACHE_HOME"], "greeter").glob("plugins-*.json"))


@pytest.fixture
def settled_venv(venv: Venv) -> tuple[Venv, int]:
    """The test venv (greeter-alpha 1.0 and greeter-beta), installed a minute ago, listed once (the cache written)."""
    then = settle(venv.python.parent.parent)
    assert listing(venv) == {"alpha": "1.0", "beta": "1.0"}
    return venv, then


def test_greeter_list_answers_from_its_cache_while_nothing_changed(settled_venv: tuple[Venv, int]) -> None:
    """A second `greeter list` reads no metadata: one small file, and a stat per distribution."""
    venv, _ = settled_venv
    assert read_from_cache(venv)
    assert listing(venv) == {"alpha": "1.0", "beta": "1.0"}
    [file] = cache_files(venv)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700


def test_greeter_list_imports_no_plugin_whether_from_its_cache_or_not(venv: Venv, factory: PluginFactory) -> None:
    """Listing reads metadata, or the cache file, and never a line of a plugin's code."""
    spec = marking("delta", "Delta")
    venv.install(factory.wheel(spec))
    settle(venv.python.parent.parent)
    assert "delta" in listing(venv)
    assert read_from_cache(venv)
    assert imports_of(spec, site_packages(venv)) == []


@pytest.mark.parametrize("change", ["install", "uninstall", "upgrade", "plugin-added-in-place"])
def test_greeter_list_sees_a_change_made_a_second_after_the_last_listing(
    settled_venv: tuple[Venv, int], factory: PluginFactory, change: str
) -> None:
    """Two processes: the first wrote the cache, a change came a second later, the second lists the change."""
    venv, then = settled_venv
    site = site_packages(venv)
    if change == "install":
        venv.install(factory.wheel(GAMMA))
        expected = {"alpha": "1.0", "beta": "1.0", "gamma": "1.0"}
    elif change == "uninstall":
        uv("pip", "uninstall", "--quiet", "--python", venv.python, "greeter-beta", env=venv.env)
        expected = {"alpha": "1.0"}
    elif change == "upgrade":
        venv.install(factory.wheel(ALPHA_V2))
        expected = {"alpha": "2.0", "beta": "1.0"}
    else:  # greeter-core's own entry_points.txt (its console script), edited where it is
        [entry_points] = site.glob("greeter_core-*.dist-info/entry_points.txt")
        with open(entry_points, "a", encoding="utf-8") as text:
            text.write("\n[greeter.plugins]\nvulcan = gt_vulcan:Plugin\n")
        a_second_later(then, entry_points)
        expected = {"alpha": "1.0", "beta": "1.0", "vulcan": greeter_core.__version__}
    if change != "plugin-added-in-place":
        a_second_later(then, site)
    assert listing(venv) == expected


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not json at all",
        b"[]",
        b'{"key": null}',
        b"{" * 100_000,
        "half",
        "plugins-of-the-wrong-shape",
        "a-stamp-missing",
    ],
    ids=["empty", "not-json", "a-list", "no-key", "nested-deep", "truncated", "wrong-shape", "stamp-missing"],
)
def test_a_damaged_cache_file_is_ignored_and_replaced(settled_venv: tuple[Venv, int], damage: bytes | str) -> None:
    """Whatever is in the cache file, `greeter list` lists what is installed, and writes a good file again."""
    venv, _ = settled_venv
    [file] = cache_files(venv)
    good = json.loads(file.read_text())
    if damage == "half":
        content = file.read_bytes()[: file.stat().st_size // 2]
    elif damage == "plugins-of-the-wrong-shape":
        content = json.dumps({**good, "plugins": [[1, 2, 3, 4]]}).encode()
    elif damage == "a-stamp-missing":
        content = json.dumps({**good, "stamps": good["stamps"][:-1]}).encode()
    else:
        assert isinstance(damage, bytes)
        content = damage
    file.write_bytes(content)
    assert listing(venv) == {"alpha": "1.0", "beta": "1.0"}
    assert json.loads(file.read_text()) == good
    assert read_from_cache(venv)


def forged(venv: Venv) -> Path:
    """The cache file, rewritten by someone else to list a plugin that is not installed."""
    [file] = cache_files(venv)
    data = json.loads(file.read_text())
    data["plugins"].append(["forged", "greeter-forged", "6.6", "gt_forged:Plugin"])
    file.write_text(json.dumps(data))
    return file


@pytest.mark.parametrize("how", ["writable-by-others", "a-symlink", "in-a-directory-others-can-write"])
def test_a_cache_file_that_others_could_have_written_is_not_read(settled_venv: tuple[Venv, int], how: str) -> None:
    """Only a regular file of this user, in a directory of this user, that nobody else can write, is read."""
    venv, _ = settled_venv
    file = forged(venv)
    if how == "writable-by-others":
        file.chmod(0o666)
    elif how == "a-symlink":
        elsewhere = file.with_name("elsewhere.json")
        file.rename(elsewhere)
        file.symlink_to(elsewhere)
    else:
        file.parent.chmod(0o777)
    assert listing(venv) == {"alpha": "1.0", "beta": "1.0"}


def test_the_cache_file_lists_plugins_and_loads_none(settled_venv: tuple[Venv, int]) -> None:
    """What the cache file says is only shown: `greeter --driver` of a name it alone lists finds nothing."""
    venv, _ = settled_venv
    forged(venv)
    assert "forged" in listing(venv)  # the user's own file, trusted for listing
    result = greeter(venv, "--driver", "forged")
    assert result.returncode == 2
    assert "no plugin named 'forged' is installed" in result.stderr


def test_listings_at_once_all_list_what_is_installed(settled_venv: tuple[Venv, int], factory: PluginFactory) -> None:
    """Several processes listing (and writing the cache) at the same time never read a torn file."""
    venv, _ = settled_venv
    venv.install(factory.wheel(GAMMA))
    settle(venv.python.parent.parent)
    runs = [
        subprocess.Popen(
            [str(venv.python.parent / "greeter"), "list", "--json"],
            env=venv.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, outputs
    assert all({r["name"] for r in json.loads(out)} == {"alpha", "beta", "gamma"} for out, _ in outputs)
    assert read_from_cache(venv)


# -- greeter run: a swap to a plugin installed a second after the last look ------------------------------


def test_a_running_greeter_swaps_to_a_plugin_installed_a_second_after_its_last_look(
    venv: Venv, venv_start, factory: PluginFactory
) -> None:
    """The swap after an install sees it, and the swap after an uninstall refuses it: no stale scan."""
    then = settle(venv.python.parent.parent)
    running: RunningGreeter = venv_start("--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0")
    running.wait_greetings("Alpha Universe")
    assert running.swap("beta").status == 200
    venv.install(factory.wheel(GAMMA))
    a_second_later(then, site_packages(venv))
    assert running.swap("gamma").status == 200
    running.wait_greetings("Gamma Universe")
    uv("pip", "uninstall", "--quiet", "--python", venv.python, "greeter-beta", env=venv.env)
    a_second_later(then, site_packages(venv))
    assert running.swap("beta").status == 404
