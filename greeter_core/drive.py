"""Drive a plugin in this process or in a worker: the one place that chooses.

Everything that greets (the one-shot CLI, ``greeter check``, ``greeter run``,
a program using the API) loads through :func:`load` and gets a
:class:`~greeter_core.loaded.LoadedPlugin` back, so none of them asks which
kind it holds. Below this level, :mod:`~greeter_core.loading` knows only this
process and :mod:`~greeter_core.worker` only its worker; neither imports the
other's host side.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from .api import DEFAULT_NAME
from .errors import NoSuchDriverError, PluginLoadTimeoutError, UsageError
from .guard import call_bounded
from .record import PluginInfo
from .settings import (
    CHECK_ISOLATION,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LOAD_TIMEOUT,
    DEFAULT_SANDBOX,
    DEFAULT_WORKER_CPU,
    DEFAULT_WORKER_FILES,
    DEFAULT_WORKER_MEMORY,
    DEFAULT_WORKER_PROCESSES,
    ISOLATION_MODES,
)

if TYPE_CHECKING:
    from .loaded import LoadedPlugin
    from .lock import PluginLock
    from .policy import PluginPolicy
    from .worker.forkserver import ForkServer
    from .worker.sandbox import Sandbox

#: The public names (re-exported by ``greeter_core``); ``RunLoader`` is ``greeter run``'s, not the API's.
__all__ = ["CHECK_ISOLATION", "DEFAULT_CALL_TIMEOUT", "ISOLATION_MODES", "LoadOptions", "fork_server", "load"]

#: The log of ``greeter run`` (the slot, its loader and the loop): a name users filter on, kept stable.
log = logging.getLogger("greeter_core.runtime")


class LoadOptions(NamedTuple):
    """How a plugin is loaded, kept together for a whole run: what :func:`load` takes."""

    config: Mapping[str, str] = MappingProxyType({})
    """The user's ``--option`` values, the plugin's ``context.config``."""

    isolation: str = "none"
    """One of :data:`ISOLATION_MODES`."""

    verify: bool = False
    """Check the plugin's files against its ``RECORD`` before importing it."""

    call_timeout: float = DEFAULT_CALL_TIMEOUT
    """With ``isolation="process"``: the deadline of one whole ``greet()`` call."""

    worker_memory: int = DEFAULT_WORKER_MEMORY
    """With ``isolation="process"``: MiB of memory (data segment) a worker may use; 0: no limit."""

    worker_cpu: float = DEFAULT_WORKER_CPU
    """With ``isolation="process"``: seconds of CPU time a worker may use in its life; 0: no limit
    (a busy worker lives as long as ``greeter run``; ``call_timeout`` bounds each call)."""

    worker_files: int = DEFAULT_WORKER_FILES
    """With ``isolation="process"``: file descriptors a worker may hold open; 0: no limit."""

    worker_processes: int = DEFAULT_WORKER_PROCESSES
    """With ``isolation="process"``: processes and threads a worker's tree may have; 0: no limit."""

    worker_env: Mapping[str, str] = MappingProxyType({})
    """With ``isolation="process"``: environment variables for the worker beyond the few it always
    gets (``PATH``, ``HOME``, the locale...: see ``greeter_core.worker.client.WORKER_ENV``)."""

    policy: PluginPolicy | None = None
    """The allow-list and deny-list (``--plugins``, ``--disable``); None: any installed plugin."""

    lock: PluginLock | None = None
    """The lock file (``--lock``) the plugin's distribution must match; None: no lock."""

    sandbox: str = DEFAULT_SANDBOX
    """With ``isolation="process"``: confine the worker (``auto``: best effort, ``require``: refuse to
    run unconfined, ``off``): ``--sandbox``, see docs/isolation.md."""

    allow_read: tuple[str, ...] = ()
    """Sandbox grants: paths the worker may read (``--allow-read``)."""

    allow_write: tuple[str, ...] = ()
    """Sandbox grants: paths the worker may write (``--allow-write``), never greeter's own."""

    allow_net: tuple[int, ...] = ()
    """Sandbox grants: TCP ports the worker may connect to (``--allow-net``)."""


