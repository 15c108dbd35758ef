"""Plugins in environments of their own (``greeter install``): conflicting dependencies side by side, installs
that are atomic, serialised and refused in one line, and builds replaced while ``greeter run`` uses them.

Everything is offline: the test builds a wheelhouse (``greeter-testlib`` 1.0 and 2.0, plugins needing
each) and installs from it with ``--no-index``. The host is this test environment's interpreter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from basics import clean_env, one_line, wait_for
from plugins import PluginSpec, greet_body
from running import cli_runner, launcher
from wheels import Venv, WheelBuilder, write_project

import greeter_core

pytestmark = pytest.mark.packaging

#: The helper library, whose two versions answer differently.
TESTLIB = "greeter-testlib"


def _uses_testlib(word: str) -> str:
    body = f'return "{word} " + greeter_testlib.word() + " " + (name or "Universe")'
    return greet_body(body, "import greeter_testlib")


ONE = PluginSpec("envone", _uses_testlib("one"), dependencies=(f"{TESTLIB}==1.0",), module_name="gt_envone")
ONE_V2 = PluginSpec(
    "envone", _uses_testlib("one-v2"), version="2.0", dependencies=(f"{TESTLIB}==1.0",), module_name="gt_envone"
)
TWO = PluginSpec("envtwo", _uses_testlib("two"), dependencies=(f"{TESTLIB}>=2", "greeter-core>=1"))
FUTURE = PluginSpec("envfuture", dependencies=("greeter-core>=2",))
UNDECLARED = PluginSpec("envundeclared", _uses_testlib("undeclared"), module_name="gt_envundeclared")
PRINTS = PluginSpec("envprints", greet_body('print("debug:", name)\nreturn "hi " + (name or "Universe")'))
NOT_A_PLUGIN = "greeter-testlib"


def _testlib(root: Path, version: str) -> Path:
    """The project of greeter-testlib *version*: ``word()`` says which version it is."""
    project = root / f"testlib-{version}"
    write_project(
        project,
        name=TESTLIB,
        version=version,
        package="greeter_testlib",
        code=f'def word():\n    return "testlib-{version}"\n',
        description="a library that is not a plugin",
        docstring="A library built by the tests.",
    )
    return project


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, builder: WheelBuilder) -> Path:
    """A directory of wheels: greeter-testlib 1.0 and 2.0, and the plugins (ONE only at 1.0: upgrades add 2.0)."""
    scratch = tmp_path_factory.mktemp("projects")
    house = tmp_path_factory.mktemp("wheelhouse")
    wheels = [builder.wheel(_testlib(scratch, version)) for version in ("1.0", "2.0")]
    for spec in (ONE, TWO, FUTURE, PRINTS, UNDECLARED):
        wheels.append(builder.wheel(spec.write_project(scratch / spec.dist / spec.version).parent))
    for wheel in wheels:
        os.link(wheel, house / wheel.name)
    return house


@pytest.fixture(scope="module")
def upgrades(tmp_path_factory: pytest.TempPathFactory, builder: WheelBuilder, wheelhouse: Path) -> Path:
    """A second wheelhouse with ONE 2.0, for --upgrade."""
    scratch = tmp_path_factory.mktemp("projects-v2")
    house = tmp_path_factory.mktemp("wheelhouse-v2")
    wheel = builder.wheel(ONE_V2.write_project(scratch / "one-v2").parent)
    os.link(wheel, house / wheel.name)
    return house


Greeter = Callable[..., subprocess.CompletedProcess[str]]


def _env(data: Path, **extra: str) -> dict[str, str]:
    return clean_env(XDG_DATA_HOME=str(data), XDG_CACHE_HOME=str(data / "cache"), UV_NO_CONFIG="1", **extra)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An empty data directory: where this test's environments live."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def greeter(data: Path, tmp_path: Path) -> Greeter:
    """``greeter(*args)``: the CLI with this test's data directory."""
    return cli_runner(_env(data), tmp_path, timeout=120)


def _installs(wheelhouse: Path) -> list[str]:
    return ["install", "--no-index", "--find-links", str(wheelhouse)]


def _freeze() -> str:
    from uv import find_uv_bin

    command = [find_uv_bin(), "pip", "freeze", "--python", sys.executable]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=clean_env(UV_NO_CONFIG="1")).stdout


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[tuple[Path, str, str]]:
    """ONE and TWO installed with ``greeter install`` into a data directory of the module; the host's
    ``uv pip freeze`` before and after."""
    data = tmp_path_factory.mktemp("data")
    before = _freeze()
    done = cli_runner(_env(data), data, timeout=120)(*_installs(wheelhouse), ONE.dist, TWO.dist)
    assert done.returncode == 0, done.stderr
    yield data, before, _freeze()


