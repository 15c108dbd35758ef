"""The lock file: every plugin file pinned by its own sha256; a file rewritten with its RECORD line is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import py_compile
import signal
import subprocess
import tomllib
from importlib.util import cache_from_source
from pathlib import Path

import pytest
from basics import REPO, one_line
from docblocks import block_after, matches, sh
from plugins import ALPHA_V2, GAMMA, PluginFactory, imports_of, marking
from running import RunningGreeter
from wheels import Venv

from greeter_core import LockMismatchError, load
from greeter_core.discovery import find
from greeter_core.lock import LOCK_VERSION, PluginLock

KLINGON = marking("klingon", "nuqneH")
VULCAN = marking("vulcan", "Dif-tor heh smusma")
ISOLATION = pytest.mark.parametrize("isolation", ["none", "process"])


@pytest.fixture(autouse=True)
def _unconfined(greeter_env: dict[str, str]) -> None:
    """The marking plugins record each import beside their package, which a sandboxed worker may not write."""
    greeter_env["GREETER_SANDBOX"] = "off"


def record_digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def rewrite_with_record(site: Path, relative: str, text: str) -> None:
    """Change an installed file AND its RECORD line to match, as someone who can write site-packages would."""
    path = site / relative
    path.write_text(text, encoding="utf-8")
    data = path.read_bytes()
    for record_file in site.glob("*.dist-info/RECORD"):
        lines = record_file.read_text().splitlines()
        if any(line.startswith(relative + ",") for line in lines):
            lines = [
                f"{relative},{record_digest(data)},{len(data)}" if line.startswith(relative + ",") else line
                for line in lines
            ]
            record_file.write_text("\n".join(lines) + "\n")
            return
    raise AssertionError(f"no RECORD lists {relative}")


@pytest.fixture
def locked(install, site: Path, cli, tmp_path: Path) -> Path:
    """klingon and vulcan installed, and a lock file written for them by `greeter lock`."""
    install(KLINGON, VULCAN)
    lock = tmp_path / "greeter.lock"
    result = cli("lock", "--output", str(lock))
    assert result.returncode == 0, result.stderr
    return lock


def test_the_lock_file_pins_every_installed_file_by_its_own_hash(locked: Path, site: Path) -> None:
    """Each plugin distribution appears with its version, entry points and the sha256 of every file it installed."""
    data = tomllib.loads(locked.read_text(encoding="utf-8"))
    assert data["lock-version"] == LOCK_VERSION
    klingon = data["distributions"]["greeter-klingon"]
    assert klingon["version"] == "1.0"
    assert klingon["entry-points"] == {"klingon": KLINGON.target}
    [dist_info] = site.glob("greeter_klingon-1.0.dist-info")
    installed = {p.relative_to(site).as_posix() for p in [*site.glob(f"{KLINGON.module}/**/*"), *dist_info.iterdir()]}
    assert set(klingon["files"]) == {p for p in installed if (site / p).is_file() and "__pycache__" not in p}
    for path, digest in klingon["files"].items():
        assert digest == "sha256:" + hashlib.sha256((site / path).read_bytes()).hexdigest()


def test_the_lock_file_is_sorted_and_one_file_per_line(locked: Path) -> None:
    """Readable and diffable: sorted distributions and paths, one file per line, a comment saying what it is."""
    text = locked.read_text(encoding="utf-8")
    assert text.startswith("# greeter lock file")
    names = [line.split('"')[1] for line in text.splitlines() if line.startswith("[distributions.") and line[-1] == "]"]
    assert names == sorted(names) and {"greeter-klingon", "greeter-vulcan"} <= set(names)
    section = text.split('[distributions."greeter-klingon".files]\n')[1].split("\n\n")[0]
    files = [line.partition(" = ")[0] for line in section.splitlines()]
    assert files == sorted(files) and len(files) >= 5
    assert all(line.count(" = ") == 1 for line in section.splitlines())


def test_lock_check_passes_when_nothing_changed(cli, locked: Path) -> None:
    """`greeter lock --check` right after `greeter lock`: no difference, exit 0."""
    result = cli("lock", "--check", "--output", str(locked))
    assert (result.returncode, result.stdout) == (0, "")


@ISOLATION
def test_a_file_rewritten_with_its_record_line_passes_verify_but_not_the_lock(
    cli, locked: Path, site: Path, isolation: str
) -> None:
    """The issue's case: file and RECORD line both rewritten. --verify greets (RECORD agrees); --lock refuses in
    one line naming plugin, distribution and file, and the module is never imported."""
    rewrite_with_record(site, f"{KLINGON.module}/__init__.py", KLINGON.code.replace("nuqneH", "pwned"))
    verified = cli("--driver", "klingon", "--verify", "--isolation", isolation)
    assert (verified.returncode, verified.stdout) == (0, "pwned Universe\n")
    imported = imports_of(KLINGON, site)
    assert len(imported) == 1

    refused = cli("--driver", "klingon", "--lock", str(locked), "--isolation", isolation)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert f"plugin 'klingon' (greeter-klingon 1.0) does not match the lock file {locked}" in line
    assert f"{KLINGON.module}/__init__.py: sha256 differs from the lock" in line
    assert "(and 1 more difference" in line  # the rewritten RECORD
    assert imports_of(KLINGON, site) == imported  # not imported again


def test_lock_check_lists_every_difference(cli, locked: Path, site: Path, install) -> None:
    """A changed file, a changed RECORD, an added module, a new plugin: one line each, exit 1; --json too."""
    rewrite_with_record(site, f"{KLINGON.module}/__init__.py", KLINGON.code + "\n# changed\n")
    (site / VULCAN.module / "extra.py").write_text("x = 1\n")
    install(GAMMA)
    result = cli("lock", "--check", "--output", str(locked))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"greeter-klingon: {KLINGON.module}/__init__.py: sha256 differs from the lock" in lines
    assert "greeter-klingon: greeter_klingon-1.0.dist-info/RECORD: sha256 differs from the lock" in lines
    assert f"greeter-vulcan: {VULCAN.module}/extra.py: is not in the lock (added since the lock was written)" in lines
    assert "greeter-gamma: is not in the lock file" in lines
    assert len(lines) == 4, lines
    as_json = json.loads(cli("lock", "--check", "--json", "--output", str(locked)).stdout)
    assert {"distribution": "greeter-gamma", "path": "", "problem": "is not in the lock file"} in as_json
    assert len(as_json) == 4


@pytest.mark.parametrize("what", ["added-module", "not-locked"])
def test_a_module_dropped_in_or_a_plugin_installed_after_the_lock_is_refused(
    cli, locked: Path, site: Path, install, what: str
) -> None:
    """A module added to a locked package, or a whole distribution the lock does not know: refused, exit 1."""
    if what == "added-module":
        (site / KLINGON.module / "backdoor.py").write_text("import os\n")
        driver, expected = "klingon", f"{KLINGON.module}/backdoor.py: is not in the lock"
    else:
        install(GAMMA)
        driver, expected = "gamma", "plugin 'gamma' (greeter-gamma 1.0) does not match the lock file"
    result = cli("--driver", driver, "--lock", str(locked))
    assert result.returncode == 1 and expected in one_line(result.stderr)


def test_greeter_lock_env_names_the_lock_file_and_check_uses_it(cli, greeter_env, locked: Path, site: Path) -> None:
    """GREETER_LOCK works like --lock: `greeter check` refuses the changed plugin and passes the others."""
    greeter_env["GREETER_LOCK"] = str(locked)
    (site / VULCAN.module / "__init__.py").write_text(VULCAN.code.replace("smusma", "changed"))
    result = cli("check", "--json", "klingon", "vulcan")
    assert result.returncode == 1
    results = {r["name"]: r for r in json.loads(result.stdout)}
    assert results["klingon"]["ok"] and not results["vulcan"]["ok"]
    assert "does not match the lock file" in results["vulcan"]["detail"]
    assert imports_of(VULCAN, site) == []


@ISOLATION
def test_the_api_takes_a_lock_and_refuses_before_importing(on_path: Path, install, tmp_path: Path, isolation) -> None:
    """load(..., lock=PluginLock.read(path)) raises LockMismatchError naming the file, in either isolation mode."""
    install(KLINGON)
    lock_file = tmp_path / "greeter.lock"
    PluginLock.snapshot().write(lock_file)
    lock = PluginLock.read(lock_file)
    with load("klingon", lock=lock, isolation=isolation, sandbox="off") as loaded:
        assert loaded.greet("Worf") == "nuqneH Worf"
    rewrite_with_record(on_path, f"{KLINGON.module}/__init__.py", KLINGON.code + "\n")
    with pytest.raises(LockMismatchError) as caught:
        load("klingon", lock=lock, isolation=isolation, sandbox="off")
    assert caught.value.path == f"{KLINGON.module}/__init__.py" and caught.value.exit_code == 1
    assert len(imports_of(KLINGON, on_path)) == 1


def test_planted_byte_code_that_python_would_import_is_refused(on_path: Path, install, tmp_path: Path) -> None:
    """A __pycache__ file with the header of the locked source but other code is refused; a true one is not."""
    install(KLINGON)
    source = on_path / KLINGON.module / "__init__.py"
    lock = PluginLock.snapshot()
    plugin = find("klingon")
    py_compile.compile(str(source), cfile=cache_from_source(str(source)), doraise=True)
    assert lock.compare(plugin) == []  # a cache compiled from the locked source is fine

    evil = tmp_path / "evil.py"
    evil.write_text(KLINGON.code.replace("nuqneH", "pwned"))
    py_compile.compile(str(evil), cfile=str(tmp_path / "evil.pyc"), doraise=True)
    planted = (tmp_path / "evil.pyc").read_bytes()
    stat = source.stat()  # give it the header Python checks: the locked source's mtime and size
    header = int(stat.st_mtime).to_bytes(4, "little") + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    Path(cache_from_source(str(source))).write_bytes(planted[:8] + header + planted[16:])

    [difference] = lock.compare(plugin)
    assert difference.path.startswith(f"{KLINGON.module}/__pycache__/__init__.")
    assert "byte-code cache Python would import" in difference.problem
    with pytest.raises(LockMismatchError):
        load("klingon", lock=lock)
    assert imports_of(KLINGON, on_path) == []


def test_an_editable_install_is_left_out_of_the_lock_and_refused_under_it(
    cli, install, site: Path, tmp_path: Path
) -> None:
    """PEP 610 says editable: `greeter lock` warns and leaves it out; --lock refuses it, saying why."""
    install(KLINGON, VULCAN)
    [dist_info] = site.glob("greeter_vulcan-1.0.dist-info")
    (dist_info / "direct_url.json").write_text('{"url": "file:///src/vulcan", "dir_info": {"editable": true}}')
    lock = tmp_path / "greeter.lock"
    result = cli("lock", "--output", str(lock))
    assert result.returncode == 0
    assert "greeter-vulcan is an editable install" in result.stderr
    assert "greeter-vulcan" not in tomllib.loads(lock.read_text())["distributions"]
    refused = cli("--driver", "vulcan", "--lock", str(lock))
    assert refused.returncode == 1 and "an editable install, which cannot be locked" in one_line(refused.stderr)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the lock file"),
        ("not = [toml", "is not valid TOML"),
        ("lock-version = 9\n", f"expected lock-version = {LOCK_VERSION} (or 1)"),
    ],
    ids=["missing", "not-toml", "wrong-version"],
)
def test_a_lock_file_that_cannot_be_read_is_one_line_and_exit_2(cli, install, tmp_path: Path, content, message) -> None:
    """A missing or malformed --lock FILE is the user's mistake: exit 2, before any plugin is touched."""
    install(KLINGON)
    lock = tmp_path / "greeter.lock"
    if content is not None:
        lock.write_text(content)
    result = cli("--driver", "klingon", "--lock", str(lock))
    assert result.returncode == 2 and message in one_line(result.stderr)


