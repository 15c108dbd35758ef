"""The kernel sandbox a worker puts itself in after fork and before it imports its plugin.

Unprivileged Linux pieces only, each optional, each reported. In the order the
worker applies them (:func:`confine`):

1. ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` with ``setgroups`` denied and a
   one-line uid/gid map: a network namespace with nothing in it (no UDP, raw
   socket or name resolution reaches anything), and no capability in the
   host's namespace, so a worker of a root host cannot raise its limits.
   Only without a net grant; a granted port needs the host's network.
2. ``RLIMIT_FSIZE``: no file the plugin writes grows past the cap.
3. Every capability dropped (``capset``), then ``PR_SET_NO_NEW_PRIVS``.
4. A seccomp filter (checked against the architecture it was built for) for
   what Landlock cannot express: ``socket()`` of any family but TCP over IPv4
   and IPv6 (so no pathname or abstract Unix socket, no UDP, netlink, packet
   or crypto socket; ``socketpair`` still works), ``ptrace``,
   ``process_vm_readv``/``writev``, ``pidfd_getfd`` and io_uring (whose
   operations bypass seccomp). They fail with ``EPERM`` or ``EACCES``; nothing
   is killed.
5. Landlock (see the kernel's ``Documentation/userspace-api/landlock.rst``):
   every filesystem right the running ABI knows is handled (stripped by ABI
   as ``samples/landlock/sandboxer.c`` does); read and execute beneath what
   running the plugin needs, read-write beneath the scratch directory and the
   write grants; TCP bind and connect handled (ABI 4), connect allowed only to
   granted ports; signals and abstract Unix sockets scoped to the worker's own
   tree (ABI 6). A Landlock-restricted process also cannot ptrace or read
   ``/proc/<pid>/mem|environ`` of a process outside its domain.

What is really in force comes back as a :class:`Status` (rust-landlock's
``RestrictionStatus``): fully, partially or not enforced, the missing pieces
named in one line. ``mode`` ``require`` refuses to go on with anything
missing (the plugin is then never imported); ``auto`` is best effort;
``off`` applies nothing. Everything here is a thin ``ctypes`` layer: no
Python library covers Landlock ABI 4 and 6 yet.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import shutil
import stat
import struct
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..errors import GreeterError
from ..settings import SANDBOX_MODES

__all__ = [
    "MODES",
    "Grants",
    "Sandbox",
    "SandboxError",
    "Status",
    "Support",
    "check_grants",
    "confine",
    "explain",
    "make_scratch",
    "needed_paths",
    "plugin_location",
    "probe",
    "remove_scratch",
]

#: ``--sandbox``: best effort, refuse to run unconfined, or nothing at all (the settings table's choices).
MODES = SANDBOX_MODES

#: The newest Landlock ABI this module knows; a newer kernel is used as this one.
LANDLOCK_ABI_LAST = 7

#: Default cap on any one file the plugin writes (``RLIMIT_FSIZE``), in MiB.
FILE_SIZE_MIB = 64

# -- kernel constants ---------------------------------------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
#: Rights that make sense on a file (not a directory) in a path-beneath rule.
_FS_FILE = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2  # ABI 6

_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_PR_SET_NO_NEW_PRIVS, _PR_GET_SECCOMP, _PR_SET_SECCOMP = 38, 21, 22
_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
_SECCOMP_MODE_FILTER = 2
_CAP_V3 = 0x20080522

#: seccomp's view of each architecture: (AUDIT_ARCH_*, syscall numbers by name).
_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "pidfd_getfd": 438,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "socket": 198,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "pidfd_getfd": 438,
        },
    ),
}
_ARCHES["arm64"] = _ARCHES["aarch64"]

#: The environment knob tests use to make this kernel look older (see :func:`probe`); nothing else reads it.
SIMULATE_ENV = "GREETER_SANDBOX_SIMULATE"


class SandboxError(GreeterError):
    """The sandbox cannot be set up as asked: a grant it refuses, or ``--sandbox require`` with a piece missing."""


class Grants(NamedTuple):
    """What a plugin may do beyond the default sandbox, as the operator granted it: one frozen record.

    Landlock is an allow-list, so "deny" is a set of protected roots (the
    interpreter, ``sys.path``, greeter's cache, lock and driver files) that
    no write grant may reach: :func:`check_grants` refuses such a grant
    instead of silently weakening the sandbox. Deny wins over allow.
    """

    allow_read: tuple[str, ...] = ()
    """Paths the plugin may read (beneath, for a directory): ``--allow-read``."""
    allow_write: tuple[str, ...] = ()
    """Paths the plugin may read and write (beneath, for a directory): ``--allow-write``."""
    allow_net: tuple[int, ...] = ()
    """TCP ports the plugin may connect to, on any address (Landlock's granularity): ``--allow-net``."""

    def to_data(self) -> dict[str, list[Any]]:
        return {
            "allow_read": list(self.allow_read),
            "allow_write": list(self.allow_write),
            "allow_net": list(self.allow_net),
        }

    @classmethod
    def from_data(cls, data: Any) -> Grants:
        """The record from its data form (a hello field); ``ValueError`` if it is not one."""
        if not isinstance(data, dict) or set(data) != set(cls._fields):
            raise ValueError("grants")
        reads, writes, ports = data["allow_read"], data["allow_write"], data["allow_net"]
        if not all(isinstance(v, list) for v in (reads, writes, ports)):
            raise ValueError("grants")
        if not all(isinstance(p, str) and os.path.isabs(p) for p in (*reads, *writes)):
            raise ValueError("grants: paths must be absolute")
        if not all(type(p) is int and 0 < p < 65536 for p in ports):
            raise ValueError("grants: ports are 1-65535")
        return cls(tuple(reads), tuple(writes), tuple(ports))

    def describe(self) -> str:
        """The grants as flags, e.g. ``--allow-read /srv/data --allow-net 443``; empty when none."""
        parts = [f"--allow-read {p}" for p in self.allow_read]
        parts += [f"--allow-write {p}" for p in self.allow_write]
        parts += [f"--allow-net {p}" for p in self.allow_net]
        return " ".join(parts)


class Sandbox(NamedTuple):
    """What a worker is to be confined to: built by the host, carried in the hello, applied by :func:`confine`."""

    mode: str = "auto"
    grants: Grants = Grants()
    read: tuple[str, ...] = ()
    """What running the plugin needs to read (see :func:`needed_paths`)."""
    scratch: str = ""
    """The worker's private, writable directory (its ``TMPDIR`` and ``HOME``)."""
    file_size_mib: int = FILE_SIZE_MIB
    simulate: str = ""
    """Tests only: make the kernel look older (see :func:`probe`)."""

    def to_data(self) -> dict[str, Any]:
        return {**self._asdict(), "grants": self.grants.to_data(), "read": list(self.read)}

    @classmethod
    def from_data(cls, data: Any) -> Sandbox:
        """The record from its data form; ``ValueError`` naming what is wrong."""
        if not isinstance(data, dict) or set(data) != set(cls._fields):
            raise ValueError("sandbox")
        if data["mode"] not in MODES or not isinstance(data["scratch"], str) or not isinstance(data["simulate"], str):
            raise ValueError("sandbox")
        if not isinstance(data["read"], list) or not all(isinstance(p, str) for p in data["read"]):
            raise ValueError("sandbox: read")
        if type(data["file_size_mib"]) is not int or data["file_size_mib"] < 0:
            raise ValueError("sandbox: file_size_mib")
        return cls(
            data["mode"],
            Grants.from_data(data["grants"]),
            tuple(data["read"]),
            data["scratch"],
            data["file_size_mib"],
            data["simulate"],
        )


class Support(NamedTuple):
    """What this kernel offers, as far as can be told without confining anything."""

    landlock_abi: int
    """0 when Landlock is missing."""
    landlock_problem: str
    userns: bool
    seccomp: bool
    arch: str


class Status(NamedTuple):
    """What is really in force in a worker (rust-landlock's ``RestrictionStatus``)."""

    state: str
    """``full``, ``partial`` or ``none``."""
    in_force: tuple[str, ...]
    missing: tuple[str, ...]
    """Each missing piece with the reason, e.g. ``signal scoping (Landlock ABI 5 < 6)``."""
    landlock_abi: int
    mode: str = "auto"

    def line(self) -> str:
        """One line for logs and the start message."""
        if self.mode == "off":
            return "sandbox off"
        if self.state == "full":
            return f"sandbox fully enforced (Landlock ABI {self.landlock_abi})"
        return (
            f"sandbox {'partially' if self.state == 'partial' else 'not'} enforced: missing {', '.join(self.missing)}"
        )

    def to_data(self) -> dict[str, Any]:
        return {**self._asdict(), "in_force": list(self.in_force), "missing": list(self.missing)}

    @classmethod
    def from_data(cls, data: Any) -> Status:
        if (
            not isinstance(data, dict)
            or set(data) != set(cls._fields)
            or data["state"] not in ("full", "partial", "none")
        ):
            raise ValueError("sandbox status")
        in_force, missing = data["in_force"], data["missing"]
        if (
            not isinstance(in_force, list)
            or not isinstance(missing, list)
            or not all(isinstance(x, str) for x in (*in_force, *missing))
            or type(data["landlock_abi"]) is not int
            or data["mode"] not in MODES
        ):
            raise ValueError("sandbox status")
        return cls(data["state"], tuple(in_force), tuple(missing), data["landlock_abi"], data["mode"])


# -- probing ------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _simulated(simulate: str) -> dict[str, int]:
    """``landlock=3,userns=0,seccomp=0`` as a dict; what tests use to play an older or poorer kernel."""
    found: dict[str, int] = {}
    for item in filter(None, simulate.split(",")):
        key, _, value = item.partition("=")
        if key not in ("landlock", "userns", "seccomp") or not value.isdigit():
            raise ValueError(f"{SIMULATE_ENV}: unknown item {item!r} (landlock=N, userns=0, seccomp=0)")
        found[key] = int(value)
    return found


def probe(simulate: str = "") -> Support:
    """What the kernel supports; *simulate* (tests only) caps it, e.g. ``landlock=3`` or ``userns=0``."""
    knobs = _simulated(simulate)
    abi, problem = _landlock_abi(knobs)
    arch = platform.machine()
    userns = knobs.get("userns", 1) != 0 and _userns_allowed()
    return Support(abi, problem, userns, _seccomp_available(arch, knobs), arch)


def _landlock_abi(knobs: Mapping[str, int]) -> tuple[int, str]:
    """The Landlock ABI (0 when missing) and, when missing, why (``ENOSYS``: not built, ``EOPNOTSUPP``: disabled)."""
    abi = _syscall(
        ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
    )
    if abi < 0:
        err = ctypes.get_errno()
        reasons = {errno.ENOSYS: "not built into this kernel", errno.EOPNOTSUPP: "disabled at boot"}
        return 0, reasons.get(err, f"unavailable: {os.strerror(err)}")
    if "landlock" in knobs and knobs["landlock"] < abi:
        return knobs["landlock"], "" if knobs["landlock"] else "unavailable (simulated)"
    return min(abi, LANDLOCK_ABI_LAST), ""


def _seccomp_available(arch: str, knobs: Mapping[str, int]) -> bool:
    return knobs.get("seccomp", 1) != 0 and arch in _ARCHES and _libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) >= 0


def _userns_allowed() -> bool:
    """Whether unprivileged user namespaces look allowed (the worker still checks by trying)."""
    for path, off in (("/proc/sys/user/max_user_namespaces", "0"), ("/proc/sys/kernel/unprivileged_userns_clone", "0")):
        try:
            with open(path) as file:
                if file.read().strip() == off:
                    return False
        except OSError:
            continue
    return True


# -- what the host prepares ---------------------------------------------------------------------


def needed_paths(sys_path: Iterable[str]) -> tuple[str, ...]:
    """What a worker reads and executes to run a plugin: as narrow as works, and why each.

    The interpreter (its executable, standard library and extension modules:
    ``sysconfig``'s paths, not the whole prefix, which in a venv or tox env
    also holds caches and temporary files), the worker's ``sys.path``
    (greeter-core, stevedore, the plugin and their dependencies: read, never
    written), the shared libraries compiled extensions link (``/lib*``,
    ``/usr/lib*`` and the loader's cache), time zones, and the few devices
    Python opens. Not ``/etc``, ``/home``, ``/tmp``, ``/proc`` (but the
    worker's own entry) or ``/sys``.
    """

    # pyvenv.cfg: a plugin that starts this interpreter again (a subprocess) needs it to start
    interpreter = [sys.executable, os.path.realpath(sys.executable), os.path.join(sys.prefix, "pyvenv.cfg")]
    for base in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=base)
        interpreter += [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        interpreter.append(str(sysconfig.get_config_var("LIBDIR")))
    found: list[str] = []
    system = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")
    devices = ("/usr/share/zoneinfo", "/etc/localtime", "/dev/urandom", "/dev/random", "/dev/zero")
    for path in (*interpreter, *sys_path, *system, *devices):
        path = os.path.normpath(path) if path and os.path.isabs(path) else ""
        if path and path not in found and os.path.exists(path):
            found.append(path)
    return tuple(found)


def plugin_location(target: str) -> tuple[str, ...]:
    """Where the module of an entry point's *target* (``module:attr``) lives, found without importing it.

    Usually beneath ``sys.path`` already; not for an editable install, whose
    finder maps the package to its source tree. Only the top-level name is
    looked up (a submodule's lookup would import its parent); nothing is run.
    """
    import importlib.util

    top = target.partition(":")[0].partition(".")[0]
    try:
        loaded = sys.modules.get(top)  # imported here already (in process, or by a test): its own record
        spec = (
            getattr(loaded, "__spec__", None) if loaded is not None else importlib.util.find_spec(top) if top else None
        )
    except (ImportError, ValueError):
        return ()
    if spec is None:
        return ()
    places = list(spec.submodule_search_locations or ()) or ([spec.origin] if spec.origin else [])
    return tuple(os.path.normpath(p) for p in places if os.path.isabs(p))


def check_grants(grants: Grants, protected: Iterable[str]) -> None:
    """Refuse a write grant that would reach a *protected* path (deny wins over allow): ``SandboxError``.

    A write grant at or beneath a protected root, or above one (``--allow-write /``
    would cover greeter's own package), is refused with the path that protects it.
    """
    roots = [os.path.realpath(p) for p in protected if p]
    for grant in grants.allow_write:
        path = os.path.realpath(grant)
        for root in roots:
            if path == root or path.startswith(root.rstrip("/") + "/") or root.startswith(path.rstrip("/") + "/"):
                raise SandboxError(
                    f"--allow-write {grant} is refused: it would let a plugin write to {root}, which greeter "
                    "protects (its code, sys.path, cache, lock or driver file); grant a directory of its own"
                )
    for port in grants.allow_net:
        if not 0 < port < 65536:
            raise SandboxError(f"--allow-net {port} is not a TCP port (1-65535)")


def make_scratch(prefix: str = "greeter-worker-") -> str:
    """A fresh private directory (mode 0700) for one worker; the host removes it when the worker ends.

    In ``$TMPDIR`` or ``/tmp``, named directly: ``tempfile``'s own search opens a file to probe each
    candidate, and a host short of descriptors must still get its directory (and then the one-line
    error for what it is short of).
    """
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR") or "/tmp")


def remove_scratch(path: str) -> None:
    """Remove a worker's scratch directory and all it holds; never follows a symlink out of it."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


# -- confining this process ---------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed", ctypes.c_uint64), ("port", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - no /proc
        import threading

        return threading.active_count()


def confine(sandbox: Sandbox) -> Status:
    """Confine this process (and all it will start) as *sandbox* says; what is in force comes back.

    Must run in a single-threaded process (a freshly forked worker, before it
    starts its watch thread): a user namespace cannot be entered otherwise,
    and Landlock and seccomp would not hold for threads that already exist.
    ``SandboxError`` for that, and in ``require`` mode for any missing piece.
    """
    if sandbox.mode == "off":
        return Status("none", (), ("everything (--sandbox off)",), 0, "off")
    if _threads() != 1:
        raise SandboxError("the sandbox must be set up before any thread starts in the worker (found several threads)")
    knobs = _simulated(sandbox.simulate)
    abi, abi_problem = _landlock_abi(knobs)
    arch = platform.machine()
    seccomp = _seccomp_available(arch, knobs)
    in_force: list[str] = []
    missing: list[str] = []
    # A network namespace only where nothing else closes the network: Landlock's TCP rules (ABI 4) and
    # the seccomp filter (no socket but TCP) do, for a third of the cost of a namespace (~0.7 ms).
    net_ns = not sandbox.grants.allow_net and (abi < 4 or not seccomp)

    if knobs.get("userns", 1) == 0:
        missing.append("user namespace (disabled, simulated)")
    else:
        problem = _unshare(net_ns)
        if problem:
            missing.append(f"user namespace ({problem})")
        else:
            in_force.append("user+net namespace" if net_ns else "user namespace")

    if sandbox.file_size_mib:
        size = sandbox.file_size_mib * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if hard != resource.RLIM_INFINITY:
            size = min(size, hard)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        in_force.append(f"file size {sandbox.file_size_mib} MiB")

    if sandbox.scratch:
        os.environ["TMPDIR"] = os.environ["HOME"] = sandbox.scratch
        tempfile.tempdir = None  # a fork server may have cached /tmp

    _drop_capabilities()
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    in_force.append("no_new_privs")

    if seccomp:
        problem = _install_seccomp(arch)
        if problem:
            missing.append(f"seccomp ({problem})")
        else:
            in_force.append("seccomp")
    else:
        missing.append(f"seccomp (unavailable on {arch})")

    if abi:
        have, lacking = _landlock(sandbox, abi, "user+net namespace" in in_force, "seccomp" in in_force)
        in_force.extend(have)
        missing.extend(lacking)
    else:
        missing.append(f"Landlock ({abi_problem})")

    confining = [p for p in in_force if p.startswith(("Landlock", "seccomp", "user"))]
    state = "full" if not missing else "partial" if confining else "none"
    status = Status(state, tuple(in_force), tuple(missing), abi, sandbox.mode)
    if sandbox.mode == "require" and missing:
        raise SandboxError(f"--sandbox require: refusing to run the plugin with the {status.line()}")
    _watch_for_refusals()
    return status


def _unshare(net: bool) -> str:
    """Enter a fresh user (and network) namespace mapped to this uid and gid; the reason it failed, or ''."""
    uid, gid = os.geteuid(), os.getegid()
    flags = _CLONE_NEWUSER | (_CLONE_NEWNET if net else 0)
    if hasattr(os, "unshare"):  # 3.12+
        try:
            os.unshare(flags)
        except OSError as error:
            return os.strerror(error.errno or 0)
    elif _libc.unshare(flags) != 0:
        return os.strerror(ctypes.get_errno())
    # A non-dumpable process (the fork server and keeper make themselves so: greeter_core.guard.undumpable)
    # has its /proc/self files owned by root: an ordinary user could not write its own maps. Dumpable for
    # the three writes only, then as it was.
    undumpable = _libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    if undumpable:
        _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    except OSError as error:
        return f"writing the id maps: {os.strerror(error.errno or 0)}"
    finally:
        if undumpable:
            _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    return ""


def _drop_capabilities() -> None:
    """Hold no capability at all (a root worker's, or the new namespace's full set): none to lift a limit with."""
    header = struct.pack("Ii", _CAP_V3, 0)
    data = bytes(24)  # two cap_user_data_t of effective, permitted, inheritable: all zero
    _libc.capset(ctypes.c_char_p(header), ctypes.c_char_p(data))


def _install_seccomp(arch: str) -> str:
    """Load the filter for *arch*; the reason it failed, or ''."""
    fprog = _program_for(arch)
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return os.strerror(ctypes.get_errno())
    return ""


_programs: dict[str, tuple[Any, _SockFprog]] = {}


def _program_for(arch: str) -> _SockFprog:
    """The filter for *arch*, built once (in the fork server, for every worker it forks)."""
    if arch not in _programs:
        program = _seccomp_program(arch)
        buffer = ctypes.create_string_buffer(program, len(program))
        _programs[arch] = (buffer, _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p)))
    return _programs[arch][1]


_LD_ABS, _JEQ, _JGE, _RET, _AND = 0x20, 0x15, 0x35, 0x06, 0x54
_ALLOW = 0x7FFF0000
_EPERM = 0x00050000 | errno.EPERM
_EACCES = 0x00050000 | errno.EACCES
_X32_BIT = 0x40000000
_AF_UNIX, _AF_INET, _AF_INET6, _SOCK_STREAM, _IPPROTO_TCP = 1, 2, 10, 1, 6


def _seccomp_program(arch: str) -> bytes:
    """The BPF program: another architecture (or x32) gets EPERM for everything; see the module docstring."""
    audit_arch, numbers = _ARCHES[arch]
    denied = [numbers[name] for name in sorted(numbers) if name != "socket"]
    # (code, true target, false target, k): targets are labels, resolved to relative jumps below.
    code: list[tuple[int, str | None, str | None, int]] = [
        (_LD_ABS, None, None, 4),  # seccomp_data.arch
        (_JEQ, None, "eperm", audit_arch),
        (_LD_ABS, None, None, 0),  # seccomp_data.nr
        (_JGE, "eperm", None, _X32_BIT),
        *[(_JEQ, "eperm", None, nr) for nr in denied],
        (_JEQ, "socket", None, numbers["socket"]),
        (_RET, None, None, _ALLOW),
    ]
    labels = {"socket": len(code)}
    code += [
        (_LD_ABS, None, None, 16),  # args[0], low half: the family
        (_JEQ, "inet", None, _AF_INET),
        (_JEQ, "inet", None, _AF_INET6),
        (_RET, None, None, _EACCES),  # AF_UNIX, netlink, packet, ...
    ]
    labels["inet"] = len(code)
    code += [
        (_LD_ABS, None, None, 24),  # args[1]: the type, with SOCK_NONBLOCK | SOCK_CLOEXEC
        (_AND, None, None, 0xFF),
        (_JEQ, None, "eacces", _SOCK_STREAM),
        (_LD_ABS, None, None, 32),  # args[2]: the protocol (SCTP and MPTCP are not Landlock's TCP)
        (_JEQ, "allow", None, 0),
        (_JEQ, "allow", "eacces", _IPPROTO_TCP),
    ]
    labels["allow"] = len(code)
    code.append((_RET, None, None, _ALLOW))
    labels["eacces"] = len(code)
    code.append((_RET, None, None, _EACCES))
    labels["eperm"] = len(code)
    code.append((_RET, None, None, _EPERM))
    out = bytearray()
    for index, (op, true, false, k) in enumerate(code):
        jt = labels[true] - index - 1 if true else 0
        jf = labels[false] - index - 1 if false else 0
        out += struct.pack("HBBI", op, jt, jf, k)
    return bytes(out)


def _landlock(sandbox: Sandbox, abi: int, net_ns: bool, seccomp: bool) -> tuple[list[str], list[str]]:
    """Build and enforce the ruleset for *abi*; (what is in force, what is missing and why).

    A piece an older ABI lacks is missing only where nothing else covers it:
    TCP rules where the worker has a network (no namespace), abstract-socket
    scoping where seccomp does not refuse Unix sockets.
    """
    fs = _FS_ABI1
    missing: list[str] = []
    if abi >= 2:
        fs |= _FS_REFER
    if abi >= 3:
        fs |= _FS_TRUNCATE
    else:
        missing.append(f"truncate rights (Landlock ABI {abi} < 3)")
    if abi >= 5:
        fs |= _FS_IOCTL_DEV
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    if not net and not net_ns:
        missing.append(f"TCP port rules (Landlock ABI {abi} < 4)")
    if not scoped:
        missing.append(f"signal scoping (Landlock ABI {abi} < 6)")
        if not seccomp:
            missing.append(f"abstract Unix socket scoping (Landlock ABI {abi} < 6)")
    attr = _RulesetAttr(fs, net, scoped)
    ruleset = _syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        return [], [f"Landlock (create_ruleset: {os.strerror(ctypes.get_errno())})"]
    try:
        read = fs & _FS_READ
        for path in (*sandbox.read, "/proc/self", *sandbox.grants.allow_read):
            _add_path(ruleset, path, read)
        _add_path(ruleset, "/dev/null", fs & (_FS_READ_FILE | _FS_WRITE_FILE))
        for path in (sandbox.scratch, *sandbox.grants.allow_write):
            if path:
                _add_path(ruleset, path, fs)
        for port in sandbox.grants.allow_net if net else ():
            rule = _NetPort(_NET_CONNECT_TCP, port)
            if (
                _syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset), _RULE_NET_PORT, ctypes.byref(rule), 0)
                != 0
            ):
                raise SandboxError(
                    f"Landlock refused the rule for --allow-net {port}: {os.strerror(ctypes.get_errno())}"
                )
        if _syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(ruleset), 0) != 0:
            return [], [f"Landlock (restrict_self: {os.strerror(ctypes.get_errno())})"]
    finally:
        os.close(ruleset)
    have = ["Landlock files"]
    if net:
        have.append("Landlock TCP")
    if scoped:
        have.append("Landlock scopes")
    return have, missing


def _add_path(ruleset: int, path: str, allowed: int) -> None:
    """Allow *allowed* beneath *path* (file rights only, for a file); a path that does not exist is skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            allowed &= _FS_FILE
        rule = _PathBeneath(allowed, fd)
        if (
            _syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset), _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            != 0
        ):
            raise SandboxError(f"Landlock refused the rule for {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


# -- telling the user what was refused ----------------------------------------------------------

#: The last action a refusal may be about, as the interpreter's audit hooks saw it (for messages only:
#: the kernel enforces, this just remembers what the plugin tried).
_last: list[tuple[str, tuple[Any, ...]] | None] = [None]
_WRITES = frozenset({"os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.symlink", "os.link", "os.truncate"})
_WATCHED = _WRITES | {
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.__new__",
    "open",
    "os.kill",
    "os.killpg",
}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _WATCHED:
        _last[0] = (event, args)


def _watch_for_refusals() -> None:
    sys.addaudithook(_audit)


def explain(error: BaseException) -> str | None:
    """What a refusal by the sandbox was about and the grant that would allow it, for a plugin's error message.

    E.g. ``refused network access (connect 127.0.0.1:443); grant it with --allow-net 443``;
    None when *error* is not such a refusal (or the errno cannot tell).
    """
    if not isinstance(error, OSError) or error.errno not in (errno.EACCES, errno.EPERM, errno.ENETUNREACH, errno.EFBIG):
        return None
    last = _last[0]
    event, args = last if last is not None else ("", ())
    if error.errno == errno.EFBIG:
        return f"wrote a file over the sandbox's size limit ({_fsize_mib()} MiB per file)"
    path = error.filename if isinstance(error.filename, str) else None
    if path is not None:
        about_path = bool(args) and args[0] == path  # the event is about this very path
        writing = about_path and (event in _WRITES or (event == "open" and _opens_for_writing(args)))
        absolute = os.path.abspath(path)
        if absolute.startswith("/proc/"):
            where = "another process's, outside its sandbox (not grantable)"
            return f"refused reading {absolute}: {where}"
        grant = f"--allow-write {os.path.dirname(absolute)}" if writing else f"--allow-read {absolute}"
        return f"refused {'writing' if writing else 'reading'} {absolute}; grant it with {grant}"
    if event in ("socket.connect", "socket.sendto", "socket.bind") and args:
        sock, address = args[0], args[-1]
        kind = "TCP" if getattr(sock, "type", 0) & 0xFF == _SOCK_STREAM else "UDP"
        verb, where = event.split(".")[1], _address(address)
        if kind == "TCP" and verb == "connect" and isinstance(address, tuple) and len(address) >= 2:
            grant = f"--allow-net {address[1]}"
            return f"refused network access (connect {where}); grant it with {grant}"
        return f"refused network access ({kind} {verb} {where}); only TCP connect can be granted (--allow-net PORT)"
    if event == "socket.__new__" and len(args) >= 3:
        family, kind = args[1], args[2]
        if family == _AF_UNIX:
            return "refused a Unix socket; the sandbox grants none (socketpair() works)"
        what = "a UDP socket" if family in (_AF_INET, _AF_INET6) else f"a socket of family {family}"
        return f"refused {what}; only TCP can be granted (--allow-net PORT)"
    if event in ("os.kill", "os.killpg") and len(args) >= 2:
        return f"refused sending signal {args[1]} to {args[0]}: outside its sandbox (not grantable)"
    return None


def _opens_for_writing(args: tuple[Any, ...]) -> bool:
    """An ``open`` audit event's (path, mode, flags): ``io.open`` gives a mode, ``os.open`` flags."""
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _fsize_mib() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft // (1024 * 1024) if soft != resource.RLIM_INFINITY else 0


def preload() -> None:
    """Do once, in a process that forks workers, what each worker would otherwise redo: build the filter."""
    if platform.machine() in _ARCHES:
        _program_for(platform.machine())


def simulate_from(env: Mapping[str, str]) -> str:
    """The tests' knob (``GREETER_SANDBOX_SIMULATE``) as the host hands it to a worker."""
    return env.get(SIMULATE_ENV, "")
