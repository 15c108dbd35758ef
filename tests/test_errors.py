"""Errors: one base class, a subclass per failure, messages that say what to do, pickling intact."""

from __future__ import annotations

import pickle
import re
import socket

import pytest

from greeter_core import errors
from greeter_core.discovery import PluginInfo
from greeter_core.worker import codec
from greeter_core.worker.protocol import ERROR, Channel

INFO = PluginInfo("panic", "greeter-panic", "1.0", "greeter_panic:Panic")
IN_ENV = INFO._replace(environment="/data/greeter/envs/greeter-panic/b-1")
OTHER = PluginInfo("panic", "greeter-other", "2.0", "other:Panic")

ALL_ERRORS = [
    errors.GreeterError("plain", driver="panic", plugin=INFO),
    errors.UsageError("bad address"),
    errors.NoSuchDriverError("french", ["english", "chinese"]),
    errors.NoSuchDriverError("french", []),
    errors.DuplicateDriverError("panic", [INFO, OTHER]),
    errors.PluginLoadError("panic", INFO, "ModuleNotFoundError: No module named 'numpy'"),
    errors.PluginLoadTimeoutError("panic", INFO, 10.0),
    errors.PluginContractError("panic", INFO, "greet() returned int, not str"),
    errors.PluginAPIVersionError("panic", INFO, 7, 1),
    errors.PluginCallError("panic", INFO, "RuntimeError: I'm gone."),
    errors.WorkerCrashedError("panic", INFO, "exited with code 1"),
    errors.PluginTimeoutError("panic", INFO, 5.0),
    errors.HandshakeError("panic", INFO, "protocol 2 != 1"),
    errors.HostResourceError("panic", INFO, "start a worker", "[Errno 24] Too many open files"),
    errors.IntegrityError("panic", INFO, "greeter_panic/__init__.py", "sha256 mismatch"),
    errors.LockMismatchError("panic", INFO, "greeter.lock", "greeter_panic/__init__.py", "sha256 differs"),
    errors.PluginDisabledError("panic", INFO, "GREETER_DISABLE", "never imported"),
    errors.ReloadUnsupportedError("panic"),
    errors.RuntimeStoppedError(),
    errors.WorkerLimitError("panic", INFO, "--worker-memory 256 MiB"),
    errors.ProtocolError("panic", INFO, "reply of 20971520 bytes exceeds the 16 MiB limit"),
    errors.WorkerUnavailableError("panic", INFO, "worker exited with code 3", 0.5),
    errors.CircuitOpenError("panic", INFO, 5, 60.0, 42.0),
    errors.NeedsWorkerError(IN_ENV),
    errors.EnvironmentBrokenError(IN_ENV, "the Python 3.11 it was built with (/usr/bin/python3.11) is gone"),
    errors.InstallError("greeter-panic", "No solution found when resolving dependencies"),
    errors.ProvidedVersionError("greeter-panic", "it requires greeter-core>=2"),
    errors.NotInstalledError("greeter-panic"),
]


def across_the_worker_border(error: errors.GreeterError) -> errors.GreeterError:
    """*error* as the host receives it from a worker: as data, sent and received on a real channel."""
    host, worker = socket.socketpair()
    try:
        Channel(worker).send_json(ERROR, codec.to_data(error))
        kind, payload = Channel(host).recv()
        assert kind == ERROR
        return codec.from_data(codec.decode_json(payload))
    finally:
        host.close()
        worker.close()


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_crosses_the_worker_border_intact(error: errors.GreeterError) -> None:
    """An error sent by a worker arrives at the host as the same class with the same message and attributes."""
    copy = across_the_worker_border(error)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_every_error_class_is_listed_above() -> None:
    """The border tests above cover every error class greeter_core.errors exports."""
    exported = {getattr(errors, name) for name in errors.__all__}
    classes = {cls for cls in exported if isinstance(cls, type) and issubclass(cls, errors.GreeterError)}
    assert classes == {type(error) for error in ALL_ERRORS}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"kind": "describe.__builtins__.get", "fields": {}}, "unknown error kind"),
        ({"kind": "PluginInfo", "fields": {}}, "unknown error kind"),
        ({"kind": "one_line", "fields": {}}, "unknown error kind"),
        ({"kind": "__class__", "fields": {}}, "unknown error kind"),
        ({"kind": "PluginCallError", "fields": {"driver": "x", "plugin": None}}, "needs exactly the fields"),
        ({"kind": "PluginCallError", "fields": {"driver": "x", "plugin": None, "error": 3}}, "expected a string"),
        ({"kind": "PluginTimeoutError", "fields": {"driver": "x", "plugin": None, "seconds": "5"}}, "finite"),
        ({"kind": "PluginTimeoutError", "fields": {"driver": "x", "plugin": None, "seconds": float("nan")}}, "finite"),
        ({"kind": "PluginCallError", "fields": {"driver": "x", "plugin": {"name": "x"}, "error": "e"}}, "record"),
        ({"kind": "RuntimeStoppedError", "fields": {}, "extra": 1}, "'kind' and 'fields'"),
        (["PluginCallError", {}], "'kind' and 'fields'"),
    ],
)
def test_data_that_is_not_an_error_is_refused(data: object, problem: str) -> None:
    """from_data builds only greeter_core.errors' classes, from fields of the types they declare."""
    with pytest.raises(ValueError) as caught:
        codec.from_data(data)
    assert problem in str(caught.value)


