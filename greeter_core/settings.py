"""Every option of ``greeter``, ``greeter check``, ``greeter run`` and ``greeter list``, in one table.

Each :class:`Setting` says its flags, its environment variable, its default,
how its text is read, its help, which commands take it and whether it means
anything only to the worker of ``--isolation process``. argparse's parsers
(:mod:`~greeter_core.options`), the one-shot greeting read without argparse
(``cli._one_shot``), the environment names (``policy``, ``lock``), the
warning for worker-only options and ``/status`` all derive from it, so a
setting added here is added everywhere. It lives at the bottom of the package
and imports only ``api``, so the worker's side can read the same flag names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .api import DEFAULT_NAME

__all__ = [
    "CHECK_ISOLATION",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_LOAD_TIMEOUT",
    "ISOLATION_MODES",
    "SANDBOX_MODES",
    "SETTINGS",
    "InvalidValue",
    "Setting",
    "defaults",
    "env",
    "flag",
    "from_env",
    "setting",
    "shown",
]

#: ``none``: the plugin runs in this process (fastest). ``process``: in a worker
#: process, which it cannot take down with it.
ISOLATION_MODES = ("none", "process")

#: How ``greeter check`` (and :func:`~greeter_core.checkup.check_plugins`) load by
#: default: the diagnostic tool must not be silenced by what it diagnoses.
CHECK_ISOLATION = "process"

#: Seconds an isolated ``greet()`` may take before its worker is killed.
DEFAULT_CALL_TIMEOUT = 5.0

#: Seconds an in-process load (import and construction) may take before ``greeter run`` gives up on it.
DEFAULT_LOAD_TIMEOUT = 10.0

#: A worker's limits when none is given: MiB of data segment, CPU seconds (0: none), open files,
#: processes and threads of its tree.
DEFAULT_WORKER_MEMORY = 1024
DEFAULT_WORKER_CPU = 0.0
DEFAULT_WORKER_FILES = 256
DEFAULT_WORKER_PROCESSES = 64

#: How a worker is confined (docs/isolation.md): ``auto`` as far as the kernel can, saying what it
#: could not; ``require`` refuses to run a plugin unconfined; ``off`` applies nothing.
SANDBOX_MODES = ("auto", "require", "off")
DEFAULT_SANDBOX = "auto"

GREET, LIST, CHECK, RUN = "greet", "list", "check", "run"
LOADING = frozenset({GREET, CHECK, RUN})
POLICY = frozenset({GREET, LIST, CHECK, RUN})
EVERY = POLICY | {"lock", "new-plugin", "completion"}


class InvalidValue(ValueError):
    """A setting's text that cannot mean anything; its message says what was expected."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidValue(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise InvalidValue(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise InvalidValue("must be greater than 0")
    return value


