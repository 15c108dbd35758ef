"""Hostile plugins in process: whatever Python lets a plugin do, the host contains, and says so in one line.

Each plugin here was written the way a careless or hostile stranger might:
it raises what ``except Exception`` does not catch, lies about its types,
hangs where the host waits for it, leaves threads behind, or writes what
breaks "one greeting per line". What only ``--isolation process`` can
contain (``os._exit``, a segfault, a hang in C code) is tested in
``isolation/test_containment.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading

import pytest
from basics import one_line
from plugins import ALPHA, BETA, NOISY, PluginSpec, greet_body
from running import SUMMARY, RunningGreeter

from greeter_core import PluginCallError, PluginContractError, PluginInfo, PluginLoadError, load
from greeter_core.loading import InProcessPlugin

BOOM = "class Boom(BaseException):\n    pass"
#: Passes ``isinstance(x, str)``, yet is no str at all.
LIAR = "class Liar:\n    __class__ = property(lambda self: str)"
#: A str whose every method a host might call raises.
EVIL_STR = """
class EvilStr(str):
    def __add__(self, other): raise RuntimeError("__add__")
    def __radd__(self, other): raise RuntimeError("__radd__")
    def __str__(self): raise RuntimeError("__str__")
    def __format__(self, spec): raise RuntimeError("__format__")
    def __len__(self): raise RuntimeError("__len__")
    def encode(self, *args): raise RuntimeError("encode")
"""


def plugin_class(body: str, prelude: str = "") -> str:
    """Source of a Greeter plugin whose class body is *body* (indented by the caller)."""
    return f"{prelude}\nfrom greeter_core import Greeter\n\nclass Plugin(Greeter):\n{body}\n"


def raising_property(name: str, raised: str = "KeyboardInterrupt") -> str:
    greet = "" if name == "greet" else "    def greet(self, name):\n        return 'Hi ' + name\n"
    return plugin_class(f"{greet}    @property\n    def {name}(self):\n        raise {raised}")


def closing_with(body: str, prelude: str = "") -> str:
    return plugin_class(
        f"    def greet(self, name):\n        return 'Hi ' + name\n    def close(self):\n        {body}", prelude
    )


# -- the hostile plugins, each under its own driver name -----------------------------------------

GREET_GENERATOR_EXIT = PluginSpec("genexit", code=greet_body("raise GeneratorExit"))
GREET_BASE_EXCEPTION = PluginSpec("boom", code=greet_body("raise Boom('boom')", BOOM))
GREET_CANCELLED = PluginSpec("cancelled", code=greet_body("raise asyncio.CancelledError()", "import asyncio"))
GREET_CTRL_C = PluginSpec("ctrlc", code=greet_body("raise KeyboardInterrupt"))
#: Raises an exception whose message itself raises a BaseException.
GREET_UNPRINTABLE_ERROR = PluginSpec(
    "badmessage",
    code=greet_body(
        "raise Unprintable()", "class Unprintable(Exception):\n    def __str__(self):\n        raise Boom\n" + BOOM
    ),
)
IMPORT_CTRL_C = PluginSpec("importctrlc", code="raise KeyboardInterrupt\n")
IMPORT_BASE_EXCEPTION = PluginSpec("importboom", code=f"{BOOM}\nraise Boom('at import')\n")
IMPORT_GENERATOR_EXIT = PluginSpec("importgenexit", code="raise GeneratorExit\n")
IMPORT_CANCELLED = PluginSpec("importcancelled", code="import asyncio\nraise asyncio.CancelledError()\n")
CLOSE_CTRL_C = PluginSpec("closectrlc", code=closing_with("raise KeyboardInterrupt"))
CLOSE_BASE_EXCEPTION = PluginSpec("closeboom", code=closing_with("raise Boom('close')", BOOM))
GREET_LIAR = PluginSpec("liar", code=greet_body("return Liar()", LIAR))
LANGUAGE_LIAR = PluginSpec(
    "liarlanguage", code=greet_body('return "Hi " + name', LIAR) + "\nPlugin.language = Liar()\n"
)
GREET_EVIL_STR = PluginSpec("evilstr", code=greet_body("return EvilStr('Hi ' + name)", EVIL_STR))
PROPERTY_GREET = PluginSpec("propgreet", code=raising_property("greet"))
PROPERTY_LANGUAGE = PluginSpec("proplanguage", code=raising_property("language"))
PROPERTY_API_VERSION = PluginSpec("propapi", code=raising_property("api_version"))
PROPERTY_CLOSE = PluginSpec("propclose", code=raising_property("close", "GeneratorExit"))
METACLASS = PluginSpec(
    "metaclass",
    code="""
