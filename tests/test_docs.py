"""The README and the docs are executable: every command they show runs here, as written.

A ``console`` block is a transcript: each ``$ command`` runs in bash with the
shipped plugins installed, and its output (stdout and stderr together) must
match the lines shown, a line ``...`` standing for any lines. An HTML comment
just before a block says how else it runs:

- ``<!-- doc-test: fixtures=NAME,... -->``: with these fixture plugins installed too;
- ``<!-- doc-test: session [fixtures=...] -->``: the first command is a
  ``greeter run --control ...:8080`` left running, the others talk to it (on a
  free port instead of 8080);
- ``<!-- doc-test: by FILE::TEST -->``: a test of its own runs it, as written;
- ``<!-- doc-test: tox -->``: tox commands, which cannot run inside tox: each
  must name an environment that tox.ini defines.

A test below fails if any command shown has no test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from basics import REPO, WAIT, clean_env
from docblocks import Block, block_after, blocks, copy_checkout, matches, sh
from plugins import PluginFactory, PluginSpec, greet_body, greeter_code
from running import Lines
from wheels import WheelBuilder, core_venv, uv

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: The fixture plugins the docs' examples need, by the name a ``fixtures=`` note gives.
DOC_FIXTURES = {
    "broken": PluginSpec("broken", code="import numpy\n"),
    "exit": PluginSpec("exit", code=greet_body("os._exit(1)", "import os")),
    "leaky": PluginSpec(
        "leaky", code=greet_body("hoard = []\nwhile True:\n    hoard.append(bytearray(10 * 1024 * 1024))")
    ),
    "tampered-esperanto": PluginSpec(
        "esperanto", code=greeter_code("Saluton"), version="1.0.0", module_name="greeter_esperanto"
    ),
    "esperanto-api2": PluginSpec(
        "esperanto",
        code=greeter_code("Saluton") + "Plugin.api_version = 2\n",
        version="0.1.0",
        module_name="greeter_esperanto",
    ),
}


ALL = [block for page in PAGES for block in blocks(page)]
SHELL = [block for block in ALL if block.lang in ("console", "sh")]
TRANSCRIPTS = [b for b in SHELL if b.lang == "console" and (not b.note or b.note.startswith("fixtures="))]
SESSIONS = [b for b in SHELL if b.note.startswith("session")]


def shell_env(tmp_path: Path, site: Path | None = None, bin_dir: Path | None = None) -> dict[str, str]:
    """A user's shell: `greeter` and `python3` of this environment (or *bin_dir*) first on PATH."""
    bin_dir = bin_dir or Path(sys.executable).parent
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # The docs show the install hint of a user who configured no index or wheelhouse (this run's may have one).
    for variable in (
        "PIP_INDEX_URL",
        "PIP_FIND_LINKS",
        "UV_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_INDEX",
        "UV_FIND_LINKS",
    ):
        env.pop(variable, None)
    env["COLUMNS"] = "200"
    if site is not None:
        env["PYTHONPATH"] = str(site)
    if bin_dir != Path(sys.executable).parent:
        env["VIRTUAL_ENV"] = str(bin_dir.parent)  # as `. .venv/bin/activate` leaves it
    return env


