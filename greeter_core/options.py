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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .api import DEFAULT_NAME
from .drive import CHECK_ISOLATION, DEFAULT_CALL_TIMEOUT, ISOLATION_MODES, LoadOptions
from .errors import UsageError

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

#: policy.ALLOW_ENV, policy.DISABLE_ENV and lock.LOCK_ENV, named here so that the one-shot greeting
#: imports policy.py and lock.py only when one of them is set (tests/test_policy.py checks they agree).
POLICY_ENV = ("GREETER_PLUGINS", "GREETER_DISABLE")
LOCK_ENV = "GREETER_LOCK"

#: The sandbox's settings from the environment (flags win): a mode, os.pathsep-separated paths,
#: comma-separated ports. See docs/isolation.md.
SANDBOX_ENV = {
    "sandbox": "GREETER_SANDBOX",
    "allow_read": "GREETER_ALLOW_READ",
    "allow_write": "GREETER_ALLOW_WRITE",
    "allow_net": "GREETER_ALLOW_NET",
}


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
    worker.add_argument(
        "--sandbox",
        choices=("auto", "require", "off"),
        help="confine the worker with Landlock, seccomp and namespaces: auto (default: as far as this "
        "kernel can, saying what it could not), require (refuse to run it unconfined), off "
        f"(${SANDBOX_ENV['sandbox']})",
    )
    worker.add_argument(
        "--allow-read",
        action="append",
        default=[],
        metavar="PATH",
        help="let the confined worker read PATH (beneath it, for a directory); repeatable "
        f"(${SANDBOX_ENV['allow_read']})",
    )
    worker.add_argument(
        "--allow-write",
        action="append",
        default=[],
        metavar="PATH",
        help="let the confined worker write PATH (beneath it, for a directory), never greeter's own files; "
        f"repeatable (${SANDBOX_ENV['allow_write']})",
    )
    worker.add_argument(
        "--allow-net",
        action="append",
        type=_port,
        default=[],
        metavar="PORT",
        help=f"let the confined worker open TCP connections to PORT; repeatable (${SANDBOX_ENV['allow_net']})",
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _invalid(f"not a TCP port (1-65535): {text!r}")
    return int(text)


def _sandbox_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--sandbox and the grants, from the flags or else the environment (``SANDBOX_ENV``)."""
    env = {key: os.environ.get(name, "") for key, name in SANDBOX_ENV.items()}
    mode = args.sandbox or env["sandbox"] or LoadOptions().sandbox
    if mode not in ("auto", "require", "off"):
        raise UsageError(f"${SANDBOX_ENV['sandbox']}={mode!r}: use auto, require or off")
    reads = args.allow_read or [p for p in env["allow_read"].split(os.pathsep) if p]
    writes = args.allow_write or [p for p in env["allow_write"].split(os.pathsep) if p]
    ports = args.allow_net
    if not ports and env["allow_net"]:
        try:
            ports = [_port(p.strip()) for p in env["allow_net"].split(",") if p.strip()]
        except Exception:
            raise UsageError(f"${SANDBOX_ENV['allow_net']}={env['allow_net']!r}: comma-separated TCP ports") from None
    return {"sandbox": mode, "allow_read": tuple(reads), "allow_write": tuple(writes), "allow_net": tuple(ports)}


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


def greet_parser(prog: str, commands: Mapping[str, str]) -> argparse.ArgumentParser:
    """``greeter --driver NAME``'s parser; its help lists the subcommands, *commands* (name: summary)."""
    import argparse

    listed = "\n".join(f"  {prog} {name:<11} {summary}" for name, summary in commands.items())
    parser = _parser(
        prog=prog,
        usage=f"%(prog)s --driver NAME [--name WHO] [options]\n       %(prog)s {{{','.join(commands)}}} ...",
        description="Greet once with the plugin (driver) you name.",
        epilog=f"commands (each has its own --help):\n{listed}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--driver", required=True, metavar="NAME", help="the plugin to greet with (see: greeter list)")
    parser.add_argument("--name", default=DEFAULT_NAME, metavar="WHO", help=f"who to greet (default: {DEFAULT_NAME})")
    _loading(parser)
    _policy_options(parser)
    _common(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def list_parser(prog: str) -> argparse.ArgumentParser:
    parser = _parser(prog=f"{prog} list", description="List installed plugins; nothing is imported.")
    parser.add_argument("--json", action="store_true", help="print a JSON array of records")
    _policy_options(parser, lock=False)
    _common(parser)
    return parser


def check_parser(prog: str) -> argparse.ArgumentParser:
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


def run_parser(prog: str) -> argparse.ArgumentParser:
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
    _common(parser)
    return parser


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
    _common(parser)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def setup_logging(verbose: int, debug: bool, default: int = logging.WARNING) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose == 1 else default
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def load_options(args: argparse.Namespace) -> LoadOptions:
    defaults = LoadOptions()
    worker = {
        "--worker-memory": args.worker_memory,
        "--worker-cpu": args.worker_cpu,
        "--worker-files": args.worker_files,
        "--worker-env": args.worker_env or None,
        "--sandbox": args.sandbox,
        "--allow-read": args.allow_read or None,
        "--allow-write": args.allow_write or None,
        "--allow-net": args.allow_net or None,
    }
    given = [flag for flag, value in worker.items() if value is not None]
    if given and args.isolation != "process":
        raise UsageError(f"{given[0]} applies to the worker of --isolation process only")
    return LoadOptions(
        dict(args.options),
        args.isolation,
        args.verify,
        args.call_timeout,
        policy=plugin_policy(args),
        lock=read_lock(args),
        worker_memory=defaults.worker_memory if args.worker_memory is None else args.worker_memory,
        worker_cpu=defaults.worker_cpu if args.worker_cpu is None else args.worker_cpu,
        worker_files=defaults.worker_files if args.worker_files is None else args.worker_files,
        worker_env={
            name: value if value is not None else os.environ[name]
            for name, value in args.worker_env
            if value is not None or name in os.environ
        },
        **(_sandbox_settings(args) if args.isolation == "process" else {}),
    )


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
