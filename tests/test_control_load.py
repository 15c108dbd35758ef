"""Load: 50 clients send over a thousand swap requests while the loop greets at --interval 0."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

from plugins import ALPHA, BETA, GAMMA, NO_GREET
from running import RunningGreeter, post_json, request

CLIENTS = 50
REQUESTS_PER_CLIENT = 21  # 1,050 swap requests in all
# Swaps that succeed, and ones refused with 404 and 422, by both routes.
TARGETS = ["alpha", "beta", "gamma", "beta", "alpha", "gamma", "french", "nogreet"]
GREETINGS = {"Alpha Universe", "Beta Universe", "Gamma Universe"}


def client(port: int, number: int, replies: list[tuple[int, object]]) -> None:
    """Send this client's share of swap requests; keep every (status, body), or the error met."""
    for i in range(REQUESTS_PER_CLIENT):
        driver = TARGETS[(number + i) % len(TARGETS)]
        try:
            by_body = i % 2
            reply = (
                post_json(port, "/driver", {"driver": driver}) if by_body else request(port, "GET", f"/?mod={driver}")
            )
            replies.append((reply.status, reply.data))
        except Exception as error:  # recorded, and asserted on by the test
            replies.append((0, repr(error)))


def test_a_thousand_concurrent_swaps_keep_the_process_and_its_output_consistent(install, start, tmp_path: Path) -> None:
    """Under 50 concurrent swap clients: every request answered in JSON, every line a whole greeting, swaps exact."""
    install(ALPHA, BETA, GAMMA, NO_GREET)
    out = tmp_path / "stdout.txt"
    with out.open("w", encoding="utf-8") as stdout:
        greeter: RunningGreeter = start(
            "--driver", "alpha", "--interval", "0", "--control", "127.0.0.1:0", stdout=stdout
        )
        greeter.wait_status(lambda s: s["greetings"] > 0)
        replies: list[tuple[int, object]] = []
        threads = [threading.Thread(target=client, args=(greeter.port, n, replies)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert greeter.process.poll() is None
        statuses = Counter(status for status, _ in replies)
        assert len(replies) == CLIENTS * REQUESTS_PER_CLIENT
        assert set(statuses) == {200, 404, 422}, [r for r in replies if r[0] not in (200, 404, 422)][:5]
        assert all(isinstance(body, dict) for _, body in replies)
        final = greeter.status()
        # A request naming the driver already running is answered 200 and switches nothing.
        switched = [body for status, body in replies if status == 200 and body["old"] != body["new"]]  # type: ignore[index]
        assert final["swaps"] == len(switched)
        assert greeter.stop(signal.SIGTERM) == 0

    lines = out.read_text(encoding="utf-8").splitlines()
    assert set(lines) <= GREETINGS, Counter(lines).most_common(5)
    assert len(lines) == greeter.summary()[0] >= final["greetings"]