def test_a_record_line_naming_a_fifo_hangs_neither_lock_nor_check(cli, install, site: Path, tmp_path: Path) -> None:
    """RECORD is as hostile as the files: a line naming a FIFO is hashed as unreadable, not waited on forever."""
    install(KLINGON)
    fifo = f"{KLINGON.module}/pipe"
    os.mkfifo(site / fifo)
    [record] = site.glob("greeter_klingon-1.0.dist-info/RECORD")
    record.write_text(record.read_text() + f"{fifo},,\n")
    lock = tmp_path / "greeter.lock"
    assert cli("lock", "--output", str(lock), timeout=30).returncode == 0
    result = cli("--driver", "klingon", "--lock", str(lock), timeout=30)
    assert result.returncode == 1 and f"{fifo}: is locked but missing (or unreadable)" in one_line(result.stderr)


def test_a_lock_file_that_cannot_be_written_is_one_line_and_exit_2(cli, install, tmp_path: Path) -> None:
    """`greeter lock --output` into a directory that does not exist: exit 2, one line, nothing half-written."""
    install(KLINGON)
    result = cli("lock", "--output", str(tmp_path / "missing" / "greeter.lock"))
    assert result.returncode == 2 and "cannot write the lock file" in one_line(result.stderr)
    assert not (tmp_path / "missing").exists()


