"""The host's decoders of what a worker sends, fuzzed: whatever the bytes, one kind of failure, never a crash.

A hello is decoded by ``decode_json`` (``ValueError`` only) and checked by
``check_hello`` (a problem, never an exception); a greeting by
``decode_text`` (``UnicodeDecodeError`` only); an error frame by
``read_error`` (``ProtocolError`` only, naming the plugin the host runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from greeter_core.errors import GreeterError, PluginCallError, ProtocolError
from greeter_core.printable import printable
from greeter_core.record import PluginInfo
from greeter_core.worker import codec
from greeter_core.worker.protocol import check_hello, decode_text

INFO = PluginInfo("victim", "greeter-victim", "1.0", "gt_victim:Plugin")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Bodies the issue names: deep nesting, huge numbers, invalid UTF-8, another encoding, constants.
NASTY = [
    b"[" * 200_000,
    b'{"a":' * 100_000,
    b"[" * 900 + b"]" * 900,
    b'{"kind": "PluginCallError", "fields": ' + b"[" * 5_000 + b"}",
    b"1e400",
    b"-1e400",
    b"1" * 10_000,
    b"9" * 4_000,
    b'{"kind": "PluginAPIVersionError", "fields": {"driver": "x", "plugin": null, "wanted": 1e400, "provided": 1}}',
    b'{"kind": "PluginAPIVersionError", "fields": {"driver": "x", "plugin": null, "wanted": %s, "provided": 1}}'
    % (b"9" * 4_000),
    b'{"kind": "PluginCallError", "fields": {"driver": "x", "plugin": null, "error": "\xff\xfe"}}',
    '{"kind": "PluginCallError"}'.encode("utf-16"),
    b'{"kind": [], "fields": {}}',
    b'{"kind": {}, "fields": {}}',
    b'{"kind": "PluginCallError", "fields": []}',
    b'{"kind": "UsageError", "fields": {"message": "m", "driver": null, "plugin": null}}',
    b'{"kind": "GreeterError", "fields": {"message": "m", "driver": null, "plugin": null}}',
    b'{"kind": "ProtocolError", "fields": {"driver": "x", "plugin": null, "problem": "p"}}',
    b'{"kind": "__class__", "fields": {}}',
    b"NaN",
    b'{"kind": "PluginCallError", "fields": {"driver": "x", "plugin": {"name": NaN}, "error": "e"}}',
    b"\xed\xa0\x80",  # a lone surrogate, encoded
    b"",
    b"\x00",
]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
field_names = st.sampled_from(sorted({name for cls in codec.KINDS.values() for name in cls.wire_fields}))
kinds = st.sampled_from(sorted(codec.KINDS)) | st.sampled_from(["Nope", "describe.__builtins__.get", ""]) | json_values


@st.composite
def error_shaped(draw: st.DrawFn) -> object:
    """An object that looks like an error: a kind, then fields of any names and values."""
    fields = draw(st.dictionaries(field_names | st.text(max_size=10), json_values, max_size=6))
    return {"kind": draw(kinds), "fields": fields}


@st.composite
def almost_valid(draw: st.DrawFn) -> object:
    """A valid error of a kind a worker may send, with one field replaced by any value."""
    kind = draw(st.sampled_from(sorted(codec.SENDABLE_ERRORS)))
    data = json.loads(json.dumps(codec.to_data(SAMPLES[kind])))
    name = draw(st.sampled_from(sorted(data["fields"])))
    data["fields"][name] = draw(json_values)
    return data


def encoded(values: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: json.dumps(value).encode())


@st.composite
def damaged(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A payload cut short, or with bytes that are not UTF-8 put in."""
    payload = draw(payloads)
    at = draw(st.integers(0, len(payload)))
    how = draw(st.sampled_from(["truncate", "insert"]))
    if how == "truncate":
        return payload[:at]
    broken = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf8\x88"]))
    return payload[:at] + broken + payload[at:]


payloads = (
    st.binary(max_size=200)
    | encoded(json_values)
    | encoded(error_shaped())
    | damaged(encoded(error_shaped()))
    | st.builds(lambda opened, closed: b"[" * opened + b"]" * closed, st.integers(0, 50_000), st.integers(0, 50_000))
    | st.builds(lambda digits: b"1" * digits, st.integers(1, 20_000))
)

SAMPLES: dict[str, GreeterError] = {}


