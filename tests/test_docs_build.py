"""The docs build lists every plugin but imports none that the allow-list or deny-list disables (tox -e docs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from basics import REPO, clean_env
from plugins import PluginFactory, PluginSpec, imports_of, marking

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


DOCUMENTED = PluginSpec(
    "documented", code=marking("documented", "Doc").code + '\nPlugin.__doc__ = "Greets as its docstring says."\n'
)


class Built(NamedTuple):
    """docs/plugins.rst built with the real docs/conf.py over two fixture plugins, one disabled."""

    page: str
    output: str
    site: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def plugins_page(factory: PluginFactory, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One build for the tests below: Sphinx's own output (not quieted with -q) and the page."""
    pytest.importorskip("sphinx", reason="needs the docs extra (tox -e docs)")
    root = tmp_path_factory.mktemp("plugins-page")
    for spec in (DOCUMENTED, BARRED):
        factory.install(spec, root / "site")
    env = clean_env(PYTHONPATH=str(root / "site"), XDG_CACHE_HOME=str(root / "cache"), GREETER_DISABLE="barred")
    (root / "src").mkdir()
    shutil.copy2(REPO / "docs" / "plugins.rst", root / "src" / "index.rst")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "-b", "html", "-c", REPO / "docs", root / "src", root / "out"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    page = (root / "out" / "index.html").read_text(encoding="utf-8")
    return Built(page, result.stdout + result.stderr, root / "site", env)


def test_the_docs_build_does_not_print_mysts_whole_config(plugins_page: Built) -> None:
    """A build with the real docs/conf.py shows Sphinx's progress but not MyST's one-line dump of its settings."""
    assert "build succeeded" in plugins_page.output
    assert "MdParserConfig" not in plugins_page.output


def test_the_plugins_page_is_what_it_says_it_is(plugins_page: Built) -> None:
    """docs/plugins.rst, built as written: a section per name `greeter list` shows, each allowed plugin's class
    docstring, from greeter's list-plugins directive (stevedore's rendering), the disabled plugin not imported."""
    listed = subprocess.run(
        [sys.executable, "-m", "greeter_core", "list", "--json"],
        env=plugins_page.env,
        capture_output=True,
        text=True,
        check=True,
    )
    names = sorted(plugin["name"] for plugin in json.loads(listed.stdout))
    assert {"barred", "documented"} <= set(names)  # and the shipped plugins, which the docs env installs
    assert sorted(re.findall(r'<section id="([^"]+)">\n<h2>', plugins_page.page)) == names
    assert "Greets as its docstring says." in plugins_page.page
    assert imports_of(BARRED, plugins_page.site) == [] and len(imports_of(DOCUMENTED, plugins_page.site)) == 1
    assert "listplugins" in (REPO / "docs" / "conf.py").read_text(encoding="utf-8")