def test_a_swap_to_a_plugin_that_does_not_match_the_lock_is_422_and_the_current_one_keeps_greeting(
    start, locked: Path, site: Path
) -> None:
    """In `greeter run --lock`, a swap to a changed plugin is refused before any import; the current one greets on."""
    rewrite_with_record(site, f"{VULCAN.module}/__init__.py", VULCAN.code.replace("smusma", "changed"))
    greeter: RunningGreeter = start(
        "--driver", "klingon", "--lock", str(locked), "--interval", "0.01", "--control", "127.0.0.1:0"
    )
    greeter.wait_greetings("nuqneH Universe")
    reply = greeter.swap("vulcan")
    assert reply.status == 422
    assert reply.data["current"] == "klingon"
    assert f"{VULCAN.module}/__init__.py: sha256 differs from the lock" in reply.data["error"]
    greeter.wait_greetings("nuqneH Universe", 3)
    assert imports_of(VULCAN, site) == []


# -- a real venv, upgraded after the lock was written ------------------------------------------------


def venv_greeter(venv: Venv, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.python), "-m", "greeter_core", *args], env=venv.env, cwd=cwd, capture_output=True, text=True
    )


def test_a_lock_written_before_an_upgrade_refuses_the_upgraded_plugin(
    venv: Venv, factory: PluginFactory, tmp_path: Path
) -> None:
    """Lock, `pip install -U greeter-alpha`, then: --check names the version and files; --driver alpha is refused."""
    assert venv_greeter(venv, "lock", cwd=tmp_path).returncode == 0
    assert venv_greeter(venv, "--driver", "alpha", "--lock", "greeter.lock", cwd=tmp_path).stdout == "Alpha Universe\n"
    venv.install(factory.wheel(ALPHA_V2))
    check = venv_greeter(venv, "lock", "--check", cwd=tmp_path)
    assert check.returncode == 1
    assert "greeter-alpha: version 2.0 is installed, the lock has 1.0" in check.stdout.splitlines()
    assert "greeter-alpha: greeter_alpha-1.0.dist-info/RECORD: is locked but missing (or unreadable)" in check.stdout
    assert not any(line.startswith("greeter-beta") for line in check.stdout.splitlines())
    refused = venv_greeter(venv, "--driver", "alpha", "--lock", "greeter.lock", cwd=tmp_path)
    assert refused.returncode == 1
    assert (
        "plugin 'alpha' (greeter-alpha 2.0) does not match the lock file greeter.lock: "
        "version 2.0 is installed, the lock has 1.0" in one_line(refused.stderr)
    )
    assert venv_greeter(venv, "--driver", "beta", "--lock", "greeter.lock", cwd=tmp_path).stdout == "Beta Universe\n"


