"""Users install plugins by name from a real PyPI-compatible index; every dist is fit to publish there."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from basics import REPO, clean_env
from docblocks import copy_checkout
from uv import find_uv_bin
from wheels import WheelBuilder, uv, wheel_of_installed

pytestmark = pytest.mark.packaging

PLUGINS = sorted(p.name for p in (REPO / "plugin_packages").iterdir() if (p / "pyproject.toml").is_file())


@pytest.fixture(scope="module")
def dists(
    tmp_path_factory: pytest.TempPathFactory, builder: WheelBuilder, core_wheels: tuple[Path, Path]
) -> list[Path]:
    """The sdist and wheel of greeter-core and of each shipped plugin.

    The wheels are the session's (built once per tox run, shared with the other tests); the
    sdists are built here, once per session for all of pytest-xdist's workers, from a copy.
    """
    base = tmp_path_factory.getbasetemp()
    scratch = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # shared by xdist's workers
    out = scratch / "index-sdists"
    with open(scratch / "index-sdists.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_dir():
            checkout = copy_checkout(scratch / "index-checkout")
            command: list[str | Path] = [find_uv_bin(), "build", "--quiet", "--sdist", "--no-build-isolation"]
            command += ["--python", sys.executable, "--out-dir", scratch / "index-sdists.tmp"]
            projects = [checkout, *(checkout / "plugin_packages" / name for name in PLUGINS)]
            # at once: each build is mostly an interpreter starting and importing setuptools
            env = clean_env(UV_NO_CONFIG="1")
            builds = [subprocess.Popen([*command, p], env=env, stderr=subprocess.PIPE, text=True) for p in projects]
            errors = [build.communicate()[1] for build in builds]
            assert all(build.returncode == 0 for build in builds), errors
            (scratch / "index-sdists.tmp").rename(out)
    wheels = [core_wheels[0], *(builder.wheel(REPO / "plugin_packages" / name) for name in PLUGINS)]
    return sorted(out.glob("*.tar.gz")) + sorted(wheels)


#: pypiserver's app served on an ephemeral port of 127.0.0.1; prints the port. Its own
#: process: pypiserver imports `cgi`, whose DeprecationWarning this suite turns into an error.
_SERVE = """\
import sys, wsgiref.simple_server as simple
import pypiserver

class Quiet(simple.WSGIRequestHandler):
    def log_message(self, *args):
        pass

app = pypiserver.app(roots=[sys.argv[1]], authenticate=[], password_file=".")
server = simple.make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real pypiserver on 127.0.0.1 (uploads allowed, no auth); its simple index URL."""
    packages = tmp_path_factory.mktemp("index-packages")
    server = subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _SERVE, packages],
        stdout=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    assert server.stdout is not None
    try:
        yield f"http://127.0.0.1:{int(server.stdout.readline())}"
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def test_every_dist_passes_twine_check_strict(dists: list[Path]) -> None:
    """Each sdist and wheel (core and plugins) renders on an index page: `twine check --strict`."""
    assert len(dists) == 2 * (1 + len(PLUGINS))
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *dists], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == len(dists), done.stdout


@pytest.mark.parametrize("distribution", PLUGINS)
def test_each_plugin_dist_reads_well_on_an_index_page(dists: list[Path], distribution: str) -> None:
    """A plugin's wheel and sdist carry its license, classifiers and author; its page shows install by name."""
    prefix = distribution.replace("-", "_")
    [wheel] = [d for d in dists if d.name.startswith(f"{prefix}-") and d.suffix == ".whl"]
    [sdist] = [d for d in dists if d.name.startswith(f"{prefix}-") and d.name.endswith(".tar.gz")]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/LICENSE") for n in archive.getnames())
    assert "Classifier: Programming Language :: Python :: 3.13" in text
    assert re.search(r"^Author: .+", text, re.M), text
    assert "License-Expression: Apache-2.0" in text
    assert "../" not in text and "](./" not in text, "a relative link is broken on an index page"
    assert f"pip install {distribution}" in text


def test_pip_installs_a_plugin_by_name_from_the_index_and_greets(
    dists: list[Path], core_wheels: tuple[Path, Path], index: str, tmp_path: Path
) -> None:
    """The design's own command, `pip install greeter-chinese`, against a real index and no other."""
    stevedore = core_wheels[1]
    upload = subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{index}/", "-u", "greeter", "-p", "unused", *dists, stevedore],
        capture_output=True, text=True, env=clean_env(TWINE_NON_INTERACTIVE="1"),
    )  # fmt: skip
    assert upload.returncode == 0, upload.stdout + upload.stderr

    venv = tmp_path / "user"  # with pip in it, as `python3 -m venv` makes one (uv's is quicker)
    uv("venv", "--quiet", "--seed", "--python", sys.executable, venv, env=clean_env(UV_PYTHON_DOWNLOADS="never"))
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "TOX"))} | {
        "PIP_INDEX_URL": f"{index}/simple/",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(["pip", "install", "greeter-chinese"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Successfully installed .*greeter-chinese-1\.0\.0", done.stdout), done.stdout
    greeted = subprocess.run(["greeter", "--driver", "chinese"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert (greeted.returncode, greeted.stdout) == (0, "你好宇宙\n"), greeted.stderr

    # The install hint names this index, and its command, run as shown, installs the plugin from it.
    missing = subprocess.run(["greeter", "--driver", "english"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2
    hint = re.search(
        r"to add it: (pip install greeter-english) \(from your index (\S+), PIP_INDEX_URL\)", missing.stderr
    )
    assert hint and hint[2] == f"{index}/simple/", missing.stderr
    installed = subprocess.run(hint[1].split(), env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    greeted = subprocess.run(["greeter", "--driver", "english"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert greeted.stdout == "Hello Universe\n", greeted.stderr


def test_the_metrics_extra_installs_in_a_fresh_venv_as_the_docs_say(
    core_wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    """docs/operating.md: greeter-core from a wheelhouse first; then `pip install 'greeter-core[metrics]'` adds
    prometheus_client alone, asking no index for greeter-core (here pip's index holds prometheus_client only)."""
    page = " ".join((REPO / "docs" / "operating.md").read_text(encoding="utf-8").split())
    first, then = "pip install --no-index --find-links DIR greeter-core", "pip install 'greeter-core[metrics]'"
    assert f"`{first}`" in page and f"`{then}`" in page
    wheelhouse, pypi = tmp_path / "wheelhouse", tmp_path / "pypi"
    wheelhouse.mkdir()
    for wheel in core_wheels:
        (wheelhouse / wheel.name).symlink_to(wheel)
    wheel_of_installed("prometheus_client", pypi)  # the copy under test, offline
    venv = tmp_path / "fresh"
    uv("venv", "--quiet", "--seed", "--python", sys.executable, venv, env=clean_env(UV_PYTHON_DOWNLOADS="never"))
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))} | {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(pypi)}
    for command, extra in ((first.replace("DIR", str(wheelhouse)), {}), (then, offline)):
        done = subprocess.run(["bash", "-c", command], env=env | extra, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stdout + done.stderr)
    assert re.search(r"^Successfully installed prometheus[_-]client-\S+$", done.stdout, re.M), done.stdout
    probe = "import greeter_core.metrics, greeter_core; print(greeter_core.__file__)"
    python = venv / "bin" / "python"
    shown = subprocess.run([python, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.startswith(str(venv)), shown.stderr