class Meta(type):
    def __getattribute__(cls, name):
        if name == "greet":
            raise RuntimeError("the metaclass says no")
        return type.__getattribute__(cls, name)

class Plugin(metaclass=Meta):
    def __init__(self, context):
        pass

    def greet(self, name):
        return "Hi " + name
""",
)
#: Logs "importing", then never finishes importing.
HANG_IMPORT = PluginSpec(
    "hangimport",
    code="import logging, time\n"
    'logging.getLogger("greeter.plugins.hangimport").warning("importing")\n'
    "time.sleep(3600)\n",
)
HANG_CLOSE = PluginSpec("hangclose", code=closing_with("time.sleep(3600)", "import time"))
#: Sleeps forever, swallowing every KeyboardInterrupt; logs "sleeping" each time it starts over.
SWALLOW = PluginSpec(
    "swallow",
    code=greet_body(
        "while True:\n    try:\n        self.context.logger.warning('sleeping')\n        time.sleep(3600)\n"
        "    except KeyboardInterrupt:\n        pass",
        "import time",
    ),
)
#: Starts a non-daemon thread that sleeps for an hour on every greeting.
THREAD = PluginSpec(
    "thread",
    code=greet_body(
        'threading.Thread(target=time.sleep, args=(3600,), name="plugin-sleeper").start()\nreturn "Hi " + name',
        "import threading, time",
    ),
)
CONTROL_CHARACTERS = PluginSpec("ctrlchars", code=greet_body('return "line one\\nline two\\r\\x1b[31m"'))
SURROGATE = PluginSpec("surrogate", code=greet_body('return "lone \\udc80 surrogate"'))


# -- in process, through the API ------------------------------------------------------------------

RECORD = PluginInfo("hostile", "greeter-hostile", "1.0", "gt_hostile:Plugin")


class _Raises:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def greet(self, name: str) -> str:
        raise self.error

    def close(self) -> None:
        raise self.error


class _Boom(BaseException):
    pass


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise GeneratorExit


def loaded(obj: object) -> InProcessPlugin:
    """*obj* as the loader would hand it over."""
    return InProcessPlugin(obj, RECORD.name, RECORD.target, RECORD)


CONTAINED = pytest.mark.parametrize(
    ("error", "shown"),
    [
        (GeneratorExit(), "GeneratorExit"),
        (_Boom("boom"), "_Boom: boom"),
        (asyncio.CancelledError(), "CancelledError"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (_Unprintable(), "_Unprintable"),
    ],
    ids=["GeneratorExit", "BaseException", "CancelledError", "plugins-KeyboardInterrupt", "str-raises"],
)


@CONTAINED
def test_greet_contains_every_base_exception_but_the_users_ctrl_c(error: BaseException, shown: str) -> None:
    """Whatever greet() raises, with no stop request from the user behind it, is a PluginCallError naming it."""
    with pytest.raises(PluginCallError) as caught:
        loaded(_Raises(error)).greet("x")
    assert str(caught.value) == f"plugin 'hostile' (greeter-hostile 1.0) failed: {shown}"


@CONTAINED
def test_close_contains_every_base_exception_and_logs_it(caplog, error: BaseException, shown: str) -> None:
    """Whatever close() raises is logged in one line naming the plugin; close() itself returns."""
    with caplog.at_level(logging.WARNING, "greeter_core.loading"):
        loaded(_Raises(error)).close()
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin 'hostile' (greeter-hostile 1.0) failed to close: {shown}"
    ]


@pytest.mark.usefixtures("on_path")
@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        (IMPORT_CTRL_C, "KeyboardInterrupt"),
        (IMPORT_BASE_EXCEPTION, "Boom: at import"),
        (IMPORT_GENERATOR_EXIT, "GeneratorExit"),
        (IMPORT_CANCELLED, "CancelledError"),
    ],
    ids=["KeyboardInterrupt", "BaseException", "GeneratorExit", "CancelledError"],
)
def test_any_base_exception_at_import_is_a_load_error(install, spec: PluginSpec, shown: str) -> None:
    """A plugin raising what stevedore lets through at import time fails to load; the host goes on."""
    install(spec)
    with pytest.raises(PluginLoadError) as caught:
        load(spec.driver)
    assert f"plugin {spec.driver!r} (greeter-{spec.driver} 1.0) failed to load: {shown};" in str(caught.value)


def test_the_users_ctrl_c_during_a_load_goes_through(install, on_path) -> None:
    """With the user's stop request recorded, a KeyboardInterrupt at import is the user's and ends the load."""
    from greeter_core import guard

    install(IMPORT_CTRL_C)
    guard.request_stop()
    try:
        with pytest.raises(KeyboardInterrupt):
            load(IMPORT_CTRL_C.driver)
    finally:
        guard.clear_stop()


@pytest.mark.usefixtures("on_path")
@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (PROPERTY_GREET, "reading greet raised KeyboardInterrupt"),
        (PROPERTY_LANGUAGE, "reading language raised KeyboardInterrupt"),
        (PROPERTY_API_VERSION, "reading api_version raised KeyboardInterrupt"),
        (PROPERTY_CLOSE, "reading close raised GeneratorExit"),
        (METACLASS, "reading greet raised RuntimeError: the metaclass says no"),
        (LANGUAGE_LIAR, "language must be a str, not Liar"),
    ],
    ids=["greet", "language", "api_version", "close", "metaclass", "language-liar"],
)
def test_every_attribute_read_from_a_plugin_is_a_contract_error(install, spec: PluginSpec, problem: str) -> None:
    """An attribute that raises (anything), a metaclass that raises, a value that lies: PluginContractError."""
    install(spec)
    with pytest.raises(PluginContractError) as caught:
        load(spec.driver)
    assert problem in str(caught.value)
    assert caught.value.driver == spec.driver


def test_an_object_claiming_to_be_a_str_is_refused() -> None:
    """greet() returning an object whose __class__ says str is a contract error, not a TypeError."""
    namespace: dict[str, object] = {}
    exec(LIAR, namespace)
    with pytest.raises(PluginContractError, match=r"greet\(\) returned Liar, not str"):
        loaded(_Returns(namespace["Liar"]())).greet("x")  # type: ignore[operator]


def test_a_str_subclass_is_copied_into_a_plain_str() -> None:
    """A str subclass whose methods all raise comes out as a plain str, with none of them called."""
    namespace: dict[str, object] = {}
    exec(EVIL_STR, namespace)
    text = loaded(_Returns(namespace["EvilStr"]("Hi x"))).greet("x")  # type: ignore[operator]
    assert type(text) is str
    assert text + "\n" == "Hi x\n"


class _Returns:
    def __init__(self, value: object) -> None:
        self.value = value

    def greet(self, name: str) -> object:
        return self.value


@pytest.mark.parametrize(
    ("returned", "printed"),
    [
        ("line one\nline two\r\x1b[31m", "line one\\nline two\\r\\x1b[31m"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
        ("tab\tnul\x00del\x7fnel\x85", "tab\\tnul\\x00del\\x7fnel\\x85"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("你好，世界", "你好，世界"),
        ("👨\u200d👩\u200d👧 no\u00a0break", "👨\u200d👩\u200d👧 no\u00a0break"),
        ("¯\\_(ツ)_/¯", "¯\\_(ツ)_/¯"),
    ],
    ids=["newline-cr-escape", "surrogate", "c0-c1", "separators", "chinese", "zwj-nbsp", "backslash"],
)
def test_a_greeting_is_one_printable_line(returned: str, printed: str) -> None:
    """Control characters, line separators and lone surrogates are escaped; every other character is kept."""
    assert loaded(_Returns(returned)).greet("x") == printed


def test_a_plugins_error_message_is_one_printable_line() -> None:
    """The text of a plugin's exception is quoted in one printable line, escapes included."""
    with pytest.raises(PluginCallError) as caught:
        loaded(_Raises(RuntimeError("red \x1b[31m\udc80\nsecond line"))).greet("x")
    assert str(caught.value).endswith("failed: RuntimeError: red \\x1b[31m\\udc80")


