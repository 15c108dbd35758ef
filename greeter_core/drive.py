"""Drive a plugin in this process or in a worker: the one place that chooses.

Everything that greets (the one-shot CLI, ``greeter check``, ``greeter run``,
a program using the API) loads through :func:`load` and gets a
:class:`~greeter_core.loaded.LoadedPlugin` back, so none of them asks which
kind it holds. Below this level, :mod:`~greeter_core.loading` knows only this
process and :mod:`~greeter_core.worker` only its worker; neither imports the
other's host side.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from .errors import UsageError

if TYPE_CHECKING:
    from .discovery import PluginInfo
    from .loaded import LoadedPlugin
    from .lock import PluginLock
    from .policy import PluginPolicy
    from .worker.forkserver import ForkServer
    from .worker.sandbox import Sandbox

__all__ = ["CHECK_ISOLATION", "DEFAULT_CALL_TIMEOUT", "ISOLATION_MODES", "LoadOptions", "fork_server", "load"]

#: ``none``: the plugin runs in this process (fastest). ``process``: in a worker
#: process, which it cannot take down with it.
ISOLATION_MODES = ("none", "process")

#: How ``greeter check`` (and :func:`~greeter_core.checkup.check_plugins`) load by
#: default: the diagnostic tool must not be silenced by what it diagnoses.
CHECK_ISOLATION = "process"

#: Seconds an isolated ``greet()`` may take before its worker is killed.
DEFAULT_CALL_TIMEOUT = 5.0


class LoadOptions(NamedTuple):
    """How a plugin is loaded: the keywords of :func:`load`, kept together for a whole run."""

    config: Mapping[str, str] = MappingProxyType({})
    """The user's ``--option`` values, the plugin's ``context.config``."""

    isolation: str = "none"
    """One of :data:`ISOLATION_MODES`."""

    verify: bool = False
    """Check the plugin's files against its ``RECORD`` before importing it."""

    call_timeout: float = DEFAULT_CALL_TIMEOUT
    """With ``isolation="process"``: the deadline of one whole ``greet()`` call."""

    worker_memory: int = 1024
    """With ``isolation="process"``: MiB of memory (data segment) a worker may use; 0: no limit."""

    worker_cpu: float = 0
    """With ``isolation="process"``: seconds of CPU time a worker may use in its life; 0: no limit
    (a busy worker lives as long as ``greeter run``; ``call_timeout`` bounds each call)."""

    worker_files: int = 256
    """With ``isolation="process"``: file descriptors a worker may hold open; 0: no limit."""

    worker_env: Mapping[str, str] = MappingProxyType({})
    """With ``isolation="process"``: environment variables for the worker beyond the few it always
    gets (``PATH``, ``HOME``, the locale...: see ``greeter_core.worker.client.WORKER_ENV``)."""

    policy: PluginPolicy | None = None
    """The allow-list and deny-list (``--plugins``, ``--disable``); None: any installed plugin."""

    lock: PluginLock | None = None
    """The lock file (``--lock``) the plugin's distribution must match; None: no lock."""

    sandbox: str = "auto"
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
    *,
    config: Mapping[str, str] | None = None,
    isolation: str = "none",
    verify: bool = False,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    worker_memory: int = _DEFAULTS.worker_memory,
    worker_cpu: float = _DEFAULTS.worker_cpu,
    worker_files: int = _DEFAULTS.worker_files,
    worker_env: Mapping[str, str] | None = None,
    policy: PluginPolicy | None = None,
    lock: PluginLock | None = None,
    forkserver: ForkServer | None = None,
    sandbox: str = _DEFAULTS.sandbox,
    allow_read: Sequence[str] = (),
    allow_write: Sequence[str] = (),
    allow_net: Sequence[int] = (),
) -> LoadedPlugin:
    """A ready plugin for *plugin* (a driver name, or a record from ``discover()``/``find()``).

    With ``isolation="process"`` it runs in a worker process, within the
    ``worker_*`` limits and environment (see :class:`LoadOptions`); close
    the result (or use ``with``) to stop the worker. With ``verify=True``
    every file of the plugin's distribution is checked against its
    ``RECORD`` first.
    A *policy* that disables the plugin, or a *lock* its distribution does not
    match, refuses it here, before anything of it is imported in either mode.
    With a *forkserver* (see :func:`fork_server`) a worker is forked from it
    instead of starting a fresh interpreter: in milliseconds, not a tenth of a second.
    """
    if isolation not in ISOLATION_MODES:
        raise UsageError(f"unknown isolation mode {isolation!r}; use one of: {', '.join(ISOLATION_MODES)}")
    if policy is not None:
        policy.check(plugin)
    if lock is not None:
        from .discovery import find

        plugin = find(plugin) if isinstance(plugin, str) else plugin
        lock.check(plugin)
    if isolation == "process":
        from .discovery import find
        from .worker.client import WorkerPlugin
        from .worker.protocol import Limits

        limits = Limits(worker_memory, worker_cpu, worker_files)
        for field, value in limits._asdict().items():
            if not value >= 0:
                raise UsageError(f"worker limit {field} must be a number >= 0 (0: no limit), not {value!r}")
        record = find(plugin) if isinstance(plugin, str) else plugin
        return WorkerPlugin(
            record,
            config=config,
            verify=verify,
            call_timeout=call_timeout,
            limits=limits,
            env=worker_env,
            forkserver=forkserver,
            sandbox=_sandbox(sandbox, allow_read, allow_write, allow_net),
        ).start()
    from .loading import load_in_process

    return load_in_process(plugin, config, verify=verify)


def _sandbox(mode: str, read: Sequence[str], write: Sequence[str], net: Sequence[int]) -> Sandbox:
    """The worker's sandbox for these grants; ``UsageError`` for a mode or grant it refuses (deny wins)."""
    from .worker.client import worker_sys_path
    from .worker.sandbox import MODES, Grants, Sandbox, SandboxError, check_grants

    if mode not in MODES:
        raise UsageError(f"unknown sandbox mode {mode!r}; use one of: {', '.join(MODES)}")
    grants = Grants(tuple(os.path.abspath(p) for p in read), tuple(os.path.abspath(p) for p in write), tuple(net))
    protected = [*worker_sys_path(), sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    try:
        check_grants(grants, protected)
    except SandboxError as error:
        raise UsageError(str(error)) from None
    return Sandbox(mode, grants)


def fork_server(options: LoadOptions) -> ForkServer | None:
    """Where a long run forks its isolated workers from, or None (in process, nothing to fork).

    Started on first use; close it when the run ends (the workers it forked
    are closed on their own). See :mod:`greeter_core.worker.forkserver`.
    """
    if options.isolation != "process":
        return None
    from .worker.forkserver import ForkServer

    return ForkServer()
