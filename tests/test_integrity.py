"""--verify: every file of the plugin's distribution is checked against RECORD before loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PluginSpec, greeter_code, one_line

from greeter_core import IntegrityError, load

#: The plugin records its own import in the site directory, whichever process imports it.
MARK = 'import pathlib; pathlib.Path(__file__).parent.parent.joinpath("imported").write_text(__name__)\n'
SPEC = PluginSpec("klingon", code=MARK + greeter_code("nuqneH"), extra_files=(("words.py", "HELLO = 'nuqneH'\n"),))


@pytest.fixture
def package(install, on_path: Path) -> Path:
    """The installed fixture plugin's package directory."""
    install(SPEC)
    return on_path / SPEC.module


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_an_intact_plugin_loads_with_verification(package: Path, isolation: str) -> None:
    """Untouched files match RECORD, so verification is silent and the plugin is imported."""
    with load("klingon", verify=True, isolation=isolation) as greeter:
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
    ],
    ids=["changed", "missing", "added"],
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