def install_fixtures(names: list[str], factory: PluginFactory, site: Path) -> None:
    for name in names:
        spec = DOC_FIXTURES[name]
        factory.install(spec, site)
        if name.startswith("tampered-"):
            module = site / spec.module / "__init__.py"
            module.write_text(module.read_text(encoding="utf-8") + "# changed after install\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- every command has a test ------------------------------------------------------------------


def test_every_command_in_the_readme_and_the_docs_runs_in_a_test() -> None:
    """Each console or sh block runs as a transcript or a session, or names the test that runs it, or is tox."""
    tox_ini = (REPO / "tox.ini").read_text(encoding="utf-8")
    unclaimed = []
    for block in SHELL:
        assert block.commands(), block.id
        if block in TRANSCRIPTS or block in SESSIONS:
            assert set(block.option("fixtures")) <= set(DOC_FIXTURES), block.id
        elif block.note.startswith("by "):
            file, _, test = block.note[3:].partition("::")
            assert f"def {test}(" in (REPO / "tests" / file).read_text(encoding="utf-8"), block.id
        elif block.note == "tox":
            for command in block.commands():
                env = re.fullmatch(r"\.venv-tox/bin/tox -e (\S+)( -- .*)?", command)
                assert env and (f"[testenv:{env[1]}]" in tox_ini or env[1] in tox_ini.split("env_list")[1]), command
        else:
            unclaimed.append(block.id)
    assert not unclaimed, f"blocks whose commands no test runs: {unclaimed}"


# -- transcripts and sessions --------------------------------------------------------------------


@pytest.mark.shipped
@pytest.mark.parametrize("block", TRANSCRIPTS, ids=lambda block: block.id)
def test_a_console_transcript_prints_what_the_docs_show(
    block: Block, factory: PluginFactory, site: Path, tmp_path: Path
) -> None:
    """Each `$ command` of the block prints the lines shown under it, and fails only where it shows an error."""
    install_fixtures(block.option("fixtures"), factory, site)
    env = shell_env(tmp_path, site)
    for command, shown in block.transcript():
        done = sh(command, env, tmp_path)
        assert matches(shown, done.stdout.splitlines()), (command, done.stdout)
        failing = any("error:" in line for line in shown)
        assert (done.returncode != 0) == failing, (command, done.returncode, done.stdout)


class Session:
    """A `greeter run` started by a documented command, with its output read as it comes."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.stdout = Lines(self.process.stdout)  # type: ignore[arg-type]
        self.stderr = Lines(self.process.stderr)  # type: ignore[arg-type]

    def greeted(self, text: str, more: int = 1) -> None:
        start = self.stdout.lines.count(text)
        self.stdout.wait_for(lambda lines: lines.count(text) >= start + more)

    def interrupt(self) -> int:
        """Ctrl-C, as the docs end a session; the exit status."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(WAIT)
        self.stdout.join()
        self.stderr.join()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


@pytest.fixture
def session() -> Iterator[list[Session]]:
    """Sessions a test starts; whatever still runs at the end is killed."""
    started: list[Session] = []
    yield started
    for running in started:
        running.kill()


@pytest.mark.shipped
@pytest.mark.parametrize("block", SESSIONS, ids=lambda block: block.id)
def test_a_control_session_runs_as_written(
    block: Block, factory: PluginFactory, site: Path, tmp_path: Path, session: list[Session]
) -> None:
    """`greeter run --control ...` starts, each request gets the reply shown, and Ctrl-C ends it with exit 0."""
    install_fixtures(block.option("fixtures"), factory, site)
    env = shell_env(tmp_path, site)
    port = str(free_port())
    (first, _), *requests = [(command.replace("8080", port), shown) for command, shown in block.transcript()]
    session.append(running := Session(first, env, tmp_path))
    running.stderr.search(rf"control endpoint on http://\S+:{port}")
    for command, shown in requests:
        done = sh(command, env, tmp_path, merged=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if shown:
            assert matches(shown, done.stdout.splitlines()), (command, done.stdout)
    assert running.interrupt() == 0, running.stderr.text
    assert "greeter run: stopped after" in running.stderr.lines[-1]


# -- blocks with a test of their own --------------------------------------------------------------


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """`.ci/run` calls the very command the README gives for the test matrix."""
    command = block_after(REPO / "README.md", "Run the whole test matrix").text.strip()
    assert command in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()


@pytest.mark.packaging
def test_the_quick_start_installs_and_greets(tmp_path: Path) -> None:
    """On a clean checkout, the Quick start's first command installs everything and greets; the venv activates."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = shell_env(tmp_path)
    install = block_after(REPO / "README.md", "## Quick start").text.strip()
    done = sh(install, env, checkout)
    assert done.returncode == 0 and done.stdout.endswith("\nHello Universe\n"), done.stdout[-3000:]
    activate = block_after(REPO / "README.md", "assume the first venv is active").text.strip()
    greeting = sh(f"{activate} && greeter --driver chinese && greeter list", env, checkout)
    assert greeting.stdout.splitlines()[0] == "你好宇宙", greeting.stdout
    assert [line.split()[0] for line in greeting.stdout.splitlines()[2:]] == ["chinese", "english", "german", "spanish"]


@pytest.fixture
def shipped_venv(tmp_path: Path, builder: WheelBuilder, core_wheels: tuple[Path, Path]) -> Path:
    """A venv with pip, greeter-core and the four shipped plugins, built from this checkout: its bin directory."""
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    plugins = [
        builder.wheel(Path(shutil.copytree(source, tmp_path / "plugins" / source.name, ignore=skip)))
        for source in sorted((REPO / "plugin_packages").glob("greeter-*"))
    ]
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never")
    return core_venv(tmp_path / ".venv", core_wheels, *plugins, env=env, seed=True).parent


@pytest.mark.packaging
def test_the_go_posts_session_runs_as_written(shipped_venv: Path, tmp_path: Path, session: list[Session]) -> None:
    """The README's replay of the Go post, command by command: swaps, a panicking plugin, an uninstalled one."""
    readme = REPO / "README.md"
    project = tmp_path / "greeter-panic"
    (project / "greeter_panic").mkdir(parents=True)
    (project / "pyproject.toml").write_text(block_after(readme, "`greeter-panic/pyproject.toml`").text)
    (project / "greeter_panic" / "__init__.py").write_text(
        block_after(readme, "`greeter-panic/greeter_panic/__init__.py`").text
    )
    env = shell_env(tmp_path, bin_dir=shipped_venv)
    port = str(free_port())

    def run(command: str) -> str:
        """Run one command of the session, from the second terminal; return its output."""
        done = sh(command.replace("8080", port), env, tmp_path, merged=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    def commands(marker: str) -> list[str]:
        return block_after(readme, marker, "console").commands()

    [start] = commands("In a first terminal")
    session.append(greeter := Session(start.replace("8080", port), env, tmp_path))
    greeter.greeted("你好宇宙")
    # Typed by a person: each command once the one before has shown its effect.
    [to_english] = commands("In a second terminal")
    assert [json.loads(run(to_english))[key]["name"] for key in ("old", "new")] == ["chinese", "english"]
    greeter.greeted("Hello Universe")
    install, to_panic, to_chinese = commands("Install the panicking plugin")
    run(install)
    assert json.loads(run(to_panic))["new"]["name"] == "panic"
    greeter.stderr.search(r"ERROR greeter_core\.runtime: plugin 'panic' \(greeter-panic 1\.0\) failed: RuntimeError")
    assert json.loads(run(to_chinese))["new"]["name"] == "chinese"
    greeter.greeted("你好宇宙")
    uninstall, away, back, status = commands("Delete the running plugin")
    run(uninstall)
    greeter.greeted("你好宇宙")  # its code is loaded: it greets on
    assert json.loads(run(away))["new"]["name"] == "english"
    refused = json.loads(run(back))
    assert (refused["status"], refused["installed"], refused["current"]) == (
        404,
        ["english", "german", "panic", "spanish"],
        "english",
    )
    reply, shown = json.loads(run(status)), block_after(readme, "The last two replies").text.splitlines()
    assert (reply["driver"], reply["swaps"]) == ("english", 4)
    assert same_shape(documented_json(shown[0]), refused) and same_shape(documented_json(shown[1]), reply), reply
    for line in block_after(readme, "logs the refused switch").text.splitlines()[:2]:
        greeter.stderr.search(shown_line(line))
    greeter.greeted("Hello Universe")
    assert greeter.interrupt() == 0
    assert re.fullmatch(
        r"greeter run: stopped after \d+ greetings, \d+ errors?, 4 swaps, 0 reloads; last driver: english",
        greeter.stderr.lines[-1],
    )
    # The undo step leaves the venv as the Quick start did: the user guide's first example then runs as shown.
    shutil.copytree(REPO / "plugin_packages" / "greeter-chinese", tmp_path / "plugin_packages" / "greeter-chinese",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))  # fmt: skip
    [undo] = block_after(readme, "put the venv back as the Quick start left it").commands()
    run(undo)
    for command, shown_lines in block_after(REPO / "docs" / "user-guide.md", "## Using the CLI").transcript():
        done = sh(command, env, tmp_path)
        assert done.returncode == 0 and matches(shown_lines, done.stdout.splitlines()), (command, done.stdout)


def documented_json(line: str) -> Any:
    """A JSON reply as the docs show it: ``, ...}`` and ``{...}`` stand for keys left out."""
    return json.loads(line.replace(", ...}", ', "...": null}').replace("{...}", '{"...": null}'))


def shown_line(line: str) -> str:
    """A regular expression for a line the docs show, ``...`` standing for any text."""
    return ".*".join(map(re.escape, line.split("...")))


def same_shape(shown: Any, real: Any) -> bool:
    """Whether a reply has the documented shape: its keys in that order (``...``: more may come), the
    documented strings (``...`` in one: any text) and other constants, and numbers where numbers are shown."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return False
        keys = [key for key in shown if key != "..."]
        found = [key for key in real if key in shown]
        if found != keys or ("..." not in shown and list(real) != keys):
            return False
        return all(same_shape(shown[key], real[key]) for key in keys)
    if isinstance(shown, str):
        return isinstance(real, str) and re.fullmatch(shown_line(shown), real, re.S) is not None
    if isinstance(shown, (int, float)) and not isinstance(shown, bool):
        return isinstance(real, (int, float)) and not isinstance(real, bool)
    return bool(shown == real)


@pytest.mark.shipped
def test_the_sighup_example_switches_the_running_greeter(tmp_path: Path) -> None:
    """Typed line by line into one shell: greeter starts in the background in Chinese; SIGHUP switches it to English."""
    lines = block_after(REPO / "docs" / "user-guide.md", "Start greeter in the background").commands()
    shell = subprocess.Popen(
        ["bash"],
        env=shell_env(tmp_path),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    out, err = Lines(shell.stdout), Lines(shell.stderr)  # type: ignore[arg-type]
    assert shell.stdin is not None
    try:
        for line in lines:
            shell.stdin.write(line + "\n")
            shell.stdin.flush()
            if "greeter run" in line:  # as a user would: signal it once it greets
                out.wait_for(lambda seen: "你好宇宙" in seen)
        out.wait_for(lambda seen: "Hello Universe" in seen)
        err.search(r"INFO greeter_core\.runtime: switched driver: chinese -> english")
        shell.stdin.write("kill -INT $!; wait $!; echo exit=$?\n")
        shell.stdin.close()
        out.wait_for(lambda seen: "exit=0" in seen)
    finally:
        shell.kill()
        shell.wait(WAIT)


@pytest.mark.packaging
def test_the_plugin_written_by_hand_installs_and_greets(
    tmp_path: Path, core_wheels: tuple[Path, Path], session: list[Session]
) -> None:
    """The plugin-author guide's Esperanto plugin, copied as written, installs with pip and greets as shown."""
    guide = REPO / "docs" / "plugin-authors.md"
    project = tmp_path / "greeter-esperanto"
    (project / "greeter_esperanto").mkdir(parents=True)
    (project / "pyproject.toml").write_text(block_after(guide, "`pyproject.toml`:").text, encoding="utf-8")
    (project / "greeter_esperanto" / "__init__.py").write_text(
        block_after(guide, "`greeter_esperanto/__init__.py`:").text, encoding="utf-8"
    )
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never")
    bin_dir = core_venv(tmp_path / "venv", core_wheels, env=env, seed=True).parent
    shell = shell_env(tmp_path, bin_dir=bin_dir)
    for command, shown in block_after(guide, "Install it into the venv that holds").transcript():
        done = sh(command, shell, tmp_path)
        assert done.returncode == 0, (command, done.stdout)
        if shown:
            assert matches(shown, done.stdout.splitlines()), (command, done.stdout)
    options = sh("greeter --driver esperanto --option punctuation=! --name Zamenhof", shell, tmp_path)
    assert options.stdout == "Saluton Zamenhof!\n"


@pytest.mark.packaging
def test_the_three_plugin_author_commands_make_a_tested_installable_plugin(
    tmp_path: Path, core_wheels: tuple[Path, Path]
) -> None:
    """The guide's three commands, run as written in a venv with greeter, scaffold, install and pass; it greets."""
    guide = REPO / "docs" / "plugin-authors.md"
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_PYTHON_DOWNLOADS="never")
    bin_dir = core_venv(tmp_path / "venv", core_wheels, env=env, seed=True).parent
    shell = shell_env(tmp_path, bin_dir=bin_dir)
    commands = block_after(guide, "## A new plugin in three commands", "sh").commands()
    assert len(commands) == 3
    for command in commands:
        done = sh(command, shell, tmp_path, timeout=300)
        assert done.returncode == 0, (command, done.stdout)
    for command, shown in block_after(guide, "## A new plugin in three commands", "console").transcript():
        assert sh(command, shell, tmp_path).stdout.splitlines() == shown, command


def test_the_development_commands_are_the_ones_tox_runs() -> None:
    """The guide's commands for testing without tox install what tox installs and run pytest as tox does."""
    install, deps, pytest_line = block_after(REPO / "docs" / "development.md", "Without tox", "sh").commands()
    tox_ini = (REPO / "tox.ini").read_text(encoding="utf-8")
    assert install == "python3 -m venv .venv-dev"
    assert deps == '.venv-dev/bin/pip install -e ".[test,metrics]" ./plugin_packages/greeter-*'
    assert "extras =\n    test\n    metrics\n" in tox_ini and "{[plugins]install} {[plugins]all}" in tox_ini
    assert pytest_line.removeprefix(".venv-dev/bin/") in re.sub(r"\{posargs:([^}]*)\}", r"\1", tox_ini)


def test_the_cleanup_command_removes_what_greeter_left_and_nothing_else(tmp_path: Path) -> None:
    """In a used git checkout the README's clean-up leaves nothing that `git status --ignored` shows; sources stay."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = clean_env(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    commit = "git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm t"
    assert sh(commit, env, checkout).returncode == 0
    # What the README's commands, tox (its envs, ruff, mypy, pytest, hypothesis, Sphinx), the bench,
    # an editable install and `pip install ./greeter-panic` leave in the checkout.
    left = [
        ".venv/bin/python", ".venv-tox/bin/tox", ".venv-dev/bin/pip", ".tox/py311/bin/python", "build/lib/x.py",
        "dist/greeter_core-1.0.0.tar.gz", "greeter_core.egg-info/PKG-INFO",
        "plugin_packages/greeter-english/build/lib/x.py", "plugin_packages/greeter-english/dist/x.whl",
        "plugin_packages/greeter-english/greeter_english.egg-info/PKG-INFO",
        "greeter-panic/build/lib/greeter_panic/__init__.py", "greeter-panic/greeter_panic.egg-info/PKG-INFO",
        "greeter_core/__pycache__/api.cpython-311.pyc", "docs/__pycache__/listplugins.cpython-311.pyc",
        "docs/_build/html/index.html", "docs/generated/routes.md", "wheelhouse/x.whl", ".bench/run-1/x.json",
        ".hypothesis/examples/x", ".pytest_cache/.gitignore", ".mypy_cache/.gitignore", ".ruff_cache/.gitignore",
    ]  # fmt: skip
    own = ["greeter-panic/pyproject.toml", "greeter-panic/greeter_panic/__init__.py"]
    for path in [*left, *own]:
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        # ruff, mypy and pytest make their caches ignored by a .gitignore of their own
        (checkout / path).write_text("*\n" if path.endswith(".gitignore") else "left")

    def status() -> list[str]:
        return sh("git status --ignored --porcelain --untracked-files=all", env, checkout).stdout.splitlines()

    before = status()
    assert all(any(line.startswith("!! ") and path.startswith(line[3:]) for line in before) for path in left), before
    [*command] = block_after(REPO / "README.md", "pip's builds of `greeter-panic/` too").commands()
    assert sh(" && ".join(command), env, checkout).returncode == 0
    after = status()
    assert [line for line in after if line.startswith("!!")] == []
    assert after == [line for line in before if not line.startswith("!!")]
    assert sorted(line[3:] for line in after) == sorted(own)


# -- what the docs say about packaging --------------------------------------------------------------


@pytest.mark.packaging
def test_the_core_wheel_carries_its_single_sourced_version_and_py_typed(core_wheels: tuple[Path, Path]) -> None:
    """The wheel built from this checkout has greeter_core/py.typed and the version of greeter_core.__version__."""
    import greeter_core

    core, _ = core_wheels
    assert core.name == f"greeter_core-{greeter_core.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(core) as wheel:
        assert "greeter_core/py.typed" in wheel.namelist()
        metadata = wheel.read(f"greeter_core-{greeter_core.__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {greeter_core.__version__}\n" in metadata


@pytest.mark.packaging
def test_setuptools_reads_the_version_without_importing_greeter_core(tmp_path: Path, builder: WheelBuilder) -> None:
    """A core whose package cannot even be imported still builds, with its version: it is read from the source."""
    source = tmp_path / "core"
    shutil.copytree(REPO / "greeter_core", source / "greeter_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    init = source / "greeter_core" / "__init__.py"
    init.write_text('raise ImportError("imported at build time")\n' + init.read_text(encoding="utf-8"))
    import greeter_core

    assert builder.wheel(source).name == f"greeter_core-{greeter_core.__version__}-py3-none-any.whl"


@pytest.mark.packaging
def test_the_sdist_holds_the_tests_tox_the_plugins_the_docs_and_the_bench(tmp_path: Path) -> None:
    """`uv build --sdist` of a clean checkout keeps everything needed to test, document and measure the project."""
    checkout = copy_checkout(tmp_path / "checkout")
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_NO_CONFIG="1")
    uv("build", "--quiet", "--sdist", "--no-build-isolation", "--python", sys.executable, "--out-dir",
       tmp_path / "dist", checkout, env=env)  # fmt: skip
    [sdist] = (tmp_path / "dist").glob("greeter_core-*.tar.gz")
    import tarfile

    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for expected in (
        "tests/conftest.py",
        "tests/plugins.py",
        "tests/isolation/conftest.py",
        "tox.ini",
        "toxfile.py",
        "MANIFEST.in",
        ".ci/run",
        "plugin_packages/greeter-english/pyproject.toml",
        "plugin_packages/greeter-english/tests/test_english.py",
        "docs/conf.py",
        "docs/index.md",
        "bench/run.py",
        "BENCHMARKS.md",
        "greeter_core/py.typed",
    ):
        assert expected in names, expected
    assert not [name for name in names if "__pycache__" in name or ".egg-info/" in name.split("/", 1)[-1]]


def test_every_distribution_builds_with_setuptools_and_has_no_setup_py() -> None:
    """The core, the shipped plugins, the scaffold's template and every pyproject.toml in the docs: setuptools."""
    import tomllib

    from greeter_core.scaffold import PluginNames, render

    tomls = [
        path.read_text(encoding="utf-8")
        for path in [REPO / "pyproject.toml", *REPO.glob("plugin_packages/*/pyproject.toml")]
    ]
    tomls.append(render(PluginNames.for_language("esperanto"), "Saluton")["pyproject.toml"])
    tomls += [block.text for block in ALL if block.lang == "toml" and "[project]" in block.text]
    assert len(tomls) >= 8
    for text in tomls:
        system = tomllib.loads(text)["build-system"]
        assert system == {"requires": ["setuptools>=77"], "build-backend": "setuptools.build_meta"}, text
    assert not list(REPO.glob("setup.py")) and not list(REPO.glob("plugin_packages/*/setup.py"))


@pytest.mark.parametrize("language", ["english", "chinese", "german", "spanish"])
def test_each_shipped_plugin_declares_its_plugin_api_version(language: str) -> None:
    """The shipped plugins set api_version in their class, as the scaffold writes it, rather than inheriting it."""
    import ast

    import greeter_core

    source = (REPO / "plugin_packages" / f"greeter-{language}" / f"greeter_{language}" / "__init__.py").read_text()
    [cls] = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    declared = {
        target.id: node.value
        for node in cls.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert isinstance(declared.get("api_version"), ast.Constant)
    assert declared["api_version"].value == greeter_core.API_VERSION  # type: ignore[attr-defined]