# -- the one-shot CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (GREET_CTRL_C, "plugin 'ctrlc' (greeter-ctrlc 1.0) failed: KeyboardInterrupt"),
        (IMPORT_CTRL_C, "plugin 'importctrlc' (greeter-importctrlc 1.0) failed to load: KeyboardInterrupt;"),
        (PROPERTY_LANGUAGE, "breaks the Greeter contract: reading language raised KeyboardInterrupt;"),
        (GREET_UNPRINTABLE_ERROR, "plugin 'badmessage' (greeter-badmessage 1.0) failed: Unprintable"),
        (METACLASS, "breaks the Greeter contract: reading greet raised RuntimeError: the metaclass says no;"),
        (GREET_LIAR, "breaks the Greeter contract: greet() returned Liar, not str;"),
    ],
    ids=["ctrl-c-in-greet", "ctrl-c-at-import", "ctrl-c-property", "message-raises", "metaclass", "liar"],
)
def test_a_hostile_plugin_is_one_line_and_exit_1(cli, install, spec: PluginSpec, message: str) -> None:
    """A plugin's own KeyboardInterrupt or lies are its failure: one line, exit 1, never 130 or a traceback."""
    install(spec)
    result = cli("--driver", spec.driver)
    assert (result.returncode, result.stdout) == (1, "")
    assert message in one_line(result.stderr)


