"""Allow-list and deny-list: a disabled plugin is listed, marked, and never imported, by any command, in any process."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from basics import one_line
from plugins import imports_of, marking
from running import RunningGreeter, post_json

from greeter_core import PluginDisabledError, discovery, load
from greeter_core import options as cli_options
from greeter_core.lock import PluginLock
from greeter_core.policy import ALLOW_ENV, DISABLE_ENV, PluginPolicy

#: Both record every import of their module in the site directory, whichever process imports them.
ALLOWED = marking("allowed", "Allowed")
BARRED = marking("barred", "Barred")

ISOLATION = pytest.mark.parametrize("isolation", ["none", "process"])


@pytest.fixture(autouse=True)
def _unconfined(greeter_env: dict[str, str]) -> None:
    """The marking plugins record each import beside their package, which a sandboxed worker may not write."""
    greeter_env["GREETER_SANDBOX"] = "off"


#: The ways to keep `barred` from loading, and the setting the refusal must name.
SETTINGS = pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        pytest.param(["--disable", "barred"], {}, "--disable", id="--disable"),
        pytest.param([], {DISABLE_ENV: " barred,"}, DISABLE_ENV, id="GREETER_DISABLE"),
        pytest.param(["--plugins", "allowed"], {}, "--plugins", id="--plugins"),
        pytest.param([], {ALLOW_ENV: "allowed"}, ALLOW_ENV, id="GREETER_PLUGINS"),
    ],
)


@pytest.fixture
def plugins(install, site: Path) -> Path:
    """`allowed` and `barred` installed; neither imported yet."""
    install(ALLOWED, BARRED)
    return site


def run_cli(cli, greeter_env, monkeypatch, args: list[str], env: dict[str, str]):
    for name, value in env.items():
        monkeypatch.setitem(greeter_env, name, value)
    return cli(*args)


@SETTINGS
@ISOLATION
def test_asking_for_a_disabled_plugin_is_one_line_naming_the_setting_and_nothing_is_imported(
    cli, greeter_env, monkeypatch, plugins: Path, args, env, setting: str, isolation: str
) -> None:
    """`greeter --driver barred` refuses with exit 2 and one line naming the setting; the module is never imported."""
    result = run_cli(cli, greeter_env, monkeypatch, ["--driver", "barred", "--isolation", isolation, *args], env)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("greeter: error: plugin 'barred'") and f"is disabled by {setting}:" in line
    assert imports_of(BARRED, plugins) == []


@SETTINGS
def test_a_plugin_the_settings_allow_still_greets(
    cli, greeter_env, monkeypatch, plugins: Path, args, env, setting
) -> None:
    """The policy refuses only what it names: `allowed` greets under every setting, and `barred` stays unimported."""
    result = run_cli(cli, greeter_env, monkeypatch, ["--driver", "allowed", *args], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "Allowed Universe\n", "")
    assert imports_of(BARRED, plugins) == []


def test_the_environment_deny_list_cannot_be_undone_by_the_allow_option(
    cli, greeter_env, monkeypatch, plugins: Path
) -> None:
    """GREETER_DISABLE wins over --plugins: a name disabled by the operator stays disabled."""
    result = run_cli(
        cli, greeter_env, monkeypatch, ["--driver", "barred", "--plugins", "barred"], {DISABLE_ENV: "barred"}
    )
    assert result.returncode == 2 and f"disabled by {DISABLE_ENV}" in one_line(result.stderr)


def test_an_empty_allow_list_allows_nothing(cli, greeter_env, monkeypatch, plugins: Path) -> None:
    """GREETER_PLUGINS set but empty means no plugin at all (as DATASETTE_LOAD_PLUGINS=''), and says so."""
    result = run_cli(cli, greeter_env, monkeypatch, ["--driver", "allowed"], {ALLOW_ENV: ""})
    assert result.returncode == 2 and "set but empty" in one_line(result.stderr)
    assert imports_of(ALLOWED, plugins) == []


def test_a_listed_name_that_is_not_installed_is_a_warning_not_an_error(cli, plugins: Path) -> None:
    """A typo in --plugins or --disable warns on stderr, naming the setting; the greeting still happens."""
    result = cli("--driver", "allowed", "--plugins", "allowed,alowed", "--disable", "nonesuch")
    assert (result.returncode, result.stdout) == (0, "Allowed Universe\n")
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert "--plugins names 'alowed', but no installed plugin is called that" in warnings[0]
    assert "--disable names 'nonesuch'" in warnings[1]


def test_list_shows_a_disabled_plugin_marked_without_importing_it(cli, plugins: Path) -> None:
    """`greeter list` still lists a disabled plugin, with the setting in a STATE column; nothing is imported."""
    result = cli("list", "--disable", "barred")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split()[4:] for line in result.stdout.splitlines()[1:]}
    assert (rows["allowed"], rows["barred"]) == (["enabled"], ["disabled", "by", "--disable"])
    assert result.stdout.splitlines()[0].split()[-1] == "STATE"
    assert imports_of(BARRED, plugins) == imports_of(ALLOWED, plugins) == []


def test_list_json_says_which_plugins_are_disabled_and_by_what(cli, greeter_env, monkeypatch, plugins: Path) -> None:
    """`greeter list --json` gives each record `disabled` and `disabled_by`; without a policy, none is disabled."""
    records = json.loads(run_cli(cli, greeter_env, monkeypatch, ["list", "--json"], {DISABLE_ENV: "barred"}).stdout)
    states = {r["name"]: (r["disabled"], r["disabled_by"]) for r in records}
    assert (states["allowed"], states["barred"]) == ((False, None), (True, DISABLE_ENV))
    monkeypatch.delitem(greeter_env, DISABLE_ENV)
    records = json.loads(cli("list", "--json").stdout)
    assert not any(r["disabled"] or r["disabled_by"] for r in records)


@ISOLATION
def test_check_reports_a_disabled_plugin_as_disabled_and_never_imports_it(cli, plugins: Path, isolation: str) -> None:
    """`greeter check` checks what is allowed and shows the rest as disabled, exit 0; disabled ones are not imported."""
    result = cli("check", "--json", "--disable", "barred", "--isolation", isolation)
    assert result.returncode == 0, result.stderr
    results = {r["name"]: r for r in json.loads(result.stdout)}
    assert results["allowed"]["ok"] and results["allowed"]["detail"] == "Allowed Universe"
    barred = results["barred"]
    assert (barred["ok"], barred["disabled"], barred["exit_code"]) == (False, True, 0)
    assert barred["detail"] == "disabled by --disable; not imported"
    assert imports_of(BARRED, plugins) == []
    assert len(imports_of(ALLOWED, plugins)) == 1


def test_check_of_a_disabled_plugin_by_name_fails_with_exit_2(cli, plugins: Path) -> None:
    """Named explicitly, a disabled plugin is a failed check with exit 2, not a silent skip."""
    result = cli("check", "barred", "--disable", "barred")
    assert result.returncode == 2
    assert "is disabled by --disable" in result.stdout
    assert imports_of(BARRED, plugins) == []


@ISOLATION
def test_the_api_refuses_a_disabled_plugin_before_importing_it(on_path: Path, install, isolation: str) -> None:
    """load(..., policy=...) raises PluginDisabledError, carrying the setting, in either isolation mode."""
    install(ALLOWED, BARRED)
    policy = PluginPolicy.from_settings({}, disable=["barred"])
    with pytest.raises(PluginDisabledError) as caught:
        load("barred", policy=policy, isolation=isolation, sandbox="off")
    assert (caught.value.driver, caught.value.setting, caught.value.exit_code) == ("barred", "--disable", 2)
    with load("allowed", policy=policy, isolation=isolation, sandbox="off") as loaded:
        assert loaded.greet("API") == "Allowed API"
    assert imports_of(BARRED, on_path) == []


@ISOLATION
def test_a_swap_over_http_to_a_disabled_plugin_is_403_and_the_current_one_keeps_greeting(
    start, plugins: Path, isolation: str
) -> None:
    """GET /?mod= and POST /driver to a disabled plugin answer 403 in JSON naming the setting; nothing changes."""
    greeter: RunningGreeter = start(
        "--driver",
        "allowed",
        "--disable",
        "barred",
        "--interval",
        "0.01",
        "--control",
        "127.0.0.1:0",
        "--isolation",
        isolation,
    )
    greeter.wait_greetings("Allowed Universe")
    for reply in (greeter.swap("barred"), post_json(greeter.port, "/driver", {"driver": "barred"})):
        assert (reply.status, reply.data["status"]) == (403, 403)
        assert (reply.data["driver"], reply.data["current"]) == ("barred", "allowed")
        assert "is disabled by --disable" in reply.data["error"]
    greeter.wait_greetings("Allowed Universe", 3)
    assert greeter.status()["swaps"] == 0
    disabled = {r["name"]: r["disabled"] for r in greeter.request("GET", "/plugins").data}
    assert (disabled["allowed"], disabled["barred"]) == (False, True)
    assert imports_of(BARRED, plugins) == []


@ISOLATION
def test_a_sighup_switch_to_a_disabled_plugin_is_refused_and_logged(
    start, plugins: Path, tmp_path: Path, isolation: str
) -> None:
    """A --driver-file naming a disabled plugin: SIGHUP logs the refusal with the setting; the current one greets on."""
    driver_file = tmp_path / "driver"
    driver_file.write_text("allowed", encoding="utf-8")
    greeter: RunningGreeter = start(
        "--driver-file",
        str(driver_file),
        "--interval",
        "0.01",
        "--isolation",
        isolation,
        env_extra={ALLOW_ENV: "allowed"},
    )
    greeter.wait_greetings("Allowed Universe")
    driver_file.write_text("barred", encoding="utf-8")
    greeter.send(signal.SIGHUP)
    greeter.stderr.search(r"switch to 'barred' refused: plugin 'barred' .*is disabled by GREETER_PLUGINS")
    greeter.wait_greetings("Allowed Universe", 3)
    assert greeter.stop() == 0
    assert greeter.summary()[1:3] == (0, 0)
    assert imports_of(BARRED, plugins) == []


#: The one-shot under every setting; an isolated one-shot and `greeter run` under one each.
NAMED_BY = [
    pytest.param(["--driver", "barred"], *case.values, id=f"one-shot-{case.id}") for case in SETTINGS.args[1]
] + [
    pytest.param(
        ["--driver", "barred", "--isolation", "process", "--disable", "barred"], [], {}, "--disable", id="isolated"
    ),
    pytest.param(["run", "--driver", "barred"], [], {ALLOW_ENV: "allowed"}, ALLOW_ENV, id="run"),
]


@pytest.mark.parametrize(("command", "args", "env", "setting"), NAMED_BY)
def test_a_disabled_plugin_is_named_with_its_distribution_by_every_command(
    cli, greeter_env, monkeypatch, plugins: Path, command: list[str], args, env, setting: str
) -> None:
    """The refusal names the plugin and its distribution, however it was asked for and whichever setting refuses it."""
    result = run_cli(cli, greeter_env, monkeypatch, [*command, *args], env)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(
        f"greeter: error: plugin 'barred' (greeter-barred 1.0) is disabled by {setting}:"
    )


def test_a_name_disabled_but_not_installed_is_refused_as_disabled(cli, plugins: Path) -> None:
    """A deny-listed name is refused by the setting, installed or not: what the operator wrote is what is named."""
    result = cli("--driver", "gone", "--disable", "gone")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("greeter: error: plugin 'gone' is disabled by --disable:")


@pytest.mark.parametrize(
    ("options", "scans"),
    [
        ({}, 0),
        ({"verify": True}, 1),
        ({"policy": True, "lock": True, "verify": True}, 1),
        # sandbox off: the marking plugins record each import beside their package (see _unconfined)
        ({"policy": True, "lock": True, "verify": True, "isolation": "process", "sandbox": "off"}, 1),
    ],
    ids=["plain", "verify", "policy-lock-verify", "policy-lock-verify-isolated"],
)
def test_one_load_looks_at_the_installed_metadata_at_most_once(
    on_path: Path, install, monkeypatch, options: dict[str, Any], scans: int
) -> None:
    """Policy, lock, --verify and the build share the record load() resolved once; the plain load scans nothing."""
    install(ALLOWED, BARRED)
    if options.get("policy"):
        options["policy"] = PluginPolicy.from_settings({}, disable=["barred"])
    if options.get("lock"):
        options["lock"] = PluginLock.snapshot()
    real = discovery.scan
    counted: list[int] = []

    def counting() -> discovery.Scan:
        counted.append(1)
        return real()

    monkeypatch.setattr(discovery, "scan", counting)
    with load("allowed", **options) as loaded:
        assert loaded.greet("API") == "Allowed API"
    assert len(counted) == scans


def test_greeter_run_refuses_a_disabled_first_driver_in_one_line(cli, plugins: Path) -> None:
    """`greeter run --driver barred --disable barred` exits 2 at once."""
    result = cli("run", "--driver", "barred", "--disable", "barred", "--count", "1")
    assert result.returncode == 2 and "is disabled by --disable" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("environ", "plugins", "disable", "expected"),
    [
        ({}, None, [], None),
        ({ALLOW_ENV: "a, b,,a"}, None, [], PluginPolicy(("a", "b"), ALLOW_ENV, ())),
        ({ALLOW_ENV: "a"}, "b", [], PluginPolicy(("b",), "--plugins", ())),
        ({ALLOW_ENV: ""}, None, [], PluginPolicy((), ALLOW_ENV, ())),
        (
            {DISABLE_ENV: "x"},
            None,
            ["x", "y,z"],
            PluginPolicy(None, ALLOW_ENV, (("x", DISABLE_ENV), ("y", "--disable"), ("z", "--disable"))),
        ),
    ],
    ids=["unset", "env-allow", "option-replaces-env", "empty-allows-none", "disable-adds-up"],
)
def test_the_policy_is_built_from_the_environment_and_the_command_line(environ, plugins, disable, expected) -> None:
    """--plugins replaces GREETER_PLUGINS, --disable adds to GREETER_DISABLE; nothing set is no policy at all."""
    assert PluginPolicy.from_settings(environ, plugins=plugins, disable=disable) == expected


def test_the_cli_names_the_same_settings_as_the_policy() -> None:
    """The CLI tests for these variables without importing policy.py or lock.py (start-up): the names must agree."""
    from greeter_core.lock import LOCK_ENV

    assert cli_options.POLICY_ENV == (ALLOW_ENV, DISABLE_ENV)
    assert cli_options.LOCK_ENV == LOCK_ENV
