"""A plugin author's tox matrix: what `greeter new-plugin` writes runs as written; the shipped plugins use it too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from basics import REPO
from docblocks import block_after
from wheels import CORE_SOURCES, WheelBuilder

from greeter_core.scaffold import scaffold, tox_ini

SHIPPED = sorted(p.name for p in (REPO / "plugin_packages").iterdir() if (p / "pyproject.toml").is_file())


@pytest.mark.parametrize("distribution", SHIPPED)
def test_each_shipped_plugin_has_the_scaffolds_tox_ini(distribution: str) -> None:
    """A shipped plugin's tox.ini is exactly what the scaffold's template renders for it: one source."""
    shipped = (REPO / "plugin_packages" / distribution / "tox.ini").read_text(encoding="utf-8")
    assert shipped == tox_ini(distribution)


def test_the_matrix_names_both_axes_and_lint(tmp_path: Path) -> None:
    """3.11-3.13 times lowest/newest greeter-core, plus lint; the index comes from the environment only."""
    text = (scaffold("esperanto", "Saluton", tmp_path / "p") / "tox.ini").read_text(encoding="utf-8")
    assert "env_list = py{311,312,313}-core-{lowest,newest}, lint\n" in text
    assert "core-lowest: lowest-direct" in text
    assert not re.search(r"^\s*(index_url|find_links|UV_\w+\s*=|PIP_\w+\s*=)", text, re.M), "hard-coded index"


def _core_release(builder: WheelBuilder, scratch: Path, version: str) -> Path:
    """A wheel of greeter-core from this checkout, as if released as *version*."""
    source = scratch / f"core-{version}"
    source.mkdir(parents=True)
    for name in CORE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    init = source / "greeter_core" / "__init__.py"
    text, count = re.subn(r'^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M)
    assert count == 1
    init.write_text(text)
    return builder.wheel(source)


def _interpreters_path() -> str:
    """PATH with CPython 3.11-3.13 on it, as a plugin author has them (here: pyenv's, in CI)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [str(path) for minor in (11, 12, 13) for path in root.glob(f"versions/3.{minor}.*/bin")]
    return os.pathsep.join([*found, os.environ["PATH"]])


def _author_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A shell as a plugin author has it: none of this run's tox, venv, uv or pip settings leak in."""
    leaked = ("TOX", "VIRTUAL_ENV", "UV_", "PIP_", "PYTHON", "GREETER_", "_TOX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(leaked)}
    if "UV_PYTHON_DOWNLOADS" in os.environ:  # CI: no route to uv's interpreter downloads
        env["UV_PYTHON_DOWNLOADS"] = os.environ["UV_PYTHON_DOWNLOADS"]
    env.update(PATH=_interpreters_path(), UV_CACHE_DIR=str(tmp_path / "uv-cache"), **extra)
    return env


@pytest.mark.packaging
def test_a_scaffolded_plugins_tox_matrix_passes_as_its_author_runs_it(
    builder: WheelBuilder, core_wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    """`tox` in a new plugin, outside this checkout, with greeter-core 1.0 and a newer one in a wheelhouse.

    One env of each axis: the lowest greeter-core on 3.13, the newest on 3.11, and lint; the
    lowest env really gets 1.0 and the newest the newer release.
    """
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    lowest = core_wheels[0]  # the session's: built once per tox run
    newer = _core_release(builder, tmp_path / "src", "1.99.0")
    for wheel in (lowest, newer):
        shutil.copy2(wheel, wheelhouse)
    plugin = scaffold("esperanto", "Saluton", tmp_path / "author" / "greeter-esperanto", universe="Universo")
    assert not plugin.resolve().is_relative_to(REPO)
    envs = _guide_envs()
    done = subprocess.run(
        [sys.executable, "-m", "tox", "run-parallel", "-p", "2", "-e", ",".join(envs)],
        cwd=plugin,
        env=_author_env(tmp_path, UV_FIND_LINKS=str(wheelhouse)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for env in envs:
        assert re.search(rf"^  {env}: OK", done.stdout, re.M), done.stdout
    assert _core_version(plugin / ".tox" / "py313-core-lowest") == lowest.name.split("-")[1]
    assert _core_version(plugin / ".tox" / "py311-core-newest") == "1.99.0"


def _guide_commands() -> list[str]:
    guide = REPO / "docs" / "plugin-authors.md"
    return block_after(guide, "## Testing across Pythons and greeter-core versions", "sh").commands()


def _guide_envs() -> list[str]:
    """The envs of the guide's one-of-each-axis command, the ones the matrix test runs."""
    [envs] = [match[1] for command in _guide_commands() if (match := re.search(r"tox -e (\S+)", command))]
    return envs.split(",")


def test_the_guides_tox_commands_are_the_ones_the_matrix_test_runs() -> None:
    """The guide installs tox as the README does, names only the scaffold's envs and variables tox passes on."""
    install, *runs = _guide_commands()
    readme = block_after(REPO / "README.md", "Run the whole test matrix").text.strip()
    assert install == readme.removesuffix(" && .venv-tox/bin/tox")
    text = tox_ini("greeter-esperanto")
    pass_env = text.split("pass_env =\n", 1)[1].split("\ncommands", 1)[0].split()
    matrix = {f"py{py}-core-{core}" for py in (311, 312, 313) for core in ("lowest", "newest")} | {"lint"}
    assert "env_list = py{311,312,313}-core-{lowest,newest}, lint\n" in text
    assert set(_guide_envs()) <= matrix and {env.split("-")[-1] for env in _guide_envs() if "core" in env} == {
        "lowest",
        "newest",
    }
    for command in runs:
        variable, _, rest = command.partition("=")
        assert variable in pass_env and rest.split()[1] == ".venv-tox/bin/tox", command


def _core_version(env_dir: Path) -> str:
    [dist_info] = env_dir.glob("lib/python3.*/site-packages/greeter_core-*.dist-info")
    return dist_info.name.removeprefix("greeter_core-").removesuffix(".dist-info")