@pytest.mark.parametrize("spec", [CLOSE_CTRL_C, CLOSE_BASE_EXCEPTION], ids=["KeyboardInterrupt", "BaseException"])
def test_a_plugin_failing_to_close_keeps_the_greeting(cli, install, spec: PluginSpec) -> None:
    """A close() that raises anything costs a warning line, not the greeting nor the exit status."""
    install(spec)
    result = cli("--driver", spec.driver)
    assert (result.returncode, result.stdout) == (0, "Hi Universe\n")
    assert f"plugin {spec.driver!r} (greeter-{spec.driver} 1.0) failed to close: " in one_line(result.stderr)


def test_a_one_shot_greeting_exits_although_the_plugin_left_a_thread_running(cli, install) -> None:
    """A non-daemon thread the plugin started does not keep the command alive: it is abandoned, in one line."""
    install(THREAD)
    result = cli("--driver", "thread")
    assert (result.returncode, result.stdout) == (0, "Hi Universe\n")
    assert "left 1 thread running ('plugin-sleeper'); exiting without waiting for it" in one_line(result.stderr)


def test_ctrl_c_ends_a_one_shot_greeting_even_if_the_plugin_swallows_it(install, greeter_env, tmp_path) -> None:
    """The user's Ctrl-C ends the command with 130, even while the plugin swallows every KeyboardInterrupt."""
    install(SWALLOW)
    process = subprocess.Popen(
        [sys.executable, "-m", "greeter_core", "--driver", "swallow"],
        env=greeter_env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "sleeping" in process.stderr.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, out) == (130, "")
    assert "interrupted, but plugin code did not stop; exiting without it" in err


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize(
    ("spec", "printed"),
    [(CONTROL_CHARACTERS, "line one\\nline two\\r\\x1b[31m"), (SURROGATE, "lone \\udc80 surrogate")],
    ids=["control-characters", "surrogate"],
)
def test_the_greeting_is_one_printable_line_in_both_modes(
    greeter_env, tmp_path, install, spec: PluginSpec, printed: str, isolation: str
) -> None:
    """In process and in a worker alike, stdout carries the greeting as one line of valid UTF-8."""
    install(spec)
    result = subprocess.run(
        [sys.executable, "-m", "greeter_core", "--driver", spec.driver, "--isolation", isolation],
        env=greeter_env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, (printed + "\n").encode("utf-8"))


