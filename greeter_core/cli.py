"""The ``greeter`` command: a thin shell over the ``greeter_core`` API.

``greeter --driver NAME`` greets once; ``list``, ``check``, ``run``, ``lock``
and ``new-plugin`` are subcommands: one table (``_COMMANDS``) of what each
is, how its command line is read (:mod:`greeter_core.options`) and what runs
it. Each command's module is imported only when that command runs, so the
one-shot greeting pays for nothing else.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .errors import GreeterError, UsageError, install_hint
from .guard import Command, plugin_output_to_stderr
from .options import (
    LOCK_ENV,
    check_parser,
    greet_parser,
    list_parser,
    load_options,
    lock_parser,
    new_plugin_parser,
    plugin_policy,
    run_parser,
    setup_logging,
)
from .settings import GREET, defaults, env, setting

if TYPE_CHECKING:
    import argparse

    from .checkup import CheckResult
    from .lock import LockedGrants
    from .loop import RunPlan
    from .policy import PluginPolicy

__all__ = ["main"]

log = logging.getLogger(__name__)


def _install_hint() -> str:
    """What to say when no plugin is installed (read from the user's settings: only when it is said)."""
    return f"no greeter plugins are installed; install one, e.g.: {install_hint('greeter-english')}"


def _warn_unknown(policy: PluginPolicy | None) -> None:
    """A name the settings list that is not installed is a warning, never an error."""
    if policy is not None:
        from .catalog import listed

        policy.warn_unknown(listed().plugins)


def _cmd_greet(args: argparse.Namespace) -> int:
    from .drive import load

    options = load_options(args)
    _warn_unknown(options.policy)
    # stdout carries the greeting only: whatever the plugin writes, to sys.stdout or fd 1, goes to stderr.
    with plugin_output_to_stderr() as out:
        with load(args.driver, options) as loaded:
            text = loaded.greet(args.name)
        out.write(text + "\n")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalog import listed
    from .policy import listing

    plugins = listed().plugins
    if any(p.environment for p in plugins):
        from .environments import warn_broken

        warn_broken(plugins)
    policy = plugin_policy(args)
    _warn_unknown(policy)
    records = listing(plugins, policy)
    if args.json:
        import json

        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    if not plugins:
        print(_install_hint(), file=sys.stderr)
        return 0
    header: tuple[str, ...] = ("NAME", "DISTRIBUTION", "VERSION", "TARGET")
    rows: list[tuple[str, ...]] = [(p.name, p.distribution, p.version, p.target) for p in plugins]
    if any(p.environment for p in plugins):  # a column only when some plugin has an environment of its own
        header += ("WHERE",)
        rows = [(*row, p.where) for row, p in zip(rows, plugins, strict=True)]
    if policy is not None:  # a column only when a policy is set: the plain listing stays as it was
        header += ("STATE",)
        rows = [
            (*row, f"disabled by {r['disabled_by']}" if r["disabled"] else "enabled")
            for row, r in zip(rows, records, strict=True)
        ]
    _print_table(header, rows)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .checkup import check_plugins

    options = load_options(args)
    _warn_unknown(options.policy)
    with plugin_output_to_stderr():  # plugin output, to sys.stdout or fd 1, must not corrupt the report
        results = check_plugins(args.names or None, options)
    if args.json:
        import json

        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    elif not results:
        print(_install_hint(), file=sys.stderr)
    else:
        _print_table(
            ("RESULT", "NAME", "DISTRIBUTION", "LANGUAGE", "DETAIL"),
            [(_result(r), r.name, r.distribution, r.language or "-", r.detail) for r in results],
        )
    if not results:
        return 1
    return max((r.exit_code for r in results), default=0)


def _result(result: CheckResult) -> str:
    return "ok" if result.ok else "disabled" if result.disabled else "failed"


def _run_plan(args: argparse.Namespace) -> RunPlan:
    """Check the user's ``greeter run`` arguments (UsageError, exit 2, on a mistake)."""
    from .loop import RunPlan, read_driver_file

    if args.driver is None and args.driver_file is None:
        raise UsageError("greeter run needs --driver NAME or --driver-file PATH")
    from_file = read_driver_file(args.driver_file) if args.driver_file is not None else None
    options = load_options(args)
    _warn_unknown(options.policy)
    return RunPlan(
        driver=args.driver if args.driver is not None else str(from_file),
        who=args.name,
        interval=args.interval,
        stop_after=args.count,
        driver_file=args.driver_file,
        options=options,
        load_timeout=args.load_timeout,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from .loop import run

    plan = _run_plan(args)
    if args.control is None:
        return run(plan)
    from .control import bind

    token = args.control_token if args.control_token is not None else os.environ.get(env("control_token")) or None
    return run(plan, bind(args.control, token))  # run() owns the server from here: it closes it


def _cmd_lock(args: argparse.Namespace) -> int:
    from .lock import PluginLock

    path = args.output if args.output is not None else os.environ.get(LOCK_ENV) or "greeter.lock"
    granted = _lock_grants(args)
    if args.check:
        if granted:
            raise UsageError("greeter lock --check compares only; grant with greeter lock --allow-* NAME=VALUE")
        if path == "-":
            raise UsageError("greeter lock --check compares with a file: name it with --output FILE")
        differences = PluginLock.read(path).differences()
        if args.json:
            import json

            print(json.dumps([d.as_dict() for d in differences], ensure_ascii=False, indent=2))
        else:
            for difference in differences:
                print(difference)
        if differences:
            count = len(differences)
            print(f"{path}: {count} difference{'' if count == 1 else 's'} from what is installed", file=sys.stderr)
            return 1
        print(f"{path}: every installed plugin distribution matches", file=sys.stderr)
        return 0
    previous = PluginLock.read(path) if path != "-" and os.path.exists(path) else None
    lock = PluginLock.snapshot().with_grants(granted, previous)
    if not lock.distributions:
        log.warning("no plugin distribution to lock: a lock file without any lets no plugin load")
    if path == "-":
        sys.stdout.write(lock.dumps())
        return 0
    try:
        lock.write(path)
    except OSError as error:
        raise UsageError(f"cannot write the lock file {path!r}: {error.strerror or error}") from None
    files = sum(len(d.files) for d in lock.distributions.values())
    count = len(lock.distributions)
    print(f"wrote {path}: {count} plugin distribution{'' if count == 1 else 's'}, {files} files", file=sys.stderr)
    for dist in sorted(lock.distributions.values()):
        for name, grant in sorted(dist.grants.items()):
            print(f"  {name} is granted {grant.describe()}", file=sys.stderr)
    return 0


def _lock_grants(args: argparse.Namespace) -> dict[str, LockedGrants]:
    """``greeter lock``'s ``--allow-* NAME=VALUE``, gathered per plugin (each value once, in order)."""
    from .lock import LockedGrants

    per_plugin: dict[str, dict[str, list[Any]]] = {}
    for field in LockedGrants._fields:
        for name, value in getattr(args, f"grant_{field}"):
            values = per_plugin.setdefault(name, {f: [] for f in LockedGrants._fields})[field]
            if value not in values:
                values.append(value)
    return {name: LockedGrants(**{f: tuple(v) for f, v in fields.items()}) for name, fields in per_plugin.items()}


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    path = scaffold(args.language, args.greeting, args.dir, args.universe)
    print(path)
    return 0


def _completion_parser(prog: str) -> argparse.ArgumentParser:
    from .completion import parser

    return parser(prog)


def _cmd_completion(args: argparse.Namespace) -> int:
    from .completion import run

    return run(args, _GREET.parser, {name: command.parser for name, command in _COMMANDS.items()})


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from unicodedata import east_asian_width

    def width(text: str) -> int:  # 你好 takes four columns in a terminal, not two
        return sum(2 if east_asian_width(char) in "WF" else 1 for char in text)

    widths = [max(width(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell + " " * (size - width(cell)) for cell, size in zip(row, widths, strict=True)).rstrip())


class _Command(NamedTuple):
    """One command: what the top-level help says of it, its parser, what runs it."""

    summary: str
    parser: Callable[[str], argparse.ArgumentParser]
    handler: Callable[[argparse.Namespace], int]
    log_level: int = logging.WARNING


#: ``greeter --driver NAME``, the command that runs when no subcommand is named.
def _greet_parser(prog: str) -> argparse.ArgumentParser:
    return greet_parser(prog, {name: command.summary for name, command in _COMMANDS.items()})


_GREET = _Command("greet once with the named plugin", _greet_parser, _cmd_greet)


def _installing(command: str) -> tuple[Callable[[str], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    """``greeter install``/``uninstall``: their parser and handler, in :mod:`greeter_core.installing`."""

    def parser(prog: str) -> argparse.ArgumentParser:
        from . import installing

        return getattr(installing, f"{command}_parser")(prog)  # type: ignore[no-any-return]

    def handler(args: argparse.Namespace) -> int:
        from . import installing

        return getattr(installing, f"cmd_{command}")(args)  # type: ignore[no-any-return]

    return parser, handler


#: The subcommands, in the order the help lists them.
_COMMANDS = {
    "list": _Command("list the installed plugins without loading them", list_parser, _cmd_list),
    "check": _Command("load and validate plugins, report ok/failed for each", check_parser, _cmd_check),
    "run": _Command(
        "greet in a loop; hot-swap the driver over HTTP or SIGHUP", run_parser, _cmd_run, log_level=logging.INFO
    ),
    "install": _Command("install plugins, each in an environment of its own", *_installing("install")),
    "uninstall": _Command("remove what greeter install installed", *_installing("uninstall")),
    "lock": _Command("pin every plugin file in a lock file (--check: compare)", lock_parser, _cmd_lock),
    "new-plugin": _Command("write a new, tested plugin distribution to start from", new_plugin_parser, _cmd_new_plugin),
    "completion": _Command("print a shell completion script (bash, zsh, fish)", _completion_parser, _cmd_completion),
}


def _no_command(prog: str, word: str | None) -> int:
    """Bare ``greeter``, or ``greeter WORD`` where WORD is no command: say what would work; exit 2."""
    import difflib

    from .catalog import listed

    installed = sorted({plugin.name for plugin in listed().plugins})
    if word is None:
        print(_greet_parser(prog).format_usage(), end="", file=sys.stderr)
        if installed:
            message = f"name the plugin to greet with, e.g. {prog} --driver {installed[0]} (installed: "
            message += f"{', '.join(installed)}); {prog} --help shows every command and option"
        else:
            message = _install_hint()
    else:
        message = f"unknown command {word!r}; "
        close = difflib.get_close_matches(word, _COMMANDS, n=1, cutoff=0.6)
        if close:
            message += f"did you mean {close[0]!r}?"
        elif word in installed:
            message += f"to greet with the plugin {word!r}: {prog} --driver {word}"
        else:
            message += f"the commands are {', '.join(_COMMANDS)}; to greet: {prog} --driver NAME (see {prog} --help)"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


#: The options :func:`_one_shot` reads (their plain spellings, from the settings table), and where they go.
_ONE_SHOT_OPTIONS = {setting(dest).flags[0]: dest for dest in ("driver", "name")}


def _one_shot(argv: Sequence[str]) -> argparse.Namespace | None:
    """``greeter --driver NAME [--name WHO]``, read without argparse; None for any other command line.

    The one-shot greeting is what start-up time is measured on, and argparse
    with gettext and locale is a few milliseconds of it. Only the plain
    spellings are read here: each option once, as ``--driver NAME`` or
    ``--driver=NAME``, its value not empty and not starting with ``-``.
    Everything else (another option, an abbreviation, ``--help``, a mistake)
    goes to argparse, which answers with its own messages and exit codes. The
    result is what ``_greet_parser`` would return, both filled in from the
    settings table (tests/test_one_shot.py checks that the two agree), as a
    namespace of the same attributes.
    """
    from types import SimpleNamespace

    values: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        option, sep, value = word.partition("=")
        dest = _ONE_SHOT_OPTIONS.get(option)
        if dest is None or dest in values:
            return None
        value = value if sep else next(words, "")
        if not value or value.startswith("-"):
            return None
        values[dest] = value
    if "driver" not in values:
        return None
    return cast("argparse.Namespace", SimpleNamespace(**{**defaults(GREET), **values}))  # only its class differs


@contextmanager
def _uncollected() -> Iterator[None]:
    """The cyclic garbage collector paused for a one-shot greeting; what it built, frozen at the end.

    Start-up builds tens of thousands of objects (stevedore, importlib.metadata,
    the plugin) that live as long as the process; the collector would walk them
    several times while they are built, and all of them once more as the
    interpreter exits: a tenth of the whole command (docs/performance.md).
    Frozen, they are left out of the exit's collection too.
    """
    if not gc.isenabled():  # someone chose otherwise: leave it
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def main(argv: Sequence[str] | None = None, prog: str = "greeter") -> int:
    """Run the ``greeter`` command; return its exit status.

    Without *argv* it runs this process's own command line, and so may tune
    the process for it (:func:`_uncollected`); a program passing *argv* keeps
    its process as it is.
    """
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command, args = _GREET, _one_shot(argv)
    if args is None:
        if not argv or (not argv[0].startswith("-") and argv[0] not in _COMMANDS):
            return _no_command(prog, argv[0] if argv else None)
        command = _COMMANDS[argv.pop(0)] if argv[0] in _COMMANDS else _GREET
        args = command.parser(prog).parse_args(argv)
    setup_logging(args.verbose, args.debug, command.log_level)
    # The user's Ctrl-C told from a plugin's; threads a plugin left behind do not keep the process alive.
    with Command() as held, _uncollected() if own_process and command is _GREET else nullcontext():
        return held.leave(_handle(command, args, prog))


def _handle(command: _Command, args: argparse.Namespace, prog: str) -> int:
    try:
        return command.handler(args)
    except GreeterError as error:
        if args.debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`greeter run | head`): stop quietly, and keep
        # the interpreter's final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
