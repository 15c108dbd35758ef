"""`greeter new-plugin`: a plugin distribution that installs, greets and passes its own tests as written."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from basics import clean_env, one_line
from wheels import WheelBuilder, core_venv, uv

import greeter_core
from greeter_core.errors import UsageError
from greeter_core.scaffold import scaffold


@pytest.fixture
def install_project(builder: WheelBuilder, site: Path):
    """``install_project(project)``: build the scaffolded project's wheel (`uv build`) and unpack it into ``site``."""

    def install(project: Path) -> None:
        with zipfile.ZipFile(builder.wheel(project)) as archive:
            archive.extractall(site)

    return install


def test_writes_a_complete_distribution_and_prints_where(cli, tmp_path: Path) -> None:
    """By default it writes ./greeter-LANGUAGE: pyproject.toml, README, the package and its tests."""
    result = cli("new-plugin", "esperanto", "--greeting", "Saluton")
    assert (result.returncode, result.stdout) == (0, "greeter-esperanto\n")
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "greeter-esperanto").rglob("*") if p.is_file())
    assert written == [
        "greeter-esperanto/README.md",
        "greeter-esperanto/greeter_esperanto/__init__.py",
        "greeter-esperanto/pyproject.toml",
        "greeter-esperanto/tests/test_esperanto.py",
        "greeter-esperanto/tox.ini",
    ]


def test_missing_parent_directories_are_created_and_named(cli, tmp_path: Path) -> None:
    """`--dir a/typo/path` still writes the plugin, and a warning names the directories it had to create."""
    (tmp_path / "a").mkdir()
    result = cli("new-plugin", "esperanto", "--greeting", "Saluton", "--dir", "a/typo/path")
    assert (result.returncode, result.stdout) == (0, "a/typo/path\n")
    assert (tmp_path / "a" / "typo" / "path" / "pyproject.toml").is_file()
    assert one_line(result.stderr) == (
        "WARNING greeter_core.scaffold: created the missing directories a/typo to hold a/typo/path"
    )


def test_an_existing_parent_directory_gets_no_warning(cli, tmp_path: Path) -> None:
    """The usual case, `--dir` naming a new directory in an existing one, is silent on stderr."""
    result = cli("new-plugin", "esperanto", "--greeting", "Saluton", "--dir", "greeter-esperanto")
    assert (result.returncode, result.stderr) == (0, "")


def test_the_default_greetee_is_translated_like_the_hand_written_example(cli, install_project, tmp_path: Path) -> None:
    """`--universe Universo`: greeter greets "Saluton Universo" by default, as the docs' hand-written plugin does."""
    result = cli("new-plugin", "esperanto", "--greeting", "Saluton", "--universe", "Universo")
    assert result.returncode == 0, result.stderr
    install_project(tmp_path / "greeter-esperanto")
    greetings = [cli("--driver", "esperanto", *name).stdout for name in ([], ["--name", ""], ["--name", "Ada"])]
    assert greetings == ["Saluton Universo\n", "Saluton Universo\n", "Saluton Ada\n"]
    assert "Saluton Universo\n```" in (tmp_path / "greeter-esperanto" / "README.md").read_text(encoding="utf-8")