#: In a worker, sends the host a forged reply of its own on the worker's channel before greeting.
FORGER = PluginSpec(
    "forger",
    code=greet_body(
        "channel = next(o for o in gc.get_objects() if isinstance(o, Channel))\n"
        'channel.send(OK, "forged\\nsecond line".encode())\n'
        'return "Hi " + name',
        "import gc\nfrom greeter_core.worker.protocol import OK, Channel",
    ),
)


def test_a_greeting_forged_on_the_worker_channel_is_still_one_line(cli, install) -> None:
    """The host applies the one-line rule to what a worker sends, not only the worker to what greet() returns."""
    install(FORGER)
    result = cli("--driver", "forger", "--isolation", "process")
    assert (result.returncode, result.stdout) == (0, "forged\\nsecond line\n")


@pytest.mark.parametrize(
    "command",
    [
        ["--driver", "noisy"],
        ["run", "--driver", "noisy", "--count", "2", "--interval", "0"],
        ["check", "noisy", "--json"],
    ],
    ids=["one-shot", "run", "check"],
)
def test_raw_writes_to_fd_1_land_on_stderr(cli, install, command: list[str]) -> None:
    """A plugin writing bytes straight to file descriptor 1 does not get among the greetings or the report."""
    install(NOISY)
    result = cli(*command)
    assert result.returncode == 0, result.stderr
    assert "raw bytes on fd 1" not in result.stdout
    assert "raw bytes on fd 1" in result.stderr
    if command[0] == "check":
        assert [row["detail"] for row in json.loads(result.stdout)] == ["Hello Universe"]
    else:
        assert set(result.stdout.splitlines()) == {"Hello Universe"}


def test_check_reports_every_hostile_plugin_in_a_row_of_its_own(cli, install) -> None:
    """`greeter check` over hostile plugins gives one failed row each, the good one ok, and valid JSON."""
    hostile = [IMPORT_CTRL_C, PROPERTY_LANGUAGE, METACLASS, GREET_LIAR, GREET_CTRL_C, IMPORT_BASE_EXCEPTION]
    install(ALPHA, SURROGATE, CONTROL_CHARACTERS, *hostile)
    names = ["alpha", "surrogate", "ctrlchars", *(spec.driver for spec in hostile)]
    result = cli("check", "--json", *names)
    assert result.returncode == 1, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {name for name, row in rows.items() if row["ok"]} == {"alpha", "surrogate", "ctrlchars"}
    assert {name for name, row in rows.items() if not row["ok"]} == {spec.driver for spec in hostile}
    assert rows["surrogate"]["detail"] == "lone \\udc80 surrogate"
    assert "Traceback" not in result.stderr


# -- greeter run ----------------------------------------------------------------------------------

#: Each hostile plugin, and what a swap to it answers (200: it loads, then fails or misbehaves while greeting).
SURVIVED = [
    (GREET_GENERATOR_EXIT, 200),
    (GREET_BASE_EXCEPTION, 200),
    (GREET_CANCELLED, 200),
    (GREET_CTRL_C, 200),
    (GREET_UNPRINTABLE_ERROR, 200),
    (GREET_LIAR, 200),
    (GREET_EVIL_STR, 200),
    (CONTROL_CHARACTERS, 200),
    (SURROGATE, 200),
    (THREAD, 200),
    (NOISY, 200),
    (CLOSE_CTRL_C, 200),
    (CLOSE_BASE_EXCEPTION, 200),
    (HANG_CLOSE, 200),
    (IMPORT_CTRL_C, 422),
    (IMPORT_BASE_EXCEPTION, 422),
    (IMPORT_GENERATOR_EXIT, 422),
    (IMPORT_CANCELLED, 422),
    (PROPERTY_GREET, 422),
    (PROPERTY_LANGUAGE, 422),
    (PROPERTY_API_VERSION, 422),
    (METACLASS, 422),
    (LANGUAGE_LIAR, 422),
    (HANG_IMPORT, 422),
]


