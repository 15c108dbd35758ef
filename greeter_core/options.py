"""What the ``greeter`` command line means: one argparse parser per command, and the options made into
:class:`~greeter_core.drive.LoadOptions`, a plugin policy and a lock.

argparse (with gettext and locale) is imported only when a parser is built:
the one-shot greeting reads ``--driver NAME [--name WHO]`` without it
(``cli._one_shot``) and still goes through :func:`load_options`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .api import DEFAULT_NAME
from .drive import LoadOptions
from .errors import UsageError
from .settings import CHECK, GREET, LIST, RUN, SETTINGS, InvalidValue, Setting, env, flag, from_env, setting

if TYPE_CHECKING:
    import argparse

    from .lock import PluginLock
    from .policy import PluginPolicy

__all__ = [
    "LOCK_ENV",
    "POLICY_ENV",
    "check_parser",
    "greet_parser",
    "list_parser",
    "load_options",
    "lock_parser",
    "new_plugin_parser",
    "plugin_policy",
    "read_lock",
    "run_parser",
    "setup_logging",
]

#: The environment variables of the policy and the lock, from the settings table, so that the one-shot
#: greeting imports policy.py and lock.py only when one of them is set.
POLICY_ENV = (env("plugins"), env("disable"))
LOCK_ENV = env("lock")


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are one line, as every user mistake should be, with a suggestion.

    argparse (with gettext and locale) is imported here, not by this module:
    the one-shot greeting reads its arguments without it (``cli._one_shot``).
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        seen: Sequence[str] = ()

        def error(self, message: str) -> NoReturn:
            self.exit(2, f"{self.prog}: error: {_mistyped(self, self.seen) or message} (see {self.prog} --help)\n")

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            self.seen = list(sys.argv[1:] if args is None else args)
            return super().parse_known_args(args, namespace)

    return Parser(**kwargs)


def _mistyped(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """What to say of the first ``--word`` in *argv* that is no option of *parser*, or None if there is none.

    It is named before anything else argparse would say: ``--drvier X`` is why
    ``--driver`` seems missing. A close option is suggested, as a mistyped
    command is (``cli._no_command``).
    """
    import difflib

    flags = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    for word in argv:
        if word == "--":
            break
        option = word.partition("=")[0]
        if not option.startswith("--") or any(flag.startswith(option) for flag in flags):
            continue  # a value, or an option (argparse takes unique abbreviations)
        close = difflib.get_close_matches(option, flags, n=1, cutoff=0.6)
        return f"unknown option {option}" + (f"; did you mean {close[0]}?" if close else "")
    return None


def _typed(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """A settings table converter as argparse wants it: its InvalidValue becomes argparse's own error."""
    import argparse

    def typed(text: str) -> Any:
        try:
            return convert(text)
        except InvalidValue as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    typed.__name__ = convert.__name__
    return typed


def _add(parser: argparse.ArgumentParser, command: str, only: frozenset[str] | None = None) -> None:
    """Add *command*'s rows of the settings table (those in *only*, if given) to *parser*, in table order."""
    worker: Any = None
    for row in SETTINGS:
        if command not in row.commands or (only is not None and row.dest not in only):
            continue
        default = row.default_for(command)
        target: Any = parser
        if row.worker_only:
            if worker is None:
                worker = parser.add_argument_group("with --isolation process (see docs/isolation.md)")
            target = worker
        kwargs: dict[str, Any] = {"dest": row.dest, "action": row.action, "default": default}
        default_there = str(row.by_command.get(command, row.default))
        kwargs["help"] = row.help.replace("{default}", default_there).replace("{env}", row.env or "")
        if row.action in ("store", "append"):
            kwargs["metavar"] = row.metavar
            if row.type is not None:
                kwargs["type"] = _typed(row.type)
            if row.choices is not None:
                kwargs["choices"] = row.choices
                del kwargs["metavar"]
        if command in row.required_by:
            kwargs["required"] = True
        target.add_argument(*sorted(row.flags, key=len), **kwargs)