def _build(data: Path, spec: PluginSpec) -> Path:
    """The build in use for *spec*'s distribution."""
    return (data / "greeter" / "envs" / spec.dist / "current").resolve()


def test_install_leaves_the_host_environment_as_it_was(both: tuple[Path, str, str]) -> None:
    """Installing two plugins with conflicting requirements changes nothing in greeter's own environment."""
    _, before, after = both
    assert TESTLIB not in before
    assert after == before


def test_each_environment_has_its_own_version_and_no_copy_of_what_is_provided(both: tuple[Path, str, str]) -> None:
    """ONE's environment holds greeter-testlib 1.0, TWO's 2.0; neither holds greeter-core nor stevedore."""
    data, _, _ = both
    for spec, version in ((ONE, "1.0"), (TWO, "2.0")):
        site = next(_build(data, spec).glob("lib/python*/site-packages"))
        names = sorted(path.name for path in site.glob("*.dist-info"))
        assert f"greeter_testlib-{version}.dist-info" in names
        assert not [name for name in names if name.startswith(("greeter_core", "stevedore"))]


def test_list_shows_where_each_plugin_lives(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """`greeter list` has a WHERE column and `--json` a where field: the host, or the environment's directory."""
    data, _, _ = both
    greeter = cli_runner(_env(data), tmp_path, timeout=120)
    records = {record["name"]: record for record in json.loads(greeter("list", "--json").stdout)}
    assert records["envone"]["where"] == str(_build(data, ONE))
    assert records["envtwo"]["environment"] == str(_build(data, TWO))
    assert records["english"]["where"] == "host"
    table = greeter("list").stdout.splitlines()
    assert table[0].split()[-1] == "WHERE"
    assert any(line.split()[0] == "envone" and line.endswith(str(_build(data, ONE))) for line in table)


def test_each_plugin_sees_its_own_version_swapping_back_and_forth(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """One `greeter run --isolation process` greets with ONE (testlib 1.0) and TWO (2.0), swapped by HTTP."""
    data, _, _ = both
    with launcher(_env(data), tmp_path) as start:
        run = start("--driver", "envone", "--isolation", "process", "--interval", "0.02", "--control", "127.0.0.1:0")
        run.wait_greetings("one testlib-1.0 Universe")
        for driver, text in [("envtwo", "two testlib-2.0"), ("envone", "one testlib-1.0")] * 2:
            assert run.swap(driver).status == 200
            run.wait_greetings(f"{text} Universe")
        assert run.stop() == 0


def test_isolation_none_is_refused_in_one_line(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """A plugin in its own environment never runs in greeter's process: one line, exit 2, saying why."""
    data, _, _ = both
    greeter = cli_runner(_env(data), tmp_path, timeout=120)
    for args in (["--driver", "envone"], ["--driver", "envone", "--isolation", "none"]):
        done = greeter(*args)
        assert done.returncode == 2
        line = one_line(done.stderr)
        assert "'envone' (greeter-envone 1.0) lives in its own environment" in line
        assert "--isolation process" in line
    done = greeter("--driver", "envone", "--isolation", "process", "--name", "Ada")
    assert (done.returncode, done.stdout) == (0, "one testlib-1.0 Ada\n")


def test_a_plugin_needing_a_core_the_host_lacks_is_refused(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """`greeter-core>=2` on a host of 1.0.0: exit 1, one line naming the distribution and the host's version."""
    done = greeter(*_installs(wheelhouse), FUTURE.dist)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"cannot install {FUTURE.dist}" in line
    assert f"greeter-core {greeter_core.__version__}" in line and "greeter-core>=2" in line
    assert not (data / "greeter" / "envs" / FUTURE.dist).exists()


def test_a_failed_install_keeps_the_previous_environment(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """An install that fails is one line with the installer's reason; the environment in use still greets."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    in_use = _build(data, ONE)
    done = greeter(*_installs(wheelhouse), "--upgrade", f"{ONE.dist}==9")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"cannot install {ONE.dist}" in line and f"{ONE.dist}==9" in line
    assert _build(data, ONE) == in_use
    assert sorted(path.name for path in in_use.parent.iterdir()) == sorted(["current", in_use.name])
    assert greeter("--driver", "envone", "--isolation", "process").stdout == "one testlib-1.0 Universe\n"


def test_a_distribution_that_registers_no_plugin_is_refused(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """Installing a library that is no greeter plugin leaves nothing behind."""
    done = greeter(*_installs(wheelhouse), NOT_A_PLUGIN)
    assert done.returncode == 1
    assert "registers no plugin in 'greeter.plugins'" in one_line(done.stderr)
    assert not (data / "greeter" / "envs" / NOT_A_PLUGIN).exists()


def _stalling_uv(tmp_path: Path, gate: str) -> tuple[Path, Path]:
    """A uv that, for `uv pip install`, says so in a file, then *gate* (shell) before it runs the real uv."""
    from uv import find_uv_bin

    started = tmp_path / "installer-started"
    script = tmp_path / "uv"
    script.write_text(f'#!/bin/sh\nif [ "$1" = pip ]; then : > "{started}"; {gate}; fi\nexec "{find_uv_bin()}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, started


def _popen(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "greeter_core", *args]
    return subprocess.Popen(command, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_an_install_killed_midway_leaves_nothing_that_is_used(
    greeter: Greeter, wheelhouse: Path, upgrades: Path, data: Path, tmp_path: Path
) -> None:
    """SIGKILL while the installer runs: the old build stays in use, the half one is never read, the next
    install removes it and succeeds."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    in_use = _build(data, ONE)
    uv, started = _stalling_uv(tmp_path, "exec sleep 600")
    command = [*_installs(wheelhouse), "--find-links", str(upgrades), "--upgrade", ONE.dist]
    process = subprocess.Popen(
        [sys.executable, "-m", "greeter_core", *command],
        env=_env(data, GREETER_UV=str(uv)),
        cwd=tmp_path,
        start_new_session=True,  # its process group: greeter, the stalled uv
    )
    wait_for(started.exists, what="the installer to start")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    [half] = [path for path in in_use.parent.glob("b-*") if path != in_use]
    assert not (half / "greeter-env.json").exists()
    assert _build(data, ONE) == in_use
    assert greeter("--driver", "envone", "--isolation", "process").stdout == "one testlib-1.0 Universe\n"
    assert greeter(*command).returncode == 0
    assert not half.exists()
    assert greeter("--driver", "envone", "--isolation", "process").stdout == "one-v2 testlib-1.0 Universe\n"


def _blocked_on_lock(lock: Path) -> bool:
    """Whether some process waits for an flock of *lock* (``/proc/locks`` marks a waiter with ``->``)."""
    inode = lock.stat().st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and "FLOCK" in line and re.search(rf":{inode}\s", line) for line in lines)


def test_two_installs_at_once_serialise(
    wheelhouse: Path, upgrades: Path, data: Path, tmp_path: Path, greeter: Greeter
) -> None:
    """A second install waits on the lock while the first builds; both succeed, one build is left, ready."""
    go = tmp_path / "go"
    uv, started = _stalling_uv(tmp_path, f'while [ ! -e "{go}" ]; do sleep 0.02; done')
    env = _env(data, GREETER_UV=str(uv))
    command = [*_installs(wheelhouse), "--find-links", str(upgrades), "--upgrade", ONE.dist]
    first = _popen(command, env, tmp_path)
    wait_for(started.exists, what="the first installer to start")
    started.unlink()
    second = _popen(command, env, tmp_path)
    wait_for(lambda: _blocked_on_lock(data / "greeter" / "install.lock"), what="the second install to wait")
    assert not started.exists()  # it never got as far as its installer
    go.touch()
    for process in (first, second):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    folder = data / "greeter" / "envs" / ONE.dist
    assert sorted(path.name for path in folder.iterdir()) == sorted(["current", _build(data, ONE).name])
    assert (_build(data, ONE) / "greeter-env.json").exists()
    assert greeter("--driver", "envone", "--isolation", "process").stdout == "one-v2 testlib-1.0 Universe\n"


def test_upgrade_while_running_then_reload(
    wheelhouse: Path, upgrades: Path, data: Path, tmp_path: Path, greeter: Greeter
) -> None:
    """`greeter install --upgrade` while `greeter run` greets from the old build: the run goes on, `/reload`
    moves it to the new build, and the old one is removed only once the run has ended."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    old = _build(data, ONE)
    with launcher(_env(data), tmp_path) as start:
        run = start("--driver", "envone", "--isolation", "process", "--interval", "0.02", "--control", "127.0.0.1:0")
        run.wait_greetings("one testlib-1.0 Universe")
        done = greeter(*_installs(wheelhouse), "--find-links", str(upgrades), "--upgrade", ONE.dist)
        assert done.returncode == 0, done.stderr
        assert _build(data, ONE) != old and old.exists()  # held by the run
        run.wait_greetings("one testlib-1.0 Universe")
        assert run.request("POST", "/reload").status == 200
        run.wait_greetings("one-v2 testlib-1.0 Universe", more=3)
        assert run.stop() == 0
    assert greeter("uninstall", ONE.dist).returncode == 0
    assert not old.exists() and not old.parent.exists()


def test_a_missing_interpreter_is_reported_with_how_to_rebuild(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """The interpreter an environment was built with went away: `list` warns, `check` fails it, both say how
    to rebuild; the rebuild works."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    python = _build(data, ONE) / "bin" / "python"
    python.unlink()
    python.symlink_to("/nonexistent/python3.11")  # what removing that Python leaves behind
    listed = greeter("list")
    assert listed.returncode == 0
    assert f"rebuild it: greeter install --upgrade {ONE.dist}" in one_line(listed.stderr)
    checked = greeter("check", "--json", "envone")
    assert checked.returncode == 1
    [result] = json.loads(checked.stdout)
    assert "is gone; rebuild it: greeter install --upgrade greeter-envone" in result["detail"]
    assert greeter(*_installs(wheelhouse), "--upgrade", ONE.dist).returncode == 0
    assert greeter("check", "envone").returncode == 0


def test_uninstall_removes_the_plugin_and_says_so_once_gone(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """`greeter uninstall` takes the plugin out of `list` and off the disk; a second one is one line, exit 2."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    assert "envone" in greeter("list").stdout
    assert greeter("uninstall", ONE.dist).returncode == 0
    assert "envone" not in greeter("list").stdout
    assert not (data / "greeter" / "envs" / ONE.dist).exists()
    done = greeter("uninstall", ONE.dist)
    assert done.returncode == 2
    assert "pip uninstall greeter-envone" in one_line(done.stderr)


def test_the_list_cache_sees_an_install(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """`greeter list` keeps its scan on disk; a new environment changes what it watches, so the next list sees it."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    past = os.stat(data).st_mtime - 60  # older than the cache's racy window, so the scan is kept
    for path in [data.parent, *data.parent.rglob("*")]:  # the environments, and the current directory
        os.utime(path, (past, past), follow_symlinks=False)
    assert "envone" in greeter("list").stdout
    assert list((data / "cache" / "greeter").glob("plugins-*.json"))  # kept
    assert greeter(*_installs(wheelhouse), TWO.dist).returncode == 0
    assert "envtwo" in greeter("list").stdout


def _venv_greeter(venv: Venv, data: Path, cwd: Path) -> Greeter:
    """``greeter(*args)`` in *venv* (the host), with this test's data directory."""
    from uv import find_uv_bin

    env = {**venv.env, "XDG_DATA_HOME": str(data), "GREETER_UV": find_uv_bin()}  # the venv has no uv of its own

    return cli_runner(env, cwd, timeout=120, python=venv.python)


def test_the_environments_own_dependency_wins_over_the_hosts(
    venv: Venv, wheelhouse: Path, data: Path, tmp_path: Path
) -> None:
    """A host that has greeter-testlib 2.0 itself: ONE, in its own environment, still imports its 1.0; a plugin
    that does not declare greeter-testlib cannot import the host's (only what is provided comes from the host)."""
    venv.install(next(wheelhouse.glob("greeter_testlib-2.0-*.whl")))
    greeter = _venv_greeter(venv, data, tmp_path)
    assert greeter(*_installs(wheelhouse), ONE.dist, UNDECLARED.dist).returncode == 0
    done = greeter("--driver", "envone", "--isolation", "process")
    assert (done.returncode, done.stdout) == (0, "one testlib-1.0 Universe\n"), done.stderr
    done = greeter("--driver", "envundeclared", "--isolation", "process")
    assert (done.returncode, done.stdout) == (1, ""), done.stdout
    assert "No module named 'greeter_testlib'" in one_line(done.stderr)


def test_the_operators_commands_run_as_written(wheelhouse: Path, data: Path, tmp_path: Path) -> None:
    """The commands of docs/environments.md, run in bash from a directory holding ./wheelhouse (uv offline)."""
    from basics import REPO
    from docblocks import blocks

    [block] = [b for b in blocks(REPO / "docs" / "environments.md") if b.lang == "sh"]
    (tmp_path / "wheelhouse").symlink_to(wheelhouse)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = _env(data, PATH=path, UV_OFFLINE="1")
    outputs = []
    for command in block.commands():
        done = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    assert "envtwo" in outputs[1] and outputs[2] == "one testlib-1.0 Universe\n"
    assert not (data / "greeter" / "envs" / ONE.dist).exists()


def test_host_and_environment_plugins_fork_from_one_fork_server(
    both: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swapping between a host plugin and plugins in two environments reuses one fork server: its
    preload is what they are all provided with."""
    from greeter_core.discovery import find
    from greeter_core.drive import LoadOptions, fork_server, load

    data, _, _ = both
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    options = LoadOptions(isolation="process")
    server = fork_server(options)
    assert server is not None
    forked_by = set()
    try:
        greetings = [("english", "Hello Ada"), ("envone", "one testlib-1.0 Ada"), ("envtwo", "two testlib-2.0 Ada")]
        for name, text in greetings:
            with load(find(name), options, forkserver=server) as loaded:
                assert loaded.greet("Ada") == text
                status = loaded.status()
                assert status is not None  # a worker's
                forked_by.add(status["forkserver"])
    finally:
        server.close()
    assert len(forked_by) == 1 and None not in forked_by


def test_the_lock_pins_the_files_of_a_plugin_in_its_own_environment(
    greeter: Greeter, wheelhouse: Path, data: Path, tmp_path: Path
) -> None:
    """`greeter lock` reads the plugin's files from its environment; an edit there is refused under --lock."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    lock = tmp_path / "greeter.lock"
    assert greeter("lock", "--output", str(lock)).returncode == 0
    run = ["--driver", "envone", "--isolation", "process", "--lock", str(lock)]
    assert greeter(*run).stdout == "one testlib-1.0 Universe\n"
    [module] = _build(data, ONE).glob("lib/python*/site-packages/gt_envone/__init__.py")
    module.write_text(module.read_text() + "\n# edited\n")
    done = greeter(*run)
    assert done.returncode == 1
    assert "greeter-envone" in one_line(done.stderr)


def test_sighup_swaps_between_plugins_in_their_own_environments(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """`greeter run --driver-file F`: SIGHUP swaps to the plugin F names, in its environment, and back."""
    data, _, _ = both
    driver_file = tmp_path / "driver"
    driver_file.write_text("envone\n")
    with launcher(_env(data), tmp_path) as start:
        run = start("--driver-file", str(driver_file), "--isolation", "process", "--interval", "0.02")
        run.wait_greetings("one testlib-1.0 Universe")
        for driver, text in [("envtwo", "two testlib-2.0"), ("english", "Hello"), ("envone", "one testlib-1.0")]:
            driver_file.write_text(f"{driver}\n")
            run.send(signal.SIGHUP)
            run.wait_greetings(f"{text} Universe")
        assert run.stop() == 0
        assert run.summary()[2] == 3  # swaps


def test_metrics_count_plugins_in_their_own_environments(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """/metrics has the greetings and worker starts of each plugin in its own environment, by driver."""
    from prometheus_client.parser import text_string_to_metric_families

    data, _, _ = both
    with launcher(_env(data), tmp_path) as start:
        run = start("--driver", "envone", "--isolation", "process", "--interval", "0.02", "--control", "127.0.0.1:0")
        run.wait_greetings("one testlib-1.0 Universe", more=2)
        assert run.swap("envtwo").status == 200
        run.wait_greetings("two testlib-2.0 Universe", more=2)
        with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/metrics", timeout=60) as response:
            text = response.read().decode("utf-8")
        assert run.stop() == 0
    samples = {
        (sample.name, sample.labels.get("driver")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for driver in ("envone", "envtwo"):
        assert samples[("greeter_greetings_total", driver)] >= 2
        assert samples[("greeter_worker_starts_total", driver)] >= 1
        assert samples.get(("greeter_errors_total", driver), 0) == 0


def test_a_swap_to_one_under_isolation_none_is_a_conflict(both: tuple[Path, str, str], tmp_path: Path) -> None:
    """`greeter run --isolation none`: `?mod=` a plugin in its own environment is 409, saying why; the run goes on."""
    data, _, _ = both
    with launcher(_env(data), tmp_path) as start:
        run = start("--driver", "english", "--isolation", "none", "--interval", "0.02", "--control", "127.0.0.1:0")
        run.wait_greetings("Hello Universe")
        reply = run.swap("envone")
        assert reply.status == 409
        assert "lives in its own environment" in reply.data["error"] and "--isolation process" in reply.data["error"]
        run.wait_greetings("Hello Universe", more=2)
        assert run.stop() == 0


def test_install_a_wheel_by_its_path(greeter: Greeter, wheelhouse: Path, data: Path) -> None:
    """`greeter install PATH.whl`: the distribution is named from the wheel's file name (greeter_envone-...)."""
    [wheel] = wheelhouse.glob("greeter_envone-1.0-*.whl")
    done = greeter(*_installs(wheelhouse), str(wheel))
    assert done.returncode == 0, done.stderr
    assert _build(data, ONE).is_dir()
    assert greeter("--driver", "envone", "--isolation", "process").stdout == "one testlib-1.0 Universe\n"
    assert greeter("uninstall", ONE.dist).returncode == 0


def test_install_and_uninstall_from_the_python_api(
    wheelhouse: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`greeter_core.install()` is the command's code: the plugin is then found and greets in a worker; a
    refusal is a GreeterError naming the distribution; `greeter_core.uninstall()` removes it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    installed = greeter_core.install(ONE.dist, find_links=[str(wheelhouse)], no_index=True)
    assert (installed.distribution, installed.plugins, installed.built) == (ONE.dist, ("envone",), True)
    assert greeter_core.find("envone").environment == installed.environment
    with greeter_core.load("envone", isolation="process") as loaded:
        assert loaded.greet("Ada") == "one testlib-1.0 Ada"
    with pytest.raises(greeter_core.ProvidedVersionError, match=f"cannot install {FUTURE.dist}"):
        greeter_core.install(FUTURE.dist, find_links=[str(wheelhouse)], no_index=True)
    assert greeter_core.uninstall(ONE.dist) == str(data / "greeter" / "envs" / ONE.dist)
    with pytest.raises(greeter_core.NoSuchDriverError):
        greeter_core.find("envone")
    with pytest.raises(greeter_core.NotInstalledError, match="pip uninstall greeter-envone"):
        greeter_core.uninstall(ONE.dist)


def test_the_conformance_kit_checks_plugins_in_their_own_environments(
    greeter: Greeter, wheelhouse: Path, data: Path, tmp_path: Path
) -> None:
    """PluginConformance runs every check on a plugin installed with `greeter install`, in a worker: one that
    prints passes them all but the two stdout checks, and those say what it wrote."""
    import xml.etree.ElementTree as ET

    assert greeter(*_installs(wheelhouse), PRINTS.dist).returncode == 0
    (tmp_path / "test_kit.py").write_text(
        "from greeter_core.testing import PluginConformance\n\n\n"
        "class TestEnvprints(PluginConformance):\n    driver = 'envprints'\n"
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--junitxml",
        "report.xml",
        "test_kit.py",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=_env(data), capture_output=True, text=True, timeout=300)
    assert (tmp_path / "report.xml").exists(), done.stdout + done.stderr
    results = {
        case.get("name", ""): case.find("failure") for case in ET.parse(tmp_path / "report.xml").iter("testcase")
    }
    assert len(results) == 14  # every check
    failed = {check: failure for check, failure in results.items() if failure is not None}
    assert sorted(failed) == ["test_does_not_write_to_stdout", "test_does_not_write_to_stdout_in_a_fresh_interpreter"]
    for failure in failed.values():
        message = failure.get("message", "")
        assert "plugin 'envprints' (greeter-envprints 1.0)" in message and "wrote ['debug: Ada'" in message


def test_a_data_directory_without_room_for_the_provided_links_still_runs(
    greeter: Greeter, wheelhouse: Path, data: Path, tmp_path: Path
) -> None:
    """Where the links to what the host provides cannot be made in the data directory, greeter makes them in a
    temporary directory of its own, and removes it at exit."""
    assert greeter(*_installs(wheelhouse), ONE.dist).returncode == 0
    (data / "greeter" / "provided").write_text("not a directory")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    greeter = cli_runner(_env(data, TMPDIR=str(scratch)), tmp_path, timeout=120)
    done = greeter("--driver", "envone", "--isolation", "process")
    assert (done.returncode, done.stdout) == (0, "one testlib-1.0 Universe\n"), done.stderr
    assert list(scratch.iterdir()) == []
