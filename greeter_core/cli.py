"""The ``greeter`` command: a thin shell over the ``greeter_core`` API.

``greeter --driver NAME`` greets once; ``list``, ``check``, ``run`` and
``new-plugin`` are subcommands. Each command's module is imported only when
that command runs, so the one-shot greeting pays for nothing else.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

from .api import DEFAULT_NAME
from .drive import CHECK_ISOLATION, DEFAULT_CALL_TIMEOUT, ISOLATION_MODES, LoadOptions
from .errors import GreeterError, UsageError, install_hint
from .guard import Command, plugin_output_to_stderr

if TYPE_CHECKING:
    import argparse

    from .checkup import CheckResult
    from .lock import PluginLock
    from .loop import RunPlan
    from .policy import PluginPolicy

__all__ = ["main"]

log = logging.getLogger(__name__)

INSTALL_HINT = f"no greeter plugins are installed; install one, e.g.: {install_hint('greeter-english')}"

#: policy.ALLOW_ENV, policy.DISABLE_ENV and lock.LOCK_ENV, named here so that the one-shot greeting
#: imports policy.py and lock.py only when one of them is set (tests/test_policy.py checks they agree).
POLICY_ENV = ("GREETER_PLUGINS", "GREETER_DISABLE")
LOCK_ENV = "GREETER_LOCK"


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are one line, as every user mistake should be.

    argparse (with gettext and locale) is imported here, not by this module:
    the one-shot greeting reads its arguments without it (:func:`_one_shot`).
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    return Parser(**kwargs)


def _invalid(message: str) -> Exception:
    """The error an option's type function raises; argparse is imported by then (it is the caller)."""
    import argparse

    return argparse.ArgumentTypeError(message)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise _invalid(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _invalid(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise _invalid(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise _invalid("must be greater than 0")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _whole(minimum: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _invalid(f"expected a whole number, got {text!r}") from None
        if value < 0 or 0 < value < minimum:
            raise _invalid(f"must be 0 (no limit) or at least {minimum}, got {value}")
        return value

    return whole


def _env_item(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition("=")
    if not name or "\0" in text:
        raise _invalid(f"expected NAME or NAME=VALUE, got {text!r}")
    return name, value if sep else None


def _loading(parser: argparse.ArgumentParser, isolation: str = LoadOptions().isolation) -> None:
    parser.add_argument(
        "--option",
        dest="options",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        default=[],
        help="pass an option to the plugin (its context.config); repeatable",
    )
    parser.add_argument(
        "--isolation",
        choices=ISOLATION_MODES,
        default=isolation,
        help="run the plugin in this process (none, fastest) or in a worker process that "
        f"cannot take the host down (process); default: {isolation}",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check every file of the plugin's distribution against its RECORD before loading",
    )
    defaults = LoadOptions()
    worker = parser.add_argument_group("with --isolation process (see docs/isolation.md)")
    worker.add_argument(
        "--call-timeout",
        type=_positive_seconds,
        default=DEFAULT_CALL_TIMEOUT,
        metavar="SECONDS",
        help=f"kill a worker whose greet() takes longer (default: {DEFAULT_CALL_TIMEOUT:g})",
    )
    worker.add_argument(
        "--worker-memory",
        type=_whole(1),
        metavar="MIB",
        help=f"stop a worker using more memory (default: {defaults.worker_memory}; 0: no limit)",
    )
    worker.add_argument(
        "--worker-cpu",
        type=_seconds,
        metavar="SECONDS",
        help="stop a worker that used more CPU time in its life (default: no limit)",
    )
    worker.add_argument(
        "--worker-files",
        type=_whole(16),
        metavar="N",
        help=f"stop a worker holding more open files (default: {defaults.worker_files}; 0: no limit)",
    )
    worker.add_argument(
        "--worker-env",
        type=_env_item,
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="give the worker this environment variable (the host's value, or VALUE); repeatable. "
        "Otherwise a worker gets only PATH, HOME, the locale and a few more, never greeter's own",
    )


def _policy_options(parser: argparse.ArgumentParser, *, lock: bool = True) -> None:
    """--plugins, --disable and --lock: which plugins may be loaded at all (see docs/operating.md)."""
    parser.add_argument(
        "--plugins",
        metavar="NAME,...",
        help="load only these plugins, never any other (replaces $GREETER_PLUGINS)",
    )
    parser.add_argument(
        "--disable",
        metavar="NAME",
        action="append",
        default=[],
        help="never load (or import) this plugin; repeatable, added to $GREETER_DISABLE",
    )
    if lock:
        parser.add_argument(
            "--lock",
            metavar="FILE",
            help="refuse a plugin whose distribution differs from this lock file, written by "
            "greeter lock (default: $GREETER_LOCK)",
        )


def _greet_parser(prog: str) -> argparse.ArgumentParser:
    import argparse

    commands = "\n".join(f"  {prog} {name:<11} {command.summary}" for name, command in _COMMANDS.items())
    parser = _parser(
        prog=prog,
        usage=f"%(prog)s --driver NAME [--name WHO] [options]\n       %(prog)s {{{','.join(_COMMANDS)}}} ...",
        description="Greet once with the plugin (driver) you name.",
        epilog=f"commands (each has its own --help):\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--driver", required=True, metavar="NAME", help="the plugin to greet with (see: greeter list)")
    parser.add_argument("--name", default=DEFAULT_NAME, metavar="WHO", help=f"who to greet (default: {DEFAULT_NAME})")
    _loading(parser)
    _policy_options(parser)
    _common(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _list_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(prog=f"{prog} list", description="List installed plugins; nothing is imported.")
    parser.add_argument("--json", action="store_true", help="print a JSON array of records")
    _policy_options(parser, lock=False)
    _common(parser)
    return parser


def _check_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(
        prog=f"{prog} check",
        description="Load each plugin, check the Greeter contract and greet once; exit 1 if any fails. "
        "Each plugin runs in a worker process unless --isolation none: none can silence the report.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="plugins to check (default: all installed)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of results")
    _loading(parser, isolation=CHECK_ISOLATION)
    _policy_options(parser)
    _common(parser)
    return parser


def _run_parser(prog: str) -> argparse.ArgumentParser:
    import argparse
    import textwrap

    from .control import ROUTES
    from .slot import DEFAULT_LOAD_TIMEOUT

    routes = (
        textwrap.fill(f"{route.method:<4} {route.usage:<25} {route.does}", 76, subsequent_indent=" " * 31)
        for route in ROUTES
    )
    parser = _parser(
        prog=f"{prog} run",
        description=textwrap.dedent(
            """\
            Greet in a loop. Swap the driver while running over HTTP (--control) or
            with SIGHUP (--driver-file). A failing plugin is logged and counted; the
            loop goes on. SIGINT or SIGTERM stops it with a summary on stderr."""
        ),
        epilog="control endpoint (JSON in, JSON out; /metrics: the Prometheus text format):\n"
        + textwrap.indent("\n".join(routes), "  ")
        + "\n\nSIGHUP re-reads --driver-file and switches to the driver named there\n"
        "(the driver already running: a reload).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--driver", metavar="NAME", help="the plugin to start with (or read from --driver-file)")
    parser.add_argument("--name", default=DEFAULT_NAME, metavar="WHO", help=f"who to greet (default: {DEFAULT_NAME})")
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="pause between greetings (default: 1; 0 allowed)",
    )
    parser.add_argument(
        "--count",
        type=_count,
        metavar="N",
        help="stop after N greetings, failed ones included (default: run until stopped)",
    )
    parser.add_argument(
        "--control",
        metavar="HOST:PORT",
        help="serve the HTTP control endpoint there (e.g. 127.0.0.1:8080; port 0 picks a free one)",
    )
    parser.add_argument(
        "--control-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every control request; mandatory when binding "
        "a non-loopback address (default: $GREETER_CONTROL_TOKEN)",
    )
    parser.add_argument(
        "--driver-file",
        metavar="PATH",
        help="a file holding a driver name; SIGHUP re-reads it and switches to that driver",
    )
    parser.add_argument(
        "--load-timeout",
        type=_positive_seconds,
        default=DEFAULT_LOAD_TIMEOUT,
        metavar="SECONDS",
        help="in process: give up on a plugin whose import and construction take longer; the current "
        f"driver keeps greeting (default: {DEFAULT_LOAD_TIMEOUT:g})",
    )
    _loading(parser)
    _policy_options(parser)
    _common(parser)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _invalid(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise _invalid(f"must be at least 1, got {value}")
    return value


def _lock_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(
        prog=f"{prog} lock",
        description="Write a lock file: every installed plugin distribution, its version, its entry points "
        "and the sha256 of each file it installed, hashed from the files. With --check, list every "
        "difference between the lock file and what is installed (exit 1 if any). Nothing is imported.",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the lock file to write, or with --check to compare with; - for stdout "
        f"(default: ${LOCK_ENV}, else greeter.lock)",
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--json", action="store_true", help="with --check: print a JSON array of differences")
    _common(parser)
    return parser


def _new_plugin_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(
        prog=f"{prog} new-plugin",
        description="Write a complete plugin distribution (pyproject.toml, package, tests using "
        "greeter_core.testing, README) that installs and passes its tests as written.",
    )
    parser.add_argument("language", metavar="LANGUAGE", help="the driver name, e.g. esperanto")
    parser.add_argument("--greeting", required=True, metavar="TEXT", help="the word of greeting, e.g. Saluton")
    parser.add_argument(
        "--universe",
        default=DEFAULT_NAME,
        metavar="TEXT",
        help=f"the default greetee, {DEFAULT_NAME}, in LANGUAGE, e.g. Universo (default: {DEFAULT_NAME})",
    )
    parser.add_argument("--dir", metavar="DIR", help="where to write it (default: ./greeter-LANGUAGE)")
    _common(parser)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _setup_logging(verbose: int, debug: bool, default: int = logging.WARNING) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose == 1 else default
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _load_options(args: argparse.Namespace) -> LoadOptions:
    defaults = LoadOptions()
    worker = {
        "--worker-memory": args.worker_memory,
        "--worker-cpu": args.worker_cpu,
        "--worker-files": args.worker_files,
        "--worker-env": args.worker_env or None,
    }
    given = [flag for flag, value in worker.items() if value is not None]
    if given and args.isolation != "process":
        raise UsageError(f"{given[0]} applies to the worker of --isolation process only")
    return LoadOptions(
        dict(args.options),
        args.isolation,
        args.verify,
        args.call_timeout,
        policy=_policy(args),
        lock=_read_lock(args),
        worker_memory=defaults.worker_memory if args.worker_memory is None else args.worker_memory,
        worker_cpu=defaults.worker_cpu if args.worker_cpu is None else args.worker_cpu,
        worker_files=defaults.worker_files if args.worker_files is None else args.worker_files,
        worker_env={
            name: value if value is not None else os.environ[name]
            for name, value in args.worker_env
            if value is not None or name in os.environ
        },
    )


def _policy(args: argparse.Namespace) -> PluginPolicy | None:
    """The allow-list and deny-list of the environment and the command line; None when neither sets one."""
    if args.plugins is None and not args.disable and not any(name in os.environ for name in POLICY_ENV):
        return None
    from .policy import PluginPolicy

    return PluginPolicy.from_settings(os.environ, plugins=args.plugins, disable=args.disable)


def _read_lock(args: argparse.Namespace) -> PluginLock | None:
    path = args.lock if args.lock is not None else os.environ.get(LOCK_ENV) or None
    if path is None:
        return None
    from .lock import PluginLock

    return PluginLock.read(path)


def _warn_unknown(policy: PluginPolicy | None) -> None:
    """A name the settings list that is not installed is a warning, never an error."""
    if policy is not None:
        from .catalog import listed

        policy.warn_unknown(listed().plugins)


def _cmd_greet(args: argparse.Namespace) -> int:
    from .drive import load

    options = _load_options(args)
    _warn_unknown(options.policy)
    # stdout carries the greeting only: whatever the plugin writes, to sys.stdout or fd 1, goes to stderr.
    with plugin_output_to_stderr() as out:
        with load(args.driver, **options._asdict()) as loaded:
            text = loaded.greet(args.name)
        out.write(text + "\n")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalog import listed
    from .policy import listing

    plugins = listed().plugins
    policy = _policy(args)
    _warn_unknown(policy)
    records = listing(plugins, policy)
    if args.json:
        import json

        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    if not plugins:
        print(INSTALL_HINT, file=sys.stderr)
        return 0
    header: tuple[str, ...] = ("NAME", "DISTRIBUTION", "VERSION", "TARGET")
    rows: list[tuple[str, ...]] = [(p.name, p.distribution, p.version, p.target) for p in plugins]
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

    options = _load_options(args)
    _warn_unknown(options.policy)
    with plugin_output_to_stderr():  # plugin output, to sys.stdout or fd 1, must not corrupt the report
        results = check_plugins(args.names or None, options)
    if args.json:
        import json

        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    elif not results:
        print(INSTALL_HINT, file=sys.stderr)
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
    options = _load_options(args)
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
    from .control import TOKEN_ENV, bind

    token = args.control_token if args.control_token is not None else os.environ.get(TOKEN_ENV) or None
    return run(plan, bind(args.control, token))  # run() owns the server from here: it closes it


def _cmd_lock(args: argparse.Namespace) -> int:
    from .lock import PluginLock

    path = args.output if args.output is not None else os.environ.get(LOCK_ENV) or "greeter.lock"
    if args.check:
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
    lock = PluginLock.snapshot()
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
    return 0


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    path = scaffold(args.language, args.greeting, args.dir, args.universe)
    print(path)
    return 0


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
_GREET = _Command("greet once with the named plugin", _greet_parser, _cmd_greet)

#: The subcommands, in the order the help lists them.
_COMMANDS = {
    "list": _Command("list the installed plugins without loading them", _list_parser, _cmd_list),
    "check": _Command("load and validate plugins, report ok/failed for each", _check_parser, _cmd_check),
    "run": _Command(
        "greet in a loop; hot-swap the driver over HTTP or SIGHUP", _run_parser, _cmd_run, log_level=logging.INFO
    ),
    "lock": _Command("pin every plugin file in a lock file (--check: compare)", _lock_parser, _cmd_lock),
    "new-plugin": _Command(
        "write a new, tested plugin distribution to start from", _new_plugin_parser, _cmd_new_plugin
    ),
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
            message = INSTALL_HINT
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


#: The options :func:`_one_shot` reads, and where they go.
_ONE_SHOT_OPTIONS = {"--driver": "driver", "--name": "name"}


def _one_shot(argv: Sequence[str]) -> argparse.Namespace | None:
    """``greeter --driver NAME [--name WHO]``, read without argparse; None for any other command line.

    The one-shot greeting is what start-up time is measured on, and argparse
    with gettext and locale is a few milliseconds of it. Only the plain
    spellings are read here: each option once, as ``--driver NAME`` or
    ``--driver=NAME``, its value not empty and not starting with ``-``.
    Everything else (another option, an abbreviation, ``--help``, a mistake)
    goes to argparse, which answers with its own messages and exit codes. The
    result is what ``_greet_parser`` would return (tests/test_cli.py checks
    that the two agree), as a namespace of the same attributes.
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
    defaults = LoadOptions()
    args = SimpleNamespace(
        driver=values["driver"],
        name=values.get("name", DEFAULT_NAME),
        options=[],
        isolation=defaults.isolation,
        verify=defaults.verify,
        call_timeout=DEFAULT_CALL_TIMEOUT,
        worker_memory=None,
        worker_cpu=None,
        worker_files=None,
        worker_env=[],
        plugins=None,
        disable=[],
        lock=None,
        verbose=0,
        debug=False,
    )
    return cast("argparse.Namespace", args)  # the same attributes; only its class differs


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
    _setup_logging(args.verbose, args.debug, command.log_level)
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
        return 130
    except BrokenPipeError:
        # The reader went away (`greeter run | head`): stop quietly, and keep
        # the interpreter's final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
