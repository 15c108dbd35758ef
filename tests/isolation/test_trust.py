"""The host trusts nothing a worker does: its memory, environment and descriptors are out of a worker's reach,
the fork server forks only for the host, and a plugin's fork of an in-process host leaves no second host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from basics import one_line, wait_for
from plugins import PluginSpec, greet_body, greeter_code
from processes import alive, kill_quietly
from running import RunningGreeter
from unprivileged import Unprivileged, unprivileged  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="Linux only")

#: What a worker tries against a process above it: each attack's outcome, "done" or the errno's name.
REACH = """
import ctypes, errno, json, os

def ancestor(marker):
    pid = os.getpid()
    while pid > 1:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            pid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if marker in cmdline.read():
                return pid
    raise LookupError(marker)

def outcome(attack):
    try:
        attack()
        return "done"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))

def mem(pid):
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        with open(f"/proc/{pid}/maps") as maps:
            start = next(int(line.split("-")[0], 16) for line in maps if " rw-p " in line)
        mem.seek(start)
        data = mem.read(8)
        mem.seek(start)
        mem.write(data)  # the same bytes back: written, and harmless

def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as file:
        file.read()

def call(result):
    if result == -1:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result

def vm_read(pid):
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(1)
    local, remote = iovec(ctypes.addressof(buffer), 1), iovec(None, 1)
    # process_vm_readv: the ptrace access check without attaching; EFAULT (address 0) once allowed
    call(libc.syscall(310, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))

def getfd(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    os.close(call(libc.syscall(438, os.pidfd_open(pid), 0, 0)))  # pidfd_getfd of its stdin

def reach(marker):
    pid = ancestor(marker)
    return {name: outcome(lambda: attack(pid)) for name, attack in
            [("mem", mem), ("environ", environ), ("fd", lambda p: os.listdir(f"/proc/{p}/fd")),
             ("process_vm_readv", vm_read), ("pidfd_getfd", getfd)]}
"""

#: Greets with what it could do to its host and to the fork server above it.
PEEK = PluginSpec(
    "peek",
    code=greet_body(
        'return json.dumps({"host": reach(b"greeter_core\\0run"), "forkserver": reach(b"forkmain import serve")})',
        REACH,
    ),
)

#: As root (or whoever may ptrace the host): copies the host's end of the fork server's channel with
#: pidfd_getfd and asks the fork server for a worker; greets with what the fork server answered.
STEAL = PluginSpec(
    "steal",
    code=greet_body(
        """host = ancestor(b"greeter_core\\0run")
pidfd = os.pidfd_open(host)
libc = ctypes.CDLL(None, use_errno=True)
for name in os.listdir(f"/proc/{host}/fd"):
    fd = libc.syscall(438, pidfd, int(name), 0)
    if fd < 0:
        continue
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        continue
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_SEQPACKET:
        sock.detach()
        os.close(fd)
        continue
    pipes = [end for _ in range(4) for end in os.pipe()][::2]
    socket.send_fds(sock, [b"F"], pipes)
    sock.settimeout(2.0)
    try:
        reply, fds, _, _ = socket.recv_fds(sock, 256, 1)
    except TimeoutError:
        return "refused"
    return "forked " + reply.decode()
return "no channel found\"""",
        REACH + "import socket, stat",
    ),
)

#: Forks in greet(): the parent (the real host) exits at once, the child returns as a copy of the host.
FORK_AND_EXIT = PluginSpec(
    "forkexit",
    code=greet_body(
        "if os.fork() != 0:\n    os._exit(0)\n"
        'open(os.environ["GT_COPY"], "w").write(str(os.getpid()))\nreturn "Hi from a copy"',
        "import os",
    ),
)
#: Forks in greet() and returns on both sides: the real host goes on, the child is a copy of it.
FORK = PluginSpec(
    "fork",
    code=greet_body(
        'if os.fork() == 0:\n    open(os.environ["GT_COPY"], "w").write(str(os.getpid()))\nreturn "Hi " + name',
        "import os",
    ),
)

REFUSED = {"mem": "EACCES", "environ": "EACCES", "fd": "EACCES", "process_vm_readv": "EPERM", "pidfd_getfd": "EPERM"}