def test_refuses_an_existing_directory_and_leaves_it_alone(cli, tmp_path: Path) -> None:
    """An existing --dir is a one-line usage error (exit 2) and nothing in it changes."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    result = cli("new-plugin", "esperanto", "--greeting", "Saluton", "--dir", "mine")
    assert result.returncode == 2
    assert one_line(result.stderr) == "greeter: error: mine already exists; choose another --dir or remove it first"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_an_invalid_name_is_one_line_and_exit_2(cli) -> None:
    """The CLI reports a bad LANGUAGE as a usage error, with the rule and a suggestion."""
    result = cli("new-plugin", "Esperanto", "--greeting", "Saluton")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'Esperanto' cannot name a plugin: use lowercase ASCII letters and digits" in line
    assert line.endswith("did you mean 'esperanto'?")


@pytest.mark.parametrize(
    "language",
    [
        "",
        "Esperanto",
        "old norse",
        "klingon!",
        "1337",
        "-esperanto",
        "esperanto-",
        "old--norse",
        "français",
        "a=b",
        "[esperanto]",
        "esperanto.v2",
    ],
)
def test_rejects_names_that_are_not_distribution_entry_point_and_package_names(tmp_path: Path, language: str) -> None:
    """LANGUAGE must make a valid driver, distribution and Python package name; nothing is written otherwise."""
    with pytest.raises(UsageError, match="cannot name a plugin"):
        scaffold(language, "Saluton", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rejects_the_distribution_name_in_place_of_the_language(tmp_path: Path) -> None:
    """`greeter new-plugin greeter-esperanto` would make greeter-greeter-esperanto: it asks for the language."""
    with pytest.raises(UsageError, match="give the language alone: 'esperanto', not 'greeter-esperanto'"):
        scaffold("greeter-esperanto", "Saluton", tmp_path / "out")


@pytest.mark.parametrize("greeting", ["", "   ", "two\nlines", "tab\there", "nul\x00"])
def test_rejects_a_greeting_that_is_empty_or_not_one_line(tmp_path: Path, greeting: str) -> None:
    """--greeting must be some text on one line, without control characters."""
    with pytest.raises(UsageError, match="--greeting must"):
        scaffold("esperanto", greeting, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "greeting",
    [
        "Saluton",
        "Bonjour l'univers",
        'Say "hi"',
        'It\'s "quoted"',
        "back\\slash \\n",
        "{braces} $dollar %s",
        "Grüß dich",
        "你好",
        "👋 مرحبا",
    ],
)
def test_the_greeting_reaches_the_command_line_exactly(cli, install_project, tmp_path: Path, greeting: str) -> None:
    """Quotes, backslashes, braces and Unicode in TEXT are escaped into the source, so greeter prints TEXT."""
    install_project(scaffold("esperanto", greeting, tmp_path / "greeter-esperanto"))
    result = cli("--driver", "esperanto", "--name", "Ada")
    assert (result.returncode, result.stdout) == (0, f"{greeting} Ada\n"), result.stderr


@pytest.mark.parametrize(
    ("core_version", "wanted"), [("1.0.0", ">=1.0,<2"), ("1.4.2", ">=1.0,<2"), ("2.1.0", ">=2.0,<3")]
)
def test_requires_the_greeter_core_major_version_it_was_written_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, core_version: str, wanted: str
) -> None:
    """The greeter-core range is derived from the running core: from its major version up to the next one."""
    monkeypatch.setattr("greeter_core.scaffold.__version__", core_version)
    project = scaffold("esperanto", "Saluton", tmp_path / "greeter-esperanto")
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["dependencies"] == [f"greeter-core{wanted}"]


def test_registers_the_driver_and_a_test_extra_with_pytest(tmp_path: Path) -> None:
    """The entry point names the generated class; `pip install -e .[test]` brings pytest for the kit."""
    project = scaffold("old-norse", "Heill", tmp_path / "greeter-old-norse")
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == "greeter-old-norse"
    assert meta["entry-points"]["greeter.plugins"] == {"old-norse": "greeter_old_norse:OldNorseGreeter"}
    assert meta["optional-dependencies"]["test"] == ["pytest>=8"]


def test_the_generated_class_declares_the_current_plugin_api(
    greeter_env: dict[str, str], install_project, tmp_path: Path
) -> None:
    """The class sets api_version itself, to greeter_core.API_VERSION, rather than inheriting it."""
    install_project(scaffold("esperanto", "Saluton", tmp_path / "greeter-esperanto"))
    code = "import greeter_core; print(vars(type(greeter_core.load('esperanto').obj)).get('api_version'))"
    out = subprocess.run([sys.executable, "-c", code], env=greeter_env, capture_output=True, text=True, check=True)
    assert out.stdout == f"{greeter_core.API_VERSION}\n"


@pytest.mark.parametrize("command", [["--driver", "esperanto"], ["check", "esperanto"]])
def test_a_plugin_declaring_a_newer_api_is_refused_naming_both_versions(
    cli, install_project, tmp_path: Path, command: list[str]
) -> None:
    """A plugin bumped to API_VERSION + 1 exits 1; the message names plugin, distribution, versions and the fix."""
    project = scaffold("esperanto", "Saluton", tmp_path / "greeter-esperanto")
    source = project / "greeter_esperanto" / "__init__.py"
    current = f"api_version = {greeter_core.API_VERSION} "
    assert current in source.read_text(encoding="utf-8")
    source.write_text(
        source.read_text(encoding="utf-8").replace(current, f"api_version = {greeter_core.API_VERSION + 1} ")
    )
    install_project(project)
    result = cli(*command)
    assert result.returncode == 1
    assert (
        f"plugin 'esperanto' (greeter-esperanto 0.1.0) needs greeter plugin API {greeter_core.API_VERSION + 1}, "
        f"but this greeter-core provides API {greeter_core.API_VERSION}; upgrade greeter-core"
    ) in result.stdout + result.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, core_wheels: tuple[Path, Path]) -> tuple[Path, Path, dict[str, str]]:
    """A fresh venv with a greeter-core wheel and `greeter new-plugin esperanto --greeting Saluton` [test] in it."""
    root = tmp_path_factory.mktemp("new-plugin-venv")
    env = clean_env(XDG_CACHE_HOME=str(root / "cache"), UV_PYTHON_DOWNLOADS="never")
    project = scaffold("esperanto", "Saluton", root / "greeter-esperanto")
    python = core_venv(root / "venv", core_wheels, env=env)
    uv("pip", "install", "--quiet", "--python", python, f"{project}[test]", env=env)  # pytest: from the index
    return root / "venv" / "bin", project, env


@pytest.mark.packaging
def test_a_new_plugin_greets_from_a_fresh_venv(venv: tuple[Path, Path, dict[str, str]]) -> None:
    """Installed next to greeter-core alone, `greeter --driver esperanto` greets with the TEXT given."""
    bin_dir, project, env = venv
    result = subprocess.run(
        [bin_dir / "greeter", "--driver", "esperanto"], env=env, cwd=project.parent, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, "Saluton Universe\n"), result.stderr


@pytest.mark.packaging
def test_a_new_plugin_passes_its_own_tests_including_the_kit(venv: tuple[Path, Path, dict[str, str]]) -> None:
    """`pytest` in the new plugin's directory passes its tests and every conformance check, as written."""
    bin_dir, project, env = venv
    result = subprocess.run(
        [bin_dir / "pytest", "-p", "no:cacheprovider", "-v"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("TestConformance::") >= 14 and " passed" in result.stdout


@pytest.mark.packaging
def test_pytest_run_from_the_parent_keeps_its_cache_in_the_plugin(
    venv: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    """`pytest greeter-esperanto` from a parent with a pytest config of its own (a checkout) uses the plugin's.

    The plugin's directory is the rootdir: its settings apply, and pytest's
    cache lands in it, not in the parent.
    """
    bin_dir, project, env = venv
    # As the author's shell has it: under tox (TOX_ENV_DIR set), pytest keeps its cache in the tox env instead.
    env = {name: value for name, value in env.items() if not name.startswith("TOX_")}
    parent = tmp_path / "checkout"
    shutil.copytree(project, parent / project.name)
    (parent / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = ["-p", "no:gt_no_such_plugin"]\n')
    result = subprocess.run(
        [bin_dir / "pytest", project.name], env=env, cwd=parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rootdir: {parent / project.name}\n" in result.stdout
    assert sorted(path.name for path in parent.iterdir()) == [project.name, "pyproject.toml"]
    assert (parent / project.name / ".pytest_cache").is_dir()