def _samples() -> None:
    """One error of every kind a worker may send, for :func:`almost_valid` to damage."""
    from greeter_core import errors

    made: list[GreeterError] = [
        errors.HandshakeError("victim", INFO, "no hello"),
        errors.IntegrityError("victim", INFO, "a.py", "sha256 differs"),
        errors.PluginAPIVersionError("victim", INFO, 7, 1),
        errors.PluginCallError("victim", INFO, "RuntimeError: boom"),
        errors.PluginContractError("victim", INFO, "greet() returned int"),
        errors.PluginLoadError("victim", INFO, "ImportError: nope", target="gt_victim:Plugin"),
        errors.WorkerLimitError("victim", INFO, "--worker-memory 64 MiB"),
    ]
    SAMPLES.update({type(error).__name__: error for error in made})


_samples()


def test_the_samples_cover_every_kind_a_worker_may_send() -> None:
    """almost_valid damages every sendable kind, so a kind added later is fuzzed too."""
    assert set(SAMPLES) == codec.SENDABLE_ERRORS


def host_reads_an_error(payload: bytes) -> GreeterError:
    """What the host makes of an error frame: the sendable error it reports, or the ProtocolError it is."""
    try:
        error = codec.read_error(payload, driver="victim", plugin=INFO)
    except ProtocolError as refused:
        error = refused
    else:
        assert type(error).__name__ in codec.SENDABLE_ERRORS
    assert (error.driver, error.plugin) == ("victim", INFO)
    assert printable(str(error)) == str(error)  # one line: nothing left that printable() would escape
    return error


def host_reads_a_hello(payload: bytes) -> str | None:
    """What the host makes of a hello: a problem with it (None: it is fine); ValueError when it is not JSON."""
    try:
        hello = codec.decode_json(payload)
    except ValueError:
        return "not JSON"
    return check_hello(hello, peer="worker", me="host")


def host_reads_a_greeting(payload: bytes) -> str:
    try:
        return decode_text(payload)
    except UnicodeDecodeError:
        return "not UTF-8"


READERS: dict[str, Callable[[bytes], object]] = {
    "hello": host_reads_a_hello,
    "ok": host_reads_a_greeting,
    "error": host_reads_an_error,
}


@pytest.mark.parametrize("frame", sorted(READERS))
@pytest.mark.parametrize("payload", NASTY, ids=range(len(NASTY)))
def test_the_bodies_the_issue_names_are_refused_or_read(frame: str, payload: bytes) -> None:
    """Deep nesting, huge numbers, invalid UTF-8 and wrong types: read, or refused in the frame's one way."""
    READERS[frame](payload)


@FUZZ
@given(payloads | encoded(almost_valid()) | damaged(encoded(almost_valid())))
@example(b"[" * 200_000)
@example(b'{"kind": [], "fields": {}}')
def test_an_error_frame_is_an_error_a_worker_may_send_or_a_protocol_error(payload: bytes) -> None:
    """Whatever a worker writes as an error, the host gets a sendable error or a ProtocolError naming its plugin."""
    host_reads_an_error(payload)


@FUZZ
@given(payloads)
@example(b"[" * 200_000)
def test_a_hello_is_json_or_a_value_error(payload: bytes) -> None:
    """Whatever a worker writes as its hello, decoding raises ValueError or nothing, and checking never raises."""
    host_reads_a_hello(payload)


@FUZZ
@given(st.binary(max_size=400) | damaged(st.text(max_size=50).map(str.encode)))
def test_a_greeting_is_text_or_a_unicode_error(payload: bytes) -> None:
    """Whatever a worker writes as a greeting, decoding gives text or UnicodeDecodeError."""
    host_reads_a_greeting(payload)


@FUZZ
@given(encoded(almost_valid()))
def test_a_valid_error_with_a_field_replaced_keeps_its_other_fields(payload: bytes) -> None:
    """A refusal is about the data: an error that survives decoding still names this plugin and is printable."""
    error = host_reads_an_error(payload)
    if isinstance(error, PluginCallError):
        assert error.message.startswith("plugin 'victim' (greeter-victim 1.0) failed: ")


def test_a_frame_nested_deeper_than_the_limit_is_refused_even_within_the_recursion_limit() -> None:
    """Nesting is bounded by MAX_DEPTH, not by how deep Python can recurse."""
    deep = b"[" * (codec.MAX_DEPTH + 1) + b"]" * (codec.MAX_DEPTH + 1)
    with pytest.raises(ValueError, match="nested deeper than"):
        codec.decode_json(deep)
    shallow = b"[" * codec.MAX_DEPTH + b"]" * codec.MAX_DEPTH
    assert codec.decode_json(shallow) is not None


def test_a_json_frame_in_utf_16_is_refused() -> None:
    """The channel speaks UTF-8: json.loads would guess UTF-16 from the bytes, the decoder does not."""
    with pytest.raises(ValueError, match="not JSON"):
        codec.decode_json(json.dumps({"kind": "PluginCallError"}).encode("utf-16"))