def test_text_from_the_other_side_is_printable_and_bounded() -> None:
    """Control characters arrive escaped (no forged lines, no terminal escapes); huge text is cut."""
    data = codec.to_data(errors.PluginCallError("panic", INFO, "one\ntwo\r\x1b[31m" + "x" * 20000))
    error = codec.from_data(data)
    assert isinstance(error, errors.PluginCallError)
    assert "\n" not in str(error) and "\x1b" not in str(error) and "\r" not in str(error)
    assert "one\\ntwo\\r\\x1b[31m" in str(error)
    assert len(error.error) < codec.MAX_TEXT + 100 and "more characters]" in error.error


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_pickles(error: errors.GreeterError) -> None:
    """Errors pickle too, for programs that send them across their own process borders."""
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.__dict__) == (type(error), str(error), error.__dict__)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_is_a_greeter_error_with_an_exit_code(error: errors.GreeterError) -> None:
    """Callers catch one base class; the CLI maps each failure to 1 (broken) or 2 (user mistake)."""
    assert isinstance(error, errors.GreeterError)
    assert error.exit_code in (1, 2)


@pytest.mark.parametrize(
    "error",
    [e for e in ALL_ERRORS if e.plugin is not None and type(e) is not errors.GreeterError],
    ids=lambda e: type(e).__name__,
)
def test_plugin_errors_name_the_plugin_and_its_distribution(error: errors.GreeterError) -> None:
    """A message about a plugin says which one and which distribution provided it."""
    assert "'panic'" in str(error)
    assert "greeter-panic" in str(error)
    assert error.plugin in (INFO, IN_ENV)
    assert error.driver == "panic"


def test_unknown_driver_lists_installed_drivers_and_the_install_command() -> None:
    """The user learns what exists, how to get what they asked for, and that it comes from a wheelhouse or index."""
    message = str(errors.NoSuchDriverError("french", ["english", "chinese"]))
    assert "chinese, english" in message
    assert re.search(r"pip install --no-index --find-links \S+ greeter-french\b", message)
    assert "not on PyPI" in message and "wheelhouse" in message


@pytest.mark.parametrize("name", ["../../etc", "gt_alpha:Plugin", "two words", "a;b", "é", "x" * 50 + "/"])
def test_no_install_command_is_made_from_a_name_that_is_no_distribution_name(name: str) -> None:
    """Only a valid distribution name is suggested: `?mod=../../etc` gets no `pip install greeter-../../etc`."""
    message = str(errors.NoSuchDriverError(name, ["english"]))
    assert "pip install" not in message
    assert "a plugin name is an entry-point name such as 'english' (see: greeter list)" in message


def test_unknown_driver_with_nothing_installed_says_so() -> None:
    """With no plugin at all, the message says none is installed rather than listing nothing."""
    message = str(errors.NoSuchDriverError("french", []))
    assert "no greeter plugins are installed" in message
    assert re.search(r"pip install --no-index --find-links \S+ greeter-french\b", message)


def test_duplicate_names_both_distributions() -> None:
    """Two distributions claiming one name are both named, with what to uninstall."""
    message = str(errors.DuplicateDriverError("panic", [INFO, OTHER]))
    assert "greeter-panic 1.0" in message and "greeter-other 2.0" in message
    assert "pip uninstall" in message