@pytest.mark.parametrize("how", ["POST /reload", "SIGHUP"])
def test_a_reload_to_an_upgrade_that_is_not_locked_is_refused_and_the_old_code_keeps_greeting(
    venv: Venv, venv_start, factory: PluginFactory, tmp_path: Path, how: str
) -> None:
    """`greeter run --lock --isolation process`: after an upgrade, a reload is refused; version 1.0 greets on."""
    assert venv_greeter(venv, "lock", "--output", str(tmp_path / "greeter.lock"), cwd=tmp_path).returncode == 0
    greeter: RunningGreeter = venv_start(
        "--driver",
        "alpha",
        "--interval",
        "0.02",
        "--control",
        "127.0.0.1:0",
        "--isolation",
        "process",
        "--lock",
        str(tmp_path / "greeter.lock"),
    )
    greeter.wait_greetings("Alpha Universe")
    venv.install(factory.wheel(ALPHA_V2))
    if how == "SIGHUP":
        greeter.send(signal.SIGHUP)
        greeter.stderr.search(
            r"reload of 'alpha' refused: plugin 'alpha' \(greeter-alpha 2\.0\) does not match the lock file"
        )
    else:
        reply = greeter.request("POST", "/reload")
        assert reply.status == 422 and "version 2.0 is installed, the lock has 1.0" in reply.data["error"]
    greeter.wait_greetings("Alpha Universe", 3)
    status = greeter.status()
    assert (status["version"], status["reloads"]) == ("1.0", 0)
    assert "Alpha two Universe" not in greeter.stdout.lines


def test_the_docs_lock_session_runs_as_written(venv: Venv, factory: PluginFactory, tmp_path: Path) -> None:
    """docs/operating.md's lock session, command by command in the venv's shell: lock, upgrade, check, refusal."""
    page = REPO / "docs" / "operating.md"
    before = block_after(page, "## The lock file", "console")
    after = block_after(page, "Later, `pip install --upgrade greeter-alpha`", "console")
    env = {**venv.env, "PATH": f"{venv.python.parent}{os.pathsep}{venv.env['PATH']}", "COLUMNS": "200"}
    for block in (before, after):
        if block is after:
            venv.install(factory.wheel(ALPHA_V2))
        for command, shown in block.transcript():
            done = sh(command, env, tmp_path)
            assert matches(shown, done.stdout.splitlines()), (command, done.stdout)