_DEFAULTS = LoadOptions()


def load(
    plugin: str | PluginInfo,
    options: LoadOptions | None = None,
    *,
    forkserver: ForkServer | None = None,
    **changes: Any,
) -> LoadedPlugin:
    """A ready plugin for *plugin* (a driver name, or a record from ``discover()``/``find()``).

    *options* (:class:`LoadOptions`), with any of its fields given as keywords
    instead or on top: ``load("english", isolation="process")``. With
    ``isolation="process"`` the plugin runs in a worker process, within the
    ``worker_*`` limits and environment; close the result (or use ``with``)
    to stop the worker. With ``verify=True`` every file of the plugin's
    distribution is checked against its ``RECORD`` first. A ``policy`` that
    disables the plugin, or a ``lock`` its distribution does not match,
    refuses it here, before anything of it is imported in either mode. With a
    *forkserver* (see :func:`fork_server`) a worker is forked from it instead
    of starting a fresh interpreter: in milliseconds, not a tenth of a second.
    """
    options = _options(options, changes)
    record = _record(plugin, options)  # the one look at installed metadata, if any step needs one
    if options.policy is not None:
        options.policy.check(record)
    if options.lock is not None:
        assert isinstance(record, PluginInfo)
        options.lock.check(record)
    if options.isolation == "process":
        assert isinstance(record, PluginInfo)
        return _in_worker(record, options, forkserver)
    if not isinstance(record, str) and record.environment:
        from .environments import refuse_in_process

        refuse_in_process(record)  # its own environment: in a worker only (by name: loading refuses it)
    from .loading import load_in_process

    return load_in_process(record, options.config, verify=options.verify)


def _options(options: LoadOptions | None, changes: Mapping[str, Any]) -> LoadOptions:
    """*options* with *changes*, checked; a keyword that names no field is a TypeError, as for any call."""
    options = options or _DEFAULTS
    if changes:
        unknown = sorted(set(changes) - set(LoadOptions._fields))
        if unknown:
            raise TypeError(f"load() got an unexpected keyword argument {unknown[0]!r}")
        empty: dict[str, Mapping[str, str]] = {
            field: MappingProxyType({}) for field in ("config", "worker_env") if changes.get(field, 0) is None
        }
        options = options._replace(**{**changes, **empty})
    if options.isolation not in ISOLATION_MODES:
        raise UsageError(f"unknown isolation mode {options.isolation!r}; use one of: {', '.join(ISOLATION_MODES)}")
    return options


def _record(plugin: str | PluginInfo, options: LoadOptions) -> str | PluginInfo:
    """*plugin*'s installed record, looked up once for every step that needs it; the name where none does.

    The plain one-shot greeting needs none: stevedore finds the entry point
    itself, and a metadata scan would cost it milliseconds. A name that a
    policy disables is refused as disabled even when it is not installed.
    """
    if not isinstance(plugin, str):
        return plugin
    if options.policy is None and options.lock is None and not options.verify and options.isolation == "none":
        return plugin
    from .discovery import find

    try:
        return find(plugin)
    except NoSuchDriverError:
        if options.policy is not None:
            options.policy.check(plugin)
        raise


def _in_worker(record: PluginInfo, options: LoadOptions, forkserver: ForkServer | None) -> LoadedPlugin:
    from .worker.client import WorkerPlugin
    from .worker.protocol import Limits

    limits = Limits(options.worker_memory, options.worker_cpu, options.worker_files, options.worker_processes)
    for field, value in limits._asdict().items():
        if not value >= 0:
            raise UsageError(f"worker limit {field} must be a number >= 0 (0: no limit), not {value!r}")
    if record.environment:
        from .environments import hold

        hold(record)  # it can run, and its build stays while this process lives
    return WorkerPlugin(
        record,
        config=options.config,
        verify=options.verify,
        call_timeout=options.call_timeout,
        limits=limits,
        env=options.worker_env,
        forkserver=forkserver,
        sandbox=_sandbox(record, options),
    ).start()