@pytest.mark.parametrize(("spec", "status"), SURVIVED, ids=[spec.driver for spec, _ in SURVIVED])
def test_greeter_run_survives_the_plugin_and_greets_again_after_swapping_back(
    start, install, spec: PluginSpec, status: int
) -> None:
    """Swapped in over HTTP, each hostile plugin is answered, contained and counted; swapped back, greetings resume."""
    install(ALPHA, spec)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--load-timeout", "1"
    )
    greeter.wait_greetings("Alpha Universe")
    reply = greeter.swap(spec.driver)
    assert reply.status == status, reply
    if status == 200:
        greeter.wait_status(lambda s: s["greetings"] + s["errors"] >= 3 and s["driver"] == spec.driver)
    assert greeter.swap("alpha").status == 200
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.process.poll() is None
    assert greeter.stop() == 0
    assert "Traceback" not in greeter.stderr.text
    assert SUMMARY.search(greeter.stderr.text)


def test_a_swap_to_a_plugin_whose_import_hangs_is_answered_and_later_swaps_go_through(start, install) -> None:
    """The swap is refused after --load-timeout; the current driver greets on and the next swap works."""
    install(ALPHA, BETA, HANG_IMPORT)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--load-timeout", "1"
    )
    reply = greeter.swap("hangimport")
    assert reply.status == 422
    assert reply.data["error"].startswith(
        "plugin 'hangimport' (greeter-hangimport 1.0) did not finish loading within 1 s"
    )
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe")
    assert greeter.stop() == 0


def test_a_plugin_whose_close_hangs_is_left_behind_and_swaps_go_on(start, install) -> None:
    """Swapping away from a plugin whose close() never returns is answered; it is abandoned, in one line."""
    install(ALPHA, BETA, HANG_CLOSE)
    greeter: RunningGreeter = start("--driver", "hangclose", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_greetings("Hi Universe")
    assert greeter.swap("alpha").status == 200
    assert greeter.swap("beta").status == 200
    greeter.wait_greetings("Beta Universe")
    greeter.stderr.search(r"plugin 'hangclose' \(greeter-hangclose 1\.0\) did not close within 5 s; left it running")
    assert greeter.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_greeter_run_even_if_the_plugin_swallows_it(start, install, signum: int) -> None:
    """A greet() that swallows KeyboardInterrupt is abandoned after the grace period: exit 0, summary, one line why."""
    install(SWALLOW)
    greeter: RunningGreeter = start("--driver", "swallow")
    greeter.stderr.search("greeter.plugins.swallow: sleeping")
    assert greeter.stop(signum) == 0
    assert "greeter run: plugin code did not let go within 5 s of the stop request" in greeter.stderr.text
    assert greeter.summary()[:2] == (0, 0)


def test_a_stop_signal_during_a_hung_swap_ends_greeter_run(start, install) -> None:
    """SIGTERM while a swap waits on a plugin's hung import stops greeter run at once, exit 0."""
    install(ALPHA, HANG_IMPORT)
    greeter: RunningGreeter = start(
        "--driver", "alpha", "--interval", "0.01", "--control", "127.0.0.1:0", "--load-timeout", "600"
    )
    greeter.wait_greetings("Alpha Universe")

    def swap() -> None:
        with contextlib.suppress(OSError):  # greeter run stops before it can answer
            greeter.swap("hangimport")

    threading.Thread(target=swap, daemon=True).start()
    greeter.stderr.search("greeter.plugins.hangimport: importing")
    assert greeter.stop() == 0
    assert "did not let go" not in greeter.stderr.text
    assert greeter.summary()[2] == 0


def test_greeter_run_exits_although_the_plugin_left_threads_running(cli, install) -> None:
    """Non-daemon threads a plugin started do not keep greeter run from ending: exit 0, one line."""
    install(THREAD)
    result = cli("run", "--driver", "thread", "--count", "2", "--interval", "0")
    assert (result.returncode, result.stdout) == (0, "Hi Universe\n" * 2)
    assert "plugin code left 2 threads running" in result.stderr


def test_the_users_ctrl_c_in_the_loop_is_not_taken_for_the_plugins(start, install) -> None:
    """A plugin raising KeyboardInterrupt is counted as an error; the user's SIGINT still stops the loop."""
    install(GREET_CTRL_C)
    greeter: RunningGreeter = start("--driver", "ctrlc", "--interval", "0.01", "--control", "127.0.0.1:0")
    greeter.wait_status(lambda s: s["errors"] >= 3)
    assert greeter.stop(signal.SIGINT) == 0
    assert greeter.summary()[1] >= 3