def test_a_worker_of_an_ordinary_user_cannot_reach_into_its_host_or_the_fork_server(
    unprivileged: Unprivileged,  # noqa: F811
    tmp_path: Path,
) -> None:
    """As the same ordinary user, a worker can neither read nor write the host's or the fork server's memory,
    environment (the control token) and descriptors, nor ptrace them: both are non-dumpable."""
    unprivileged.install(PEEK)
    log = tmp_path / "stderr"
    # --sandbox off: what non-dumpable guarantees alone (the sandbox refuses reading /proc/<host> before any of it)
    command = ("run", "--driver", "peek", "--isolation", "process", "--interval", "0.05", "--sandbox", "off")
    # stderr to a file: a host whose plugin fails logs every tick, and an undrained pipe would block it.
    with log.open("w") as stderr, unprivileged.popen(*command, stderr=stderr) as greeter:
        assert greeter.stdout is not None
        watchdog = threading.Timer(60, greeter.kill)  # no first greeting in a minute: fail, never hang
        watchdog.start()
        try:
            line = greeter.stdout.readline()
        finally:
            watchdog.cancel()
        greeter.send_signal(signal.SIGTERM)
        greeter.communicate(timeout=60)
    assert line, log.read_text(encoding="utf-8")[-2000:]
    reached = json.loads(line)
    assert reached["host"] == REFUSED, line
    # Above the worker with the fork server's command line is its keeper (forked from the fork server): a
    # subreaper in the tree's cgroup, where process_vm_readv has answered EINVAL as well as EPERM. Either way
    # nothing was read: no attack was "done", and none got as far as the bad address (EFAULT).
    assert set(reached["forkserver"]) == set(REFUSED), line
    assert not {"done", "EFAULT"} & set(reached["forkserver"].values()), line


def test_a_stolen_copy_of_the_fork_servers_channel_gets_no_worker_forked(start, install) -> None:
    """As root, who may still copy the host's descriptors, a worker that took the host's end of the fork
    server's channel asks for a worker in vain: the fork server serves only the process that started it."""
    install(STEAL)
    # --sandbox off: the fork server's own check, beneath the sandbox (whose seccomp refuses pidfd_getfd first)
    greeter: RunningGreeter = start(
        "--driver", "steal", "--isolation", "process", "--interval", "0.05", "--sandbox", "off"
    )  # fmt: skip
    wait_for(lambda: greeter.stdout.lines or greeter.process.poll() is not None, what="a greeting")
    greeter.stop()
    assert greeter.stdout.lines[:1] == ["refused"], greeter.stderr.text
    assert "refused a request from pid" in greeter.stderr.text


