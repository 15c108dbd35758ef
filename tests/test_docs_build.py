"""The docs build lists every plugin but imports none that the allow-list or deny-list disables (tox -e docs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, PluginSpec, imports_of, marking

pytestmark = [pytest.mark.docs, pytest.mark.usefixtures("sphinx")]

ALLOWED = marking("allowed", "Allowed")
BARRED = marking("barred", "Barred")


@pytest.fixture
def sphinx() -> None:
    """Sphinx comes with the docs extra: `tox -e docs` runs these tests, the other envs deselect them."""
    pytest.importorskip("sphinx", reason="needs the docs extra (tox -e docs)")


def build(tmp_path: Path, env: dict[str, str], extension: str) -> str:
    """Build a one-page Sphinx project whose page is `.. list-plugins:: greeter.plugins`; return its HTML."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'docs')!r})\nextensions = [{extension!r}]\n"
    )
    (source / "index.rst").write_text("Plugins\n=======\n\n.. list-plugins:: greeter.plugins\n   :detailed:\n")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "-q", "-b", "html", str(source), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return (out / "index.html").read_text(encoding="utf-8")


def test_the_docs_list_a_disabled_plugin_without_importing_it(install, site: Path, greeter_env, tmp_path: Path) -> None:
    """With GREETER_DISABLE=barred, the page shows barred marked disabled; only the allowed plugin was imported."""
    install(ALLOWED, BARRED)
    page = build(tmp_path, {**greeter_env, "GREETER_DISABLE": "barred"}, "listplugins")
    assert imports_of(BARRED, site) == []
    assert len(imports_of(ALLOWED, site)) == 1
    assert 'id="barred"' in page and 'id="allowed"' in page
    assert "Disabled by <code" in page and "GREETER_DISABLE" in page


def test_stevedores_own_directive_would_import_it(install, site: Path, greeter_env, tmp_path: Path) -> None:
    """Why docs/listplugins.py exists: stevedore.sphinxext imports every plugin, the disabled one too."""
    install(ALLOWED, BARRED)
    build(tmp_path, {**greeter_env, "GREETER_DISABLE": "barred"}, "stevedore.sphinxext")
    assert len(imports_of(BARRED, site)) == 1


def test_the_docs_build_does_not_print_mysts_whole_config(tmp_path: Path) -> None:
    """A build with the real docs/conf.py shows Sphinx's progress but not MyST's one-line dump of its settings."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "index.md").write_text("# Hello\n")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "-b", "html", "-c", REPO / "docs", source, tmp_path / "html"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "build succeeded" in result.stdout
    assert "MdParserConfig" not in result.stdout + result.stderr


DOCUMENTED = PluginSpec(
    "documented", code=marking("documented", "Doc").code + '\nPlugin.__doc__ = "Greets as its docstring says."\n'
)


def test_the_plugins_page_is_what_it_says_it_is(install, site: Path, greeter_env, tmp_path: Path) -> None:
    """docs/plugins.rst, built as written: a section per name `greeter list` shows, each allowed plugin's class
    docstring, from greeter's list-plugins directive (stevedore's rendering), the disabled plugin not imported."""
    install(DOCUMENTED, BARRED)
    env = {**greeter_env, "GREETER_DISABLE": "barred"}
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy2(REPO / "docs" / "plugins.rst", source / "index.rst")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "-q", "-b", "html", "-c", REPO / "docs", source, tmp_path / "out"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    listed = subprocess.run(
        [sys.executable, "-m", "greeter_core", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    names = sorted(plugin["name"] for plugin in json.loads(listed.stdout))
    assert names == ["barred", "documented"]
    assert sorted(re.findall(r'<section id="([^"]+)">\n<h2>', page)) == names
    assert "Greets as its docstring says." in page
    assert imports_of(BARRED, site) == [] and len(imports_of(DOCUMENTED, site)) == 1
    assert "listplugins" in (REPO / "docs" / "conf.py").read_text(encoding="utf-8")