def greet_parser(prog: str, commands: Mapping[str, str]) -> argparse.ArgumentParser:
    """``greeter --driver NAME``'s parser; its help lists the subcommands, *commands* (name: summary)."""
    import argparse

    listed = "\n".join(f"  {prog} {name:<11} {summary}" for name, summary in commands.items())
    parser = _parser(
        prog=prog,
        usage=f"%(prog)s --driver NAME [--name WHO] [options]\n       %(prog)s {{{','.join(commands)}}}",
        description="Greet once with the plugin (driver) you name.",
        epilog=f"commands (each has its own --help):\n{listed}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add(parser, GREET)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def list_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(prog=f"{prog} list", description="List installed plugins; nothing is imported.")
    parser.add_argument("--json", action="store_true", help="print a JSON array of records")
    _add(parser, LIST)
    return parser


def check_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(
        prog=f"{prog} check",
        description="Load each plugin, check the Greeter contract and greet once; exit 1 if any fails. "
        "Each plugin runs in a worker process unless --isolation none: none can silence the report.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="plugins to check (default: all installed)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of results")
    _add(parser, CHECK)
    return parser


def run_parser(prog: str) -> argparse.ArgumentParser:
    import argparse
    import textwrap

    from .control import ROUTES

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
    _add(parser, RUN)
    return parser


def lock_parser(prog: str) -> argparse.ArgumentParser:
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
    grants = parser.add_argument_group(
        "per-plugin sandbox grants, reviewed once and kept in the lock file (see docs/operating.md)",
        "Each adds to what the lock file being rewritten already grants; a worker of a locked plugin "
        "gets these and the command line's --allow-* grants, no more.",
    )
    for dest, what in (("allow_read", "PATH"), ("allow_write", "PATH"), ("allow_net", "PORT")):
        grants.add_argument(
            flag(dest),
            dest=f"grant_{dest}",
            action="append",
            default=[],
            type=_typed(_granted(setting(dest).type)),
            metavar=f"NAME={what}",
            help=f"let plugin NAME's worker do what {flag(dest)} {what} allows; repeatable",
        )
    _add(parser, "lock")
    return parser


def _granted(convert: Callable[[str], Any] | None) -> Callable[[str], tuple[str, Any]]:
    """``NAME=VALUE`` read as a plugin's name and *convert*'s value (a path is made absolute: the lock is read
    from anywhere)."""

    def granted(text: str) -> tuple[str, Any]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise InvalidValue(f"expected NAME=VALUE (a plugin's name, then what to grant it), got {text!r}")
        return name, convert(value) if convert is not None else os.path.abspath(value)

    granted.__name__ = "grant"
    return granted


def new_plugin_parser(prog: str) -> argparse.ArgumentParser:
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
    _add(parser, "new-plugin")
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def setup_logging(verbose: int, debug: bool, default: int = logging.WARNING) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose == 1 else default
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The parsed command line made into LoadOptions; a worker-only option without a worker is a usage error.

    A worker-only option is None (or empty) when not given (the settings
    table's :meth:`~greeter_core.settings.Setting.default_for`), so that
    ``LoadOptions``' own default applies. With a worker, a worker-only
    setting's environment variable (``$GREETER_SANDBOX``...) counts where its
    flag is not given; without one it is not read (a variable exported for
    other runs is no usage error).
    """
    worker = [row for row in SETTINGS if row.worker_only and getattr(args, row.dest, None) not in (None, [])]
    if worker and args.isolation != "process":
        raise UsageError(
            f"{worker[0].flags[0]} applies to the worker of --isolation process only; "
            "add --isolation process, or leave it out"
        )
    given = {row.dest: getattr(args, row.dest) for row in worker}
    if args.isolation == "process":  # a worker-only setting's variable counts where its flag is not given
        for row in SETTINGS:
            if row.worker_only and row.env and row.dest not in given:
                value = _from_env(row)
                if value is not None:
                    given[row.dest] = value
    given = {dest: tuple(value) if isinstance(value, list) else value for dest, value in given.items()}
    if "worker_env" in given:
        given["worker_env"] = {
            name: value if value is not None else os.environ[name]
            for name, value in args.worker_env
            if value is not None or name in os.environ
        }
    return LoadOptions(
        config=dict(args.options),
        isolation=args.isolation,
        verify=args.verify,
        policy=plugin_policy(args),
        lock=read_lock(args),
        **given,
    )


def _from_env(row: Setting) -> Any:
    """*row*'s value from its environment variable (None: unset); a usage error for a value that means nothing."""
    try:
        return from_env(row, os.environ)
    except InvalidValue as error:
        raise UsageError(str(error)) from None


def plugin_policy(args: argparse.Namespace) -> PluginPolicy | None:
    """The allow-list and deny-list of the environment and the command line; None when neither sets one."""
    if args.plugins is None and not args.disable and not any(name in os.environ for name in POLICY_ENV):
        return None
    from .policy import PluginPolicy

    return PluginPolicy.from_settings(os.environ, plugins=args.plugins, disable=args.disable)


def read_lock(args: argparse.Namespace) -> PluginLock | None:
    path = args.lock if args.lock is not None else os.environ.get(LOCK_ENV) or None
    if path is None:
        return None
    from .lock import PluginLock

    return PluginLock.read(path)