def _sandbox(record: PluginInfo, options: LoadOptions) -> Sandbox:
    """The worker's sandbox: *options*' grants and what the lock grants *record*, no more.

    ``UsageError`` for a mode or a grant it refuses (deny wins over allow),
    naming the lock file when the grant is the lock's.
    """
    from .worker.client import worker_sys_path
    from .worker.sandbox import MODES, Grants, Sandbox, SandboxError, check_grants

    mode = options.sandbox
    if mode not in MODES:
        raise UsageError(f"unknown sandbox mode {mode!r}; use one of: {', '.join(MODES)}")
    given = Grants(
        tuple(os.path.abspath(p) for p in options.allow_read),
        tuple(os.path.abspath(p) for p in options.allow_write),
        tuple(options.allow_net),
    )
    locked = Grants(*options.lock.grants(record)) if options.lock is not None else Grants()
    protected = [*worker_sys_path(), sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    if record.environment:  # its own environment's site-packages too
        from .environments import worker_sys_path as environment_sys_path

        protected += environment_sys_path(record)
    for grants, source in ((given, ""), (locked, f" (granted to {record.name!r} by the lock file)")):
        try:
            check_grants(grants, protected)
        except SandboxError as error:
            raise UsageError(f"{error}{source}") from None
    both = Grants(
        tuple(dict.fromkeys((*given.allow_read, *locked.allow_read))),
        tuple(dict.fromkeys((*given.allow_write, *locked.allow_write))),
        tuple(dict.fromkeys((*given.allow_net, *locked.allow_net))),
    )
    return Sandbox(mode, both)


def fork_server(options: LoadOptions) -> ForkServer | None:
    """Where a long run forks its isolated workers from, or None (in process, nothing to fork).

    Started on first use; close it when the run ends (the workers it forked
    are closed on their own). See :mod:`greeter_core.worker.forkserver`.
    """
    if options.isolation != "process":
        return None
    from .worker.forkserver import ForkServer

    return ForkServer()


class RunLoader:
    """How a long run (``greeter run``'s slot) loads each plugin it swaps in: its one choice of where.

    In process, a load is given up on after *load_timeout* seconds (a plugin
    whose import never returns must not hold a swap forever; what it builds
    later is closed). In a worker, each load is forked from the run's fork
    server, and a swapped-in plugin counts as loaded once its worker answered
    one greeting. Only a worker can load new code, so only it reloads.
    """

    def __init__(
        self,
        options: LoadOptions,
        loader: Callable[..., LoadedPlugin] = load,
        *,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
    ) -> None:
        self.options = options
        self.load_timeout = load_timeout
        self._loader = loader
        self._forkserver = fork_server(options)  # isolated workers are forked from it, in milliseconds

    @property
    def reloads(self) -> bool:
        """Whether a fresh instance can run new code: only in a fresh worker (Python cannot unload a module)."""
        return self.options.isolation == "process"

    def load(self, info: PluginInfo, *, answered: bool = False) -> LoadedPlugin:
        """*info* loaded; with *answered*, in a worker, only once that worker answered a greeting."""
        if self.options.isolation == "process":
            loaded = self._loader(info, self.options, forkserver=self._forkserver)
            if answered:
                try:
                    loaded.greet(DEFAULT_NAME)
                except BaseException:
                    loaded.close()
                    raise
            return loaded
        try:
            return call_bounded(
                lambda: self._loader(info, self.options),
                self.load_timeout,
                name=f"greeter-load-{info.name}",
                late=_close_late,
            )
        except TimeoutError:
            raise PluginLoadTimeoutError(info.name, info, self.load_timeout) from None

    def close(self) -> None:
        """Stop the fork server, if the run had one (the workers it forked are closed on their own)."""
        if self._forkserver is not None:
            self._forkserver.close()


def _close_late(loaded: LoadedPlugin) -> None:
    log.warning("plugin %r finished loading after greeter gave up on it; closing it", loaded.driver)
    loaded.close()
