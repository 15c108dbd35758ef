"""The contract check on a plugin object: a plain int api_version, and none of the plugin's code run to check."""

from __future__ import annotations

from types import MethodType

import pytest

from greeter_core import API_VERSION, Greeter, HostContext
from greeter_core.contract import Violation, closer, validate


def plugin_declaring(api_version: object) -> object:
    """A Greeter-shaped object whose class sets *api_version*."""

    class Plugin:
        def greet(self, name: str) -> str:
            return name

    Plugin.api_version = api_version  # type: ignore[attr-defined]
    return Plugin()


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        (True, "api_version must be an int, not bool"),
        (False, "api_version must be an int, not bool"),
        (1.0, "api_version must be an int, not float"),
        (float(API_VERSION + 1), "api_version must be an int, not float"),
        (float("nan"), "api_version must be an int, not float"),
        ("1", "api_version must be an int, not str"),
        (2**63, "api_version must be a plugin API version, not an int of 64 bits"),
        (10**5000, "api_version must be a plugin API version, not an int of 16610 bits"),
        (-(10**5000), "api_version must be a plugin API version, not an int of 16610 bits"),
    ],
    ids=["true", "false", "float-current", "float-newer", "nan", "str", "2**63", "10**5000", "-10**5000"],
)
def test_an_api_version_that_is_not_a_plain_int_is_a_contract_violation(declared: object, problem: str) -> None:
    """bool is an int to Python (True == 1) and a float may equal one: both are refused, not read as version 1."""
    with pytest.raises(Violation) as caught:
        validate(plugin_declaring(declared))
    assert (caught.value.problem, caught.value.wanted_api) == (problem, None)


@pytest.mark.parametrize("declared", [API_VERSION + 1, 2**63 - 1], ids=["next", "largest"])
def test_a_newer_api_version_is_named_with_the_number_the_plugin_declared(declared: int) -> None:
    """A version the core does not provide yet is an API-version refusal that says which one was wanted."""
    with pytest.raises(Violation) as caught:
        validate(plugin_declaring(declared))
    assert caught.value.wanted_api == declared
    assert str(declared) in caught.value.error("klingon", None).args[0]


def test_the_current_api_version_is_accepted() -> None:
    """The control case: a plain int equal to the core's API passes."""
    assert validate(plugin_declaring(API_VERSION)) == ""


def test_a_plugin_for_an_older_api_is_accepted() -> None:
    """Only a core older than the plugin's API refuses it: a version below the core's passes."""
    assert validate(plugin_declaring(API_VERSION - 1)) == ""


class _Watched(type):
    """A metaclass whose ``==`` records that the host called it (plugin code running inside a check)."""

    calls = 0

    def __eq__(cls, other: object) -> bool:
        _Watched.calls += 1
        return True

    __hash__ = type.__hash__


class _SneakyName(str, metaclass=_Watched):
    """A str subclass, with the metaclass above: what a class's ``__name__`` may be set to."""


def test_a_class_name_that_is_not_a_plain_str_is_shown_as_object_without_asking_it() -> None:
    """A plugin class renamed to a str subclass is named "object", and none of its type's methods run."""

    class Plugin:
        pass

    Plugin.__name__ = _SneakyName("Plugin")
    _Watched.calls = 0
    with pytest.raises(Violation) as caught:
        validate(Plugin())
    assert (caught.value.problem, _Watched.calls) == ("object has no greet() method", 0)


CONTEXT = HostContext.create("klingon")


class _EqualToAll:
    """A callable that says it equals anything, and counts who asked."""

    asked = 0

    def __call__(self, *args: object) -> str:
        return "Hi"

    def __eq__(self, other: object) -> bool:
        _EqualToAll.asked += 1
        return True

    __hash__ = object.__hash__


def test_a_greet_that_claims_to_equal_the_base_class_s_is_taken_as_implemented() -> None:
    """Whether greet() is the base class's own is asked by identity: a callable's == is plugin code."""

    class Plugin(Greeter):
        greet = _EqualToAll()  # type: ignore[assignment]

    _EqualToAll.asked = 0
    assert (validate(Plugin(CONTEXT)), _EqualToAll.asked) == ("", 0)


def test_the_base_class_s_empty_close_is_not_called() -> None:
    """A Greeter that keeps the base close() has nothing to close: no closer, and so no thread at close."""

    class Plugin(Greeter):
        def greet(self, name: str) -> str:
            return name

    assert closer(Plugin(CONTEXT)) is None


def test_a_close_method_whose_function_claims_to_equal_the_base_class_s_is_kept() -> None:
    """A bound close is compared by identity with the base class's: its function's == is not asked."""

    class Plugin:
        close = MethodType(_EqualToAll(), object())

    _EqualToAll.asked = 0
    kept = closer(Plugin())
    assert (kept is not None, _EqualToAll.asked) == (True, 0)


def test_a_close_whose_type_claims_to_be_a_method_type_is_not_asked() -> None:
    """Whether close is a bound method is asked of its exact type: its metaclass's == is plugin code."""

    class Closing(metaclass=_Watched):
        def __call__(self) -> None:
            pass

    class Plugin:
        close = Closing()

    _Watched.calls = 0
    kept = closer(Plugin())
    assert (kept is Plugin.close, _Watched.calls) == (True, 0)
