"""In-process ``greet()``: what calling a loaded plugin costs, inside the venv being measured.

``VENV/bin/python bench/calls.py --repeats N`` prints a JSON list of figures on stdout (see ``harness.emit``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, compare_calls, emit, ratio_figure, us


def in_process_greet(repeats: int) -> list[Figure]:
    from greeter_english import EnglishGreeter

    import greeter_core

    loaded = greeter_core.load("english")
    direct = EnglishGreeter(greeter_core.HostContext.create("english"))
    base, subject = compare_calls(
        lambda: direct.greet("Universe"), lambda: loaded.obj.greet("Universe"), repeats=repeats
    )
    plugin_call = ratio_figure(
        "in-process `greet()` on the loaded plugin object (vs the class called directly)", base, subject, 1.05, us
    )
    base, subject = compare_calls(lambda: direct.greet("Universe"), lambda: loaded.greet("Universe"), repeats=repeats)
    contained = ratio_figure(
        "in-process contained `greet()`: recover() and the contract check (vs the same)", base, subject, None, us
    )
    return [plugin_call, contained]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="alternating repeats per figure (default: 15)")
    args = parser.parse_args(argv)
    emit(in_process_greet(args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