def test_a_descriptor_of_the_channel_handed_to_another_process_gets_no_worker_forked(tmp_path) -> None:
    """Defence in depth where nobody could ptrace: a child that inherited the host's end asks in vain."""
    from greeter_core.worker.client import worker_command, worker_environment, worker_sys_path
    from greeter_core.worker.forkserver import BOOTSTRAP, ForkServer

    command, env = worker_command(worker_sys_path(), BOOTSTRAP), worker_environment()
    forked = []
    mine, theirs = socket.socketpair()
    with ForkServer() as server, mine, theirs:
        forked.append(server.fork(command, env, theirs))
        assert forked[0] is not None
        channel = server._sock
        assert channel is not None
        asking = (
            "import os, socket, sys; sock = socket.socket(fileno=int(sys.argv[1])); "
            "pipes = [os.pipe()[1] for _ in range(4)]; socket.send_fds(sock, [b'F'], pipes); sock.settimeout(2.0)\n"
            "try: print(socket.recv_fds(sock, 256, 1)[0].decode())\nexcept TimeoutError: print('refused')"
        )
        child = subprocess.run(
            [sys.executable, "-c", asking, str(channel.fileno())],
            pass_fds=[channel.fileno()],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.stdout.strip() == "refused", child
        other, again = socket.socketpair()
        with other, again:  # and the host is still served
            forked.append(server.fork(command, env, again))
            assert forked[1] is not None
    for process in forked:
        if process is not None:
            process.wait(timeout=60)
            process.stdout.close()
            process.stderr.close()


def test_a_copy_of_an_in_process_host_forked_by_its_plugin_ends_at_once(start, install, tmp_path) -> None:
    """In process, a plugin that forks and exits in the parent leaves no second host greeting on stdout:
    the copy ends itself, in one line naming the plugin, before it greets."""
    install(FORK_AND_EXIT)
    marker = tmp_path / "copy"
    greeter = start("--driver", "forkexit", "--interval", "0.05", env_extra={"GT_COPY": str(marker)})
    assert greeter.wait() == 0  # the plugin's os._exit(0) in the real host: only isolation survives that
    copy = int(wait_for(lambda: marker.exists() and marker.read_text(), what="the copy's pid"))
    try:
        wait_for(lambda: not alive(copy), what=f"the copy {copy} to end")
    finally:
        kill_quietly(copy, signal.SIGKILL)
    assert greeter.stdout.lines == []
    assert f"forkexit' (greeter-forkexit 1.0) forked this process; the copy (pid {copy})" in greeter.stderr.text


def test_the_real_host_greets_on_when_its_plugin_forks_and_the_copy_ends(start, install, tmp_path) -> None:
    """Where both sides of the plugin's fork return, the real host goes on greeting and the copy ends."""
    install(FORK)
    marker = tmp_path / "copy"
    greeter = start("--driver", "fork", "--interval", "0.05", "--count", "3", env_extra={"GT_COPY": str(marker)})
    assert greeter.wait() == 0, greeter.stderr.text
    assert greeter.stdout.lines == ["Hi Universe"] * 3
    copy = int(marker.read_text())
    wait_for(lambda: not alive(copy), what=f"the copy {copy} to end")
    assert greeter.stderr.text.count("forked this process") >= 1


# -- --worker-memory counts every mapping ------------------------------------------------------------------

#: Each maps 512 MiB a way RLIMIT_DATA alone may not count, and touches every page.
MMAP = PluginSpec(
    "mapper",
    code=greet_body(
        "m = mmap.mmap(-1, int(name) << 20)\nfor i in range(0, len(m), 4096):\n    m[i] = 1\nreturn 'mapped'",
        "import mmap",
    ),
)
BYTEARRAY = PluginSpec("bytes", code=greet_body("b = bytearray(int(name) << 20)\nreturn 'allocated'"))
MALLOC = PluginSpec(
    "malloc",
    code=greet_body(
        "libc = ctypes.CDLL(None)\nlibc.malloc.restype = ctypes.c_void_p\nsize = int(name) << 20\n"
        "p = libc.malloc(size)\nif not p:\n    raise MemoryError  # what a C extension raises (PyErr_NoMemory)\n"
        "ctypes.memset(p, 1, size)\nreturn 'malloced'",
        "import ctypes",
    ),
)


#: What the memory tests' workers load (conftest's ``plugins``).
MEMORY_HOGS = pytest.mark.plugins(MMAP, BYTEARRAY, MALLOC)


@MEMORY_HOGS
@pytest.mark.parametrize("plugin", ["mapper", "bytes", "malloc"])
def test_worker_memory_bounds_every_way_of_allocating(isolated, plugin: str) -> None:
    """512 MiB under --worker-memory 128, by a shared mapping, a bytearray or C's malloc: the limit, by name."""
    from greeter_core import WorkerLimitError

    greeter = isolated(plugin, worker_memory=128, call_timeout=120)
    with pytest.raises(WorkerLimitError, match=r"exceeded --worker-memory 128 MiB"):
        greeter.greet("512")


@MEMORY_HOGS
@pytest.mark.parametrize("plugin", ["mapper", "bytes", "malloc"])
def test_a_worker_under_its_memory_limit_allocates_what_it_was_given(isolated, plugin: str) -> None:
    """The limit is the plugin's to use: 96 MiB under --worker-memory 128 is fine (the interpreter's own
    mappings are not counted against it)."""
    greeter = isolated(plugin, worker_memory=128, call_timeout=120)
    assert greeter.greet("96") in ("mapped", "allocated", "malloced")


# -- --verify and the byte-code Python would run in place of a verified source -------------------------------

VERIFIED = PluginSpec("verified", code=greeter_code("Verified"))


def test_a_poisoned_byte_code_cache_of_a_verified_plugin_is_refused(cli, install, site) -> None:
    """A .pyc planted beside a verified source, its header copied from the source (mtime and size), would run
    instead of it: --verify refuses it, naming the cache, and nothing of it runs."""
    import importlib.util
    import py_compile

    install(VERIFIED)
    source = site / VERIFIED.module / "__init__.py"
    poisoned = site / "poison.py"
    poisoned.write_text(greeter_code("PWNED"))
    cache = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(poisoned), cfile=str(cache), dfile=str(source), doraise=True)
    info = source.stat()
    data = bytearray(cache.read_bytes())
    data[8:16] = (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + info.st_size.to_bytes(4, "little")
    cache.write_bytes(bytes(data))
    poisoned.unlink()
    assert cli("--driver", "verified").stdout == "PWNED Universe\n"  # Python itself runs it
    result = cli("--driver", "verified", "--verify")
    assert result.returncode == 1 and result.stdout == "", result
    line = one_line(result.stderr)
    assert f"{VERIFIED.module}/__pycache__/" in line and "does not hold its code" in line, line
