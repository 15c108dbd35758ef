"""--verify: every file of the plugin's distribution is checked against RECORD before loading."""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import os
from pathlib import Path

import pytest
from basics import one_line
from plugins import PluginSpec, greeter_code

from greeter_core import IntegrityError, load

#: The plugin records its own import in the site directory, whichever process imports it.
MARK = 'import pathlib; pathlib.Path(__file__).parent.parent.joinpath("imported").write_text(__name__)\n'
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def add(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


SPEC = PluginSpec("klingon", code=MARK + greeter_code("nuqneH"), extra_files=(("words.py", "HELLO = 'nuqneH'\n"),))


@pytest.fixture
def package(install, on_path: Path) -> Path:
    """The installed fixture plugin's package directory."""
    install(SPEC)
    return on_path / SPEC.module


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_an_intact_plugin_loads_with_verification(package: Path, isolation: str) -> None:
    """Untouched files match RECORD, so verification is silent and the plugin is imported."""
    # sandbox off: MARK records the import beside the package, which a confined worker may not write
    with load("klingon", verify=True, isolation=isolation, sandbox="off") as greeter:
        assert greeter.greet("Worf") == "nuqneH Worf"
    assert (package.parent / "imported").read_text() == SPEC.module


@pytest.mark.parametrize(
    ("tamper", "file", "problem"),
    [
        (
            lambda pkg: (pkg / "__init__.py").write_text(MARK + "import os; os.system('evil')\n"),
            "__init__.py",
            "sha256 does not match RECORD",
        ),
        (lambda pkg: (pkg / "words.py").unlink(), "words.py", "listed in RECORD but missing"),
        (lambda pkg: (pkg / "backdoor.py").write_text("x = 1\n"), "backdoor.py", "not listed in RECORD"),
        # Python imports an extension module before __init__.py: the plugin's code would be replaced.
        (lambda pkg: (pkg / f"__init__{EXTENSION}").write_bytes(b"\x7fELF"), f"__init__{EXTENSION}", "not listed"),
        (lambda pkg: (pkg / "words.pyc").write_bytes(b"\0" * 16), "words.pyc", "not listed in RECORD"),
        (lambda pkg: add(pkg / "sub" / "deep" / "evil.py", "x = 1\n"), "sub/deep/evil.py", "not listed in RECORD"),
    ],
    ids=["changed", "missing", "added", "extension-module", "sourceless-bytecode", "new-subdirectory"],
)
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_tampered_plugin_is_refused_naming_the_file(
    package: Path, tamper, file: str, problem: str, isolation: str
) -> None:
    """A changed, missing or added file stops the load before any plugin code runs, in either process."""
    tamper(package)
    with pytest.raises(IntegrityError) as caught:
        load("klingon", verify=True, isolation=isolation)
    assert file in caught.value.path and problem in str(caught.value)
    assert "plugin 'klingon' (greeter-klingon 1.0) failed verification" in str(caught.value)
    assert not (package.parent / "imported").exists()


def test_without_verification_a_tampered_plugin_still_loads(package: Path) -> None:
    """Verification is opt-in: the default path does no hashing."""
    (package / "backdoor.py").write_text("x = 1\n")
    assert load("klingon").greet("Worf") == "nuqneH Worf"


def test_a_distribution_without_record_is_refused(package: Path, on_path: Path) -> None:
    """Nothing to verify against is a refusal, not a pass."""
    next(on_path.glob("greeter_klingon-*.dist-info")).joinpath("RECORD").unlink()
    with pytest.raises(IntegrityError) as caught:
        load("klingon", verify=True)
    assert "has no RECORD" in str(caught.value)


def test_the_cli_refuses_a_tampered_plugin_in_one_line(cli, install, site: Path) -> None:
    """`greeter --driver X --verify` names the file and exits 1; without --verify it greets."""
    install(SPEC)
    (site / SPEC.module / "words.py").write_text("HELLO = 'tampered'\n")
    result = cli("--driver", "klingon", "--verify")
    assert result.returncode == 1
    assert "words.py: sha256 does not match RECORD" in one_line(result.stderr)
    assert cli("--driver", "klingon").stdout == "nuqneH Universe\n"


@pytest.mark.shipped
def test_the_shipped_plugins_verify(cli) -> None:
    """Every shipped plugin, as installed, matches its RECORD."""
    result = cli("check", "--verify", "english", "chinese", "german", "spanish")
    assert result.returncode == 0, result.stdout


def test_byte_code_caches_are_not_strays(package: Path) -> None:
    """Python's own __pycache__ files, written after install, are not mistaken for added modules."""
    assert load("klingon").greet("Worf") == "nuqneH Worf"  # imports, and may write __pycache__
    cache = package / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "words.cpython-311.pyc").write_bytes(b"\0" * 16)
    with load("klingon", verify=True) as greeter:
        assert greeter.greet("Worf") == "nuqneH Worf"


def record_line(root: Path, relative: str) -> str:
    data = (root / relative).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{relative},sha256={digest},{len(data)}"


@pytest.fixture
def editable(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_path: Path) -> Path:
    """greeter-klingon installed the way `pip install -e` does: its RECORD lists a .pth file and its own
    metadata, and its module lives in a source tree elsewhere on sys.path."""
    source = tmp_path / "src"
    add(source / "gt_editable_klingon" / "__init__.py", MARK + greeter_code("nuqneH"))
    monkeypatch.syspath_prepend(str(source))
    (site / "__editable__.greeter_klingon-1.0.pth").write_text(f"{source}\n")
    info = site / "greeter_klingon-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-klingon\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[greeter.plugins]\nklingon = gt_editable_klingon:Plugin\n")
    lines = [
        record_line(site, name)
        for name in (
            "__editable__.greeter_klingon-1.0.pth",
            "greeter_klingon-1.0.dist-info/METADATA",
            "greeter_klingon-1.0.dist-info/entry_points.txt",
        )
    ]
    (info / "RECORD").write_text("\n".join([*lines, "greeter_klingon-1.0.dist-info/RECORD,,"]) + "\n")
    return source / "gt_editable_klingon"


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_an_editable_install_is_refused_because_nothing_can_be_verified(editable: Path, isolation: str) -> None:
    """RECORD of an editable install hashes none of the plugin's modules: --verify says so and refuses."""
    (editable / "__init__.py").write_text(MARK + "import os; os.system('evil')\n")  # tampering goes unseen
    with pytest.raises(IntegrityError) as caught:
        load("klingon", verify=True, isolation=isolation)
    assert "lists none of the plugin's modules ('gt_editable_klingon')" in str(caught.value)
    assert "editable or otherwise unverifiable install, so nothing could be verified" in str(caught.value)
    assert not (editable.parent.parent / "imported").exists()


def test_an_editable_install_loads_without_verify(editable: Path) -> None:
    """Without --verify, an editable install is an ordinary plugin (the fixture itself is sound)."""
    assert load("klingon").greet("Worf") == "nuqneH Worf"


def test_a_record_line_naming_a_fifo_is_refused_not_waited_on(package: Path) -> None:
    """RECORD is as untrusted as the files it lists: a line naming a FIFO is refused at once."""
    os.mkfifo(package / "pipe.py")
    record = next(package.parent.glob("greeter_klingon-*.dist-info")) / "RECORD"
    record.write_text(record.read_text() + f"{package.name}/pipe.py,sha256=AAAA,4\n")
    with pytest.raises(IntegrityError, match=r"pipe\.py: listed in RECORD but not a regular file"):
        load("klingon", verify=True)
