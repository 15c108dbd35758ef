"""A worker's crafted frame is that worker's protocol error: `greeter run` keeps greeting, the swap answers 4xx."""

from __future__ import annotations

import pytest
from plugins import ALPHA, PluginSpec, greet_body

#: Plugin code: writes one frame of *kind* whose body is 200,000 `[` on the worker's own channel.
NESTED = """
import gc
from greeter_core.worker.protocol import Channel

def write_nested(kind):
    channel = next(o for o in gc.get_objects() if isinstance(o, Channel))
    channel.send(kind, b"[" * 200_000)
"""

#: Answers its first greeting (the swap's check) with an error frame nested 200,000 deep.
NESTED_ERROR = PluginSpec("nestederror", code=greet_body('write_nested(ord("E"))\nreturn "harmless"', NESTED))

#: Sends a hello nested 200,000 deep while it is imported, before the worker's own hello.
NESTED_HELLO = PluginSpec("nestedhello", code=NESTED + 'write_nested(ord("H"))\n' + greet_body('return "harmless"'))


@pytest.mark.parametrize(
    ("spec", "problem"),
    [(NESTED_ERROR, "a malformed error: JSON nested deeper than"), (NESTED_HELLO, "a malformed hello: JSON nested")],
    ids=["error", "hello"],
)
def test_a_deeply_nested_frame_swapped_in_is_refused_and_the_host_greets_on(
    start, install, spec: PluginSpec, problem: str
) -> None:
    """The host decodes a hostile frame without recursing into it: a 422 naming the plugin, no traceback."""
    install(ALPHA, spec)
    greeter = start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process")
    greeter.wait_greetings("Alpha Universe")
    reply = greeter.swap(spec.driver)
    assert reply.status == 422, reply
    assert f"plugin {spec.driver!r} (greeter-{spec.driver} 1.0): its worker broke the protocol" in reply.data["error"]
    assert problem in reply.data["error"]
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.status()["driver"] == "alpha"
    assert greeter.stop() == 0
    assert "Traceback" not in greeter.stderr.text


#: Passes the swap's check, then answers every later greeting of its worker with the nested error frame.
NESTED_LATER = PluginSpec(
    "nestedlater",
    code=greet_body(
        'global calls\ncalls += 1\nif calls > 1:\n    write_nested(ord("E"))\nreturn "harmless"',
        NESTED + "calls = 0\n",
    ),
)


def test_a_deeply_nested_error_in_the_loop_is_one_error_and_the_host_greets_on(start, install) -> None:
    """The loop's greeting meets the frame: counted as that plugin's error, the host lives and swaps back."""
    install(ALPHA, NESTED_LATER)
    greeter = start("--driver", "alpha", "--interval", "0.02", "--control", "127.0.0.1:0", "--isolation", "process")
    greeter.wait_greetings("Alpha Universe")
    assert greeter.swap("nestedlater").status == 200
    greeter.wait_status(lambda status: status["errors"] >= 2)
    assert greeter.swap("alpha").status == 200
    greeter.wait_greetings("Alpha Universe", 3)
    assert greeter.stop() == 0
    assert "its worker broke the protocol (a malformed error: JSON nested deeper than" in greeter.stderr.text
    assert "Traceback" not in greeter.stderr.text
