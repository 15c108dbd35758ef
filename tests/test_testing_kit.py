"""The conformance kit (greeter_core.testing) passes a good plugin and fails each broken one for its flaw.

Every fixture plugin below is a real wheel installed into one site; one
pytest subprocess runs the kit against all of them, as a plugin author's own
test run would, and reports each check through a JUnit XML file.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pytest
from basics import clean_env
from plugins import PluginFactory, PluginSpec, greeter_code

import greeter_core

HEADER = "from greeter_core import DEFAULT_NAME, Greeter\n\n\nclass Plugin(Greeter):\n"

# driver -> the body of its Plugin class; "good" is the control that passes.
GREET = "    def greet(self, name):\n        "
PLUGINS = {
    "good": GREET + "return 'Hi ' + (name or DEFAULT_NAME)\n",
    "prints": GREET + "print('debug: greeting', name)\n        return 'Hi ' + (name or 'x')\n",
    "empty": GREET + "return ''\n",
    "bytes": GREET + "return b'Hi'\n",
    "raises": GREET + "raise ValueError('no greeting today')\n",
    "no-default": GREET + "return 'Hi ' + name\n",
    "no-name": "    def greet(self):\n        return 'Hi'\n",
    "no-greet": "    def hello(self, name):\n        return 'Hi'\n",
    "newer-api": f"    api_version = {greeter_core.API_VERSION + 1}\n\n" + GREET + "return 'Hi'\n",
    "needs-option": GREET + "return self.context.config['style'] + ' ' + (name or DEFAULT_NAME)\n",
}
IMPORT_TIME = {
    "prints-on-import": greeter_code("Hi") + "\nprint('loading prints-on-import')\n",
    "missing-dependency": "import gt_not_installed_anywhere\n" + greeter_code("Hi"),
}
OPTIONS = {"needs-option": {"style": "Howdy"}}


class Result(NamedTuple):
    """How one check went for one fixture plugin."""

    outcome: str
    """passed, failure or error."""

    message: str


def kit_module() -> str:
    """One PluginConformance subclass per fixture driver, one for a driver not installed, one with none."""
    classes = ["class Test_forgot(PluginConformance):\n    pass\n"]
    for driver in [*PLUGINS, *IMPORT_TIME, "not-installed"]:
        options = f"\n    options = {OPTIONS[driver]!r}" if driver in OPTIONS else ""
        classes.append(f"class Test_{driver.replace('-', '_')}(PluginConformance):\n    driver = {driver!r}{options}\n")
    return "from greeter_core.testing import PluginConformance\n\n\n" + "\n\n".join(classes)


def read_junit(path: Path) -> dict[tuple[str, str], Result]:
    """(driver, check) -> outcome and failure text, from pytest's JUnit XML report."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        driver = case.get("classname", "").rpartition(".")[2].removeprefix("Test_").replace("_", "-")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        outcome = "passed" if problem is None else problem.tag
        message = "" if problem is None else f"{problem.get('message')}\n{problem.text}"
        results[driver, case.get("name", "")] = Result(outcome, message)
    return results