def test_api_version_error_names_both_versions_and_the_upgrade() -> None:
    """The refusal says what the plugin wants, what the core has, and what to upgrade."""
    message = str(errors.PluginAPIVersionError("panic", INFO, 7, 1))
    assert "API 7" in message and "API 1" in message
    assert "pip install --upgrade greeter-core" in message


@pytest.mark.parametrize(("typed", "meant"), [("englsh", "english"), ("English", "english"), ("chinse", "chinese")])
def test_a_typo_gets_a_suggestion_instead_of_an_install_command(typed: str, meant: str) -> None:
    """A near miss suggests the installed name and does not send the user to PyPI for the typo."""
    message = str(errors.NoSuchDriverError(typed, ["english", "chinese"]))
    assert f"did you mean {meant!r}?" in message
    assert "pip install" not in message


#: The control endpoint's answer per failure (the table control.status_for had; every other error is 422).
HTTP_STATUS = {
    errors.NoSuchDriverError: 404,
    errors.PluginDisabledError: 403,
    errors.DuplicateDriverError: 409,
    errors.ReloadUnsupportedError: 409,
    errors.RuntimeStoppedError: 409,
    errors.UsageError: 400,
    errors.HostResourceError: 503,
    errors.NeedsWorkerError: 409,
    errors.NotInstalledError: 404,
}

#: What a worker may report: errors about the plugin it runs, each exit 1.
SENDABLE = {
    errors.HandshakeError,
    errors.IntegrityError,
    errors.PluginAPIVersionError,
    errors.PluginCallError,
    errors.PluginContractError,
    errors.PluginLoadError,
    errors.WorkerLimitError,
}


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_each_error_says_its_category_on_its_class(error: errors.GreeterError) -> None:
    """Exit code, HTTP status and whether a worker may send it: one place, the class, read by the CLI and control."""
    from greeter_core.control import status_for

    assert status_for(error) == type(error).http_status == HTTP_STATUS.get(type(error), 422)
    assert type(error).sendable is (type(error) in SENDABLE)
    assert not type(error).sendable or type(error).exit_code == 1


def test_the_kinds_a_worker_may_send_are_derived_from_the_classes() -> None:
    """The codec's table of kinds is every class of greeter_core.errors; SENDABLE_ERRORS those marked sendable."""
    exported = {getattr(errors, name) for name in errors.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, errors.GreeterError)}
    assert set(codec.KINDS.values()) == classes
    assert {cls.__name__ for cls in SENDABLE} == codec.SENDABLE_ERRORS


def test_sendable_is_not_inherited() -> None:
    """A subclass of a sendable error is not sendable unless it says so: a lock mismatch is the host's finding."""

    class Finding(errors.IntegrityError):
        pass

    assert errors.IntegrityError.sendable and not Finding.sendable and not errors.LockMismatchError.sendable


def test_a_class_with_its_own_constructor_must_declare_its_wire_fields() -> None:
    """greeter_core.errors may not add a constructor its wire_fields do not describe; a plugin's subclass may."""

    def define(module: str) -> type:
        namespace = {"__module__": module, "__init__": lambda self, driver: errors.GreeterError.__init__(self, driver)}
        return type("Undeclared", (errors.GreeterError,), namespace)

    with pytest.raises(TypeError, match="does not declare its wire_fields"):
        define(errors.__name__)
    assert define("gt_plugin").__name__ == "Undeclared"  # a plugin's own subclass is its business


@pytest.mark.parametrize(
    "error",
    [e for e in ALL_ERRORS if type(e) is not errors.GreeterError],
    ids=lambda e: type(e).__name__,
)
def test_a_subclass_is_built_through_its_parents_constructor(error: errors.GreeterError, monkeypatch) -> None:
    """Fields a parent sets are set by the parent's __init__, never copied by hand into the subclass."""
    parent = type(error).__bases__[0]
    original = vars(parent)["__init__"]  # every parent defines its own
    calls: list[type] = []

    def spy(self: errors.GreeterError, *args: object, **kwargs: object) -> None:
        calls.append(type(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(parent, "__init__", spy)
    copy = codec.from_data(codec.to_data(error))
    assert calls == [type(error)]
    assert (str(copy), copy.__dict__) == (str(error), error.__dict__)


def test_the_message_helpers_are_exported() -> None:
    """describe, one_line and install_hint are the errors module's public helpers, used across greeter."""
    assert {"describe", "one_line", "install_hint"} <= set(errors.__all__)
    assert errors.describe("panic", INFO) == "plugin 'panic' (greeter-panic 1.0)"
