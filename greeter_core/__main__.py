"""``python -m greeter_core`` and the ``greeter`` console script: the command as a process runs it.

Ctrl-C may come at any moment, also while greeter's own modules are still
being imported (the first few tens of milliseconds, before the command has
even read its arguments): from the first line of greeter's code on it ends the
command with one line and exit 130, never a traceback. Once the command has
decided its exit status, Ctrl-C is ignored while the interpreter exits.
"""

import sys


def main() -> int:
    """Run the ``greeter`` command of this process's command line; its exit status."""
    code = 130
    try:
        try:
            from .cli import main as command

            code = command()
        finally:
            _settled()
    except KeyboardInterrupt:
        print("greeter: interrupted", file=sys.stderr)
    return code


def _settled() -> None:
    """The status is decided: Ctrl-C during the interpreter's own exit (atexit, flushing) is ignored."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    raise SystemExit(main())