@pytest.fixture(scope="module")
def kit(factory: PluginFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Result]:
    """Run the kit against every fixture plugin in one pytest subprocess; return each check's result."""
    root = tmp_path_factory.mktemp("kit")
    for driver, body in PLUGINS.items():
        factory.install(PluginSpec(driver, code=HEADER + body), root / "site")
    for driver, code in IMPORT_TIME.items():
        factory.install(PluginSpec(driver, code=code), root / "site")
    (root / "test_kit.py").write_text(kit_module(), encoding="utf-8")
    env = clean_env(PYTHONPATH=str(root / "site"), XDG_CACHE_HOME=str(root / "cache"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--junitxml", "report.xml", "test_kit.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (root / "report.xml").exists(), run.stdout + run.stderr
    return read_junit(root / "report.xml")


def test_the_kit_runs_every_check_on_every_plugin(kit: dict[tuple[str, str], Result]) -> None:
    """Each fixture class got all 14 checks collected, so no result below is missing by accident."""
    drivers = {driver for driver, _ in kit}
    assert drivers == {*PLUGINS, *IMPORT_TIME, "not-installed", "forgot"}
    assert all(sum(d == driver for d, _ in kit) == 14 for driver in drivers)


def test_a_well_behaved_plugin_passes_every_check(kit: dict[tuple[str, str], Result]) -> None:
    """The control plugin fails nothing: a failure below is the kit reacting to a flaw, not to any plugin."""
    good = {check: result for (driver, check), result in kit.items() if driver == "good"}
    assert {check: result.message for check, result in good.items() if result.outcome != "passed"} == {}


@pytest.mark.parametrize(
    ("driver", "check", "says"),
    [
        (
            "prints",
            "test_does_not_write_to_stdout",
            "plugin 'prints' (greeter-prints 1.0) wrote 'debug: greeting Ada\\n' to stdout while greeting 'Ada'",
        ),
        ("prints", "test_does_not_write_to_stdout", "How to fix: stdout belongs to the greetings"),
        (
            "prints-on-import",
            "test_does_not_write_to_stdout_in_a_fresh_interpreter",
            "plugin 'prints-on-import' (greeter-prints-on-import 1.0) wrote 'loading prints-on-import\\n' "
            "to stdout in a fresh interpreter (import, load, greet)",
        ),
        (
            "empty",
            "test_greets_with_a_non_empty_str[ordinary]",
            "plugin 'empty' (greeter-empty 1.0) greet('Ada') returned ''",
        ),
        (
            "bytes",
            "test_greets_with_a_non_empty_str[cjk]",
            "calling greet('小明'): plugin 'bytes' (greeter-bytes 1.0) breaks the Greeter contract: "
            "greet() returned bytes, not str",
        ),
        ("raises", "test_greets_with_a_non_empty_str[empty]", "ValueError: no greeting today"),
        ("raises", "test_greets_with_a_non_empty_str[empty]", "The plugin raised:\nTraceback"),
        (
            "no-default",
            "test_empty_name_greets_the_default_greetee",
            "greet('') returned 'Hi ' but greet('Universe') returned 'Hi Universe'",
        ),
        ("no-name", "test_is_a_greeter", "has greet(), which cannot be called with one name"),
        (
            "no-greet",
            "test_loads_through_the_core_loader",
            "breaks the Greeter contract: Plugin does not implement greet()",
        ),
        (
            "newer-api",
            "test_loads_through_the_core_loader",
            f"needs greeter plugin API {greeter_core.API_VERSION + 1}, but this greeter-core provides API "
            f"{greeter_core.API_VERSION}; upgrade greeter-core",
        ),
        ("needs-option", "test_greets_with_and_without_options[without-options]", "KeyError: 'style'"),
        (
            "missing-dependency",
            "test_loads_through_the_core_loader",
            "ModuleNotFoundError: No module named 'gt_not_installed_anywhere'",
        ),
        (
            "not-installed",
            "test_is_registered_in_the_greeter_plugins_group",
            "plugin 'not-installed' is not registered in the 'greeter.plugins' entry-point group",
        ),
        (
            "not-installed",
            "test_is_registered_in_the_greeter_plugins_group",
            '[project.entry-points."greeter.plugins"]\n    not-installed = "your_package:YourGreeter"',
        ),
        (
            "forgot",
            "test_loads_through_the_core_loader",
            "Test_forgot does not say which plugin to check; set the "
            "class attribute driver = '<your entry-point name>'",
        ),
    ],
)
def test_a_broken_plugin_fails_the_check_for_its_flaw_with_a_readable_message(
    kit: dict[tuple[str, str], Result], driver: str, check: str, says: str
) -> None:
    """The check that covers the plugin's flaw fails, and its message says what is wrong and how to fix it."""
    result = kit[driver, check]
    assert result.outcome == "failure", result
    assert says in result.message


def test_a_plugin_not_installed_is_told_to_install_it_once_not_once_per_check(
    kit: dict[tuple[str, str], Result],
) -> None:
    """Every check fails, but only the first says how to fix it, and it says to install the distribution first."""
    results = [result for (driver, _), result in kit.items() if driver == "not-installed"]
    assert len(results) == 14 and all(result.outcome == "failure" for result in results)
    [full] = [result.message for result in results if "How to fix" in result.message]
    assert "How to fix: the kit tests the installed plugin: install its distribution" in full
    others = [result.message for result in results if result.message != full]
    assert all("the first failing check of Test_not_installed says how to fix it" in m for m in others), others


@pytest.mark.parametrize(
    ("driver", "check"),
    [
        ("prints", "test_greets_with_a_non_empty_str[ordinary]"),
        ("no-default", "test_does_not_write_to_stdout"),
        ("needs-option", "test_greets_with_and_without_options[with-options]"),
        ("prints-on-import", "test_loads_through_the_core_loader"),
    ],
)
def test_a_broken_plugin_passes_the_checks_its_flaw_does_not_concern(
    kit: dict[tuple[str, str], Result], driver: str, check: str
) -> None:
    """Checks are independent: a flaw fails its own check, not every check."""
    assert kit[driver, check].outcome == "passed", kit[driver, check]


def test_failure_messages_show_no_frames_of_greeter_or_stevedore(kit: dict[tuple[str, str], Result]) -> None:
    """A plugin author reads the problem and their own code's traceback, not the kit's, the core's or stevedore's."""
    messages = [result.message for result in kit.values() if result.message.startswith("Failed: ")]
    assert messages
    assert [m for m in messages if "greeter_core/" in m or "stevedore/" in m] == []