def _whole(minimum: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise InvalidValue(f"expected a whole number, got {text!r}") from None
        if value < 0 or 0 < value < minimum:
            raise InvalidValue(f"must be 0 (no limit) or at least {minimum}, got {value}")
        return value

    return whole


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidValue(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise InvalidValue(f"must be at least 1, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise InvalidValue(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidValue(f"not a TCP port (1-65535): {text!r}")
    return int(text)


def _env_item(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition("=")
    if not name or "\0" in text:
        raise InvalidValue(f"expected NAME or NAME=VALUE, got {text!r}")
    return name, value if sep else None


class Setting:
    """One option: everything every reader of it needs, written once.

    A plain class with slots, not a NamedTuple: this module is on the one-shot
    greeting's path, and building a NamedTuple class costs it a fifth of a millisecond.
    """

    __slots__ = (
        "action",
        "by_command",
        "choices",
        "commands",
        "default",
        "dest",
        "env",
        "flags",
        "help",
        "metavar",
        "required_by",
        "separator",
        "shown",
        "type",
        "worker_only",
    )

    def __init__(
        self,
        dest: str,
        flags: tuple[str, ...],
        help: str,
        commands: frozenset[str],
        default: Any = None,
        *,
        action: str = "store",
        type: Callable[[str], Any] | None = None,
        choices: tuple[str, ...] | None = None,
        metavar: str | None = None,
        env: str | None = None,
        worker_only: bool = False,
        shown: bool = False,
        by_command: Mapping[str, Any] = MappingProxyType({}),
        required_by: frozenset[str] = frozenset(),
        separator: str = ",",
    ) -> None:
        #: Its attribute on the parsed command line (for a load setting, the ``LoadOptions`` field it fills).
        self.dest = dest
        #: ``("--verbose", "-v")``: the long flag first, the one messages name.
        self.flags = flags
        #: What ``--help`` says of it (``{default}``: the command's default; ``{env}``: :attr:`env`).
        self.help = help
        #: The commands that take it: ``greet`` (``greeter --driver``), ``list``, ``check``, ``run``...
        self.commands = commands
        #: Its value when not given (per command: :attr:`by_command`).
        self.default = default
        #: How argparse reads it: ``store``, ``append``, ``store_true`` or ``count``.
        self.action = action
        #: Its text made a value; raises :class:`InvalidValue` saying what was expected.
        self.type = type
        self.choices = choices
        self.metavar = metavar
        #: The environment variable read when the flag is not given.
        self.env = env
        #: It means something only to the worker of ``--isolation process``: without one, a usage error.
        self.worker_only = worker_only
        #: ``GET /status`` shows its value.
        self.shown = shown
        #: Command -> its default there, where it differs from :attr:`default`.
        self.by_command = by_command
        #: The commands that cannot run without it.
        self.required_by = required_by
        #: For a repeatable setting: what separates its items in :attr:`env`'s value.
        self.separator = separator

    def __repr__(self) -> str:
        return f"Setting({self.dest!r}, {self.flags!r})"

    def default_for(self, command: str) -> Any:
        """Its value on *command*'s parsed command line when not given (a fresh list for ``append``)."""
        if self.worker_only:
            return [] if self.action == "append" else None  # None: not given, so LoadOptions' default applies
        if self.action == "append":
            return []
        if self.action == "count":
            return 0
        if self.action == "store_true":
            return False
        return self.by_command.get(command, self.default)


#: In the order ``--help`` lists them; each command takes its own rows, in this order.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "driver",
        ("--driver",),
        "the plugin to greet with (see: greeter list)",
        frozenset({GREET, RUN}),
        metavar="NAME",
        required_by=frozenset({GREET}),
    ),
    Setting(
        "name",
        ("--name",),
        f"who to greet (default: {DEFAULT_NAME})",
        frozenset({GREET, RUN}),
        DEFAULT_NAME,
        metavar="WHO",
    ),
    Setting(
        "interval",
        ("--interval",),
        "pause between greetings (default: 1; 0 allowed)",
        frozenset({RUN}),
        1.0,
        type=_seconds,
        metavar="SECONDS",
    ),
    Setting(
        "count",
        ("--count",),
        "stop after N greetings, failed ones included (default: run until stopped)",
        frozenset({RUN}),
        type=_count,
        metavar="N",
    ),
    Setting(
        "control",
        ("--control",),
        "serve the HTTP control endpoint there (e.g. 127.0.0.1:8080; port 0 picks a free one)",
        frozenset({RUN}),
        metavar="HOST:PORT",
    ),
    Setting(
        "control_token",
        ("--control-token",),
        "require 'Authorization: Bearer TOKEN' on every control request; mandatory when binding "
        "a non-loopback address (default: ${env})",
        frozenset({RUN}),
        metavar="TOKEN",
        env="GREETER_CONTROL_TOKEN",
    ),
    Setting(
        "driver_file",
        ("--driver-file",),
        "a file holding a driver name; SIGHUP re-reads it and switches to that driver",
        frozenset({RUN}),
        metavar="PATH",
    ),
    Setting(
        "load_timeout",
        ("--load-timeout",),
        "in process: give up on a plugin whose import and construction take longer; the current "
        f"driver keeps greeting (default: {DEFAULT_LOAD_TIMEOUT:g})",
        frozenset({RUN}),
        DEFAULT_LOAD_TIMEOUT,
        type=_positive_seconds,
        metavar="SECONDS",
    ),
    Setting(
        "options",
        ("--option",),
        "pass an option to the plugin (its context.config); repeatable",
        LOADING,
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
    ),
    Setting(
        "isolation",
        ("--isolation",),
        "run the plugin in this process (none, fastest) or in a worker process that "
        "cannot take the host down (process); default: {default}",
        LOADING,
        "none",
        choices=ISOLATION_MODES,
        shown=True,
        by_command=MappingProxyType({CHECK: CHECK_ISOLATION}),
    ),
    Setting(
        "verify",
        ("--verify",),
        "check every file of the plugin's distribution against its RECORD before loading",
        LOADING,
        action="store_true",
    ),
    Setting(
        "call_timeout",
        ("--call-timeout",),
        f"kill a worker whose greet() takes longer (default: {DEFAULT_CALL_TIMEOUT:g})",
        LOADING,
        DEFAULT_CALL_TIMEOUT,
        type=_positive_seconds,
        metavar="SECONDS",
        worker_only=True,
    ),
    Setting(
        "worker_memory",
        ("--worker-memory",),
        f"stop a worker using more memory (default: {DEFAULT_WORKER_MEMORY}; 0: no limit)",
        LOADING,
        DEFAULT_WORKER_MEMORY,
        type=_whole(1),
        metavar="MIB",
        worker_only=True,
    ),
    Setting(
        "worker_cpu",
        ("--worker-cpu",),
        "stop a worker that used more CPU time in its life (default: no limit)",
        LOADING,
        DEFAULT_WORKER_CPU,
        type=_seconds,
        metavar="SECONDS",
        worker_only=True,
    ),
    Setting(
        "worker_files",
        ("--worker-files",),
        f"stop a worker holding more open files (default: {DEFAULT_WORKER_FILES}; 0: no limit)",
        LOADING,
        DEFAULT_WORKER_FILES,
        type=_whole(16),
        metavar="N",
        worker_only=True,
    ),
    Setting(
        "worker_processes",
        ("--worker-processes",),
        f"stop a worker whose processes and threads, itself included, number more "
        f"(default: {DEFAULT_WORKER_PROCESSES}; 0: no limit)",
        LOADING,
        DEFAULT_WORKER_PROCESSES,
        type=_whole(4),
        metavar="N",
        worker_only=True,
    ),
    Setting(
        "worker_env",
        ("--worker-env",),
        "give the worker this environment variable (the host's value, or VALUE); repeatable. "
        "Otherwise a worker gets only PATH, HOME, the locale and a few more, never greeter's own",
        LOADING,
        action="append",
        type=_env_item,
        metavar="NAME[=VALUE]",
        worker_only=True,
    ),
    Setting(
        "sandbox",
        ("--sandbox",),
        "confine the worker with Landlock, seccomp and namespaces: auto (as far as this kernel can, "
        "saying what it could not), require (refuse to run it unconfined) or off; default: {default} (${env})",
        LOADING,
        DEFAULT_SANDBOX,
        choices=SANDBOX_MODES,
        env="GREETER_SANDBOX",
        worker_only=True,
        shown=True,
    ),
    Setting(
        "allow_read",
        ("--allow-read",),
        "let the confined worker read PATH (beneath it, for a directory); repeatable (${env}, colon-separated)",
        LOADING,
        action="append",
        metavar="PATH",
        env="GREETER_ALLOW_READ",
        worker_only=True,
        shown=True,
        separator=":",
    ),
    Setting(
        "allow_write",
        ("--allow-write",),
        "let the confined worker write PATH (beneath it, for a directory), never greeter's own files; "
        "repeatable (${env}, colon-separated)",
        LOADING,
        action="append",
        metavar="PATH",
        env="GREETER_ALLOW_WRITE",
        worker_only=True,
        shown=True,
        separator=":",
    ),
    Setting(
        "allow_net",
        ("--allow-net",),
        "let the confined worker open TCP connections to PORT; repeatable (${env}, comma-separated)",
        LOADING,
        action="append",
        type=_port,
        metavar="PORT",
        env="GREETER_ALLOW_NET",
        worker_only=True,
        shown=True,
    ),
    Setting(
        "plugins",
        ("--plugins",),
        "load only these plugins, never any other (replaces ${env})",
        POLICY,
        metavar="NAME,...",
        env="GREETER_PLUGINS",
    ),
    Setting(
        "disable",
        ("--disable",),
        "never load (or import) this plugin; repeatable, added to ${env}",
        POLICY,
        action="append",
        metavar="NAME",
        env="GREETER_DISABLE",
    ),
    Setting(
        "lock",
        ("--lock",),
        "refuse a plugin whose distribution differs from this lock file, written by greeter lock (default: ${env})",
        LOADING,
        metavar="FILE",
        env="GREETER_LOCK",
    ),
    Setting("verbose", ("--verbose", "-v"), "log more (-vv for debug)", EVERY, action="count"),
    Setting("debug", ("--debug",), "show tracebacks and debug logs", EVERY, action="store_true"),
)

_BY_DEST = {s.dest: s for s in SETTINGS}


def setting(dest: str) -> Setting:
    """The row of *dest* (``"worker_memory"``); KeyError for a name no setting has."""
    return _BY_DEST[dest]


def flag(dest: str) -> str:
    """The flag messages name for *dest*: ``flag("worker_memory") == "--worker-memory"``."""
    return _BY_DEST[dest].flags[0]


def env(dest: str) -> str:
    """The environment variable *dest* is read from: ``env("lock") == "GREETER_LOCK"``."""
    name = _BY_DEST[dest].env
    if name is None:
        raise KeyError(f"the setting {dest!r} is read from no environment variable")
    return name


def from_env(row: Setting, environ: Mapping[str, str]) -> Any:
    """*row*'s value from its environment variable, read as its flag's text would be; None when unset or empty.

    A repeatable setting's items are separated by :attr:`Setting.separator`.
    :class:`InvalidValue` names the variable and what was expected.
    """
    text = environ.get(row.env or "", "")
    if not text:
        return None
    items = [item for item in text.split(row.separator) if item] if row.action == "append" else [text]
    values = []
    for item in items:
        try:
            value = row.type(item) if row.type is not None else item
        except InvalidValue as error:
            raise InvalidValue(f"${row.env}={text!r}: {error}") from None
        if row.choices is not None and value not in row.choices:
            raise InvalidValue(f"${row.env}={text!r}: use one of: {', '.join(row.choices)}")
        values.append(value)
    return values if row.action == "append" else values[0]


def defaults(command: str) -> dict[str, Any]:
    """*command*'s parsed command line when no option is given: what argparse fills in, from this table."""
    return {s.dest: s.default_for(command) for s in SETTINGS if command in s.commands}


def shown(values: object) -> dict[str, object]:
    """The settings ``/status`` shows, read from *values* (a ``LoadOptions``), in table order.

    A worker-only one is shown only with a worker: in process it means nothing.
    """
    worker = getattr(values, "isolation", None) == "process"
    return {s.dest: getattr(values, s.dest) for s in SETTINGS if s.shown and (worker or not s.worker_only)}
