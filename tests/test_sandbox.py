"""The kernel sandbox (greeter_core.worker.sandbox): each attack refused, friendly things working, grants exact.

Each test starts a fresh, single-threaded interpreter (``python -I``, as a cold
worker is), which confines itself with :func:`confine` and then tries one
thing on the real kernel; the test process plays the host, with a victim
process, listeners and a fake home of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import greeter_core
from greeter_core.worker import sandbox as sb

SUPPORT = sb.probe()
needs_landlock = pytest.mark.skipif(SUPPORT.landlock_abi < 6, reason="needs Landlock ABI 6 (Linux 6.12)")
needs_seccomp = pytest.mark.skipif(not SUPPORT.seccomp, reason=f"needs seccomp filters on {SUPPORT.arch}")

#: The child: confine (unless told not to), run one attack, say in JSON what happened.
RUNNER = textwrap.dedent(
    """
    import json, os, sys
    from greeter_core.worker import sandbox as sb
    box = sb.Sandbox.from_data(json.loads(sys.argv[1]))
    box = box._replace(read=sb.needed_paths(sys.path))
    result = {}
    try:
        result["status"] = sb.confine(box).to_data()
    except sb.SandboxError as error:
        print(json.dumps({"refused_to_start": str(error)}))
        sys.exit(3)
    try:
        exec(sys.argv[2], {"os": os, "sys": sys, "result": result})
        result["outcome"] = "allowed"
    except OSError as error:
        result.update(outcome="refused", errno=error.errno, explained=sb.explain(error))
    print(json.dumps(result))
    """
)


def confined(attack: str, box: sb.Sandbox, *, args: Any = None) -> dict[str, Any]:
    """Run *attack* (Python source; ``ARGS`` is *args*) in a fresh interpreter confined by *box*."""
    code = f"ARGS = {json.dumps(args)!r}\nARGS = __import__('json').loads(ARGS)\n{textwrap.dedent(attack)}"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, json.dumps(box.to_data()), code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
    )
    assert proc.stdout, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.fixture
def box(tmp_path: Path) -> sb.Sandbox:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return sb.Sandbox(scratch=str(scratch))


class Victim(NamedTuple):
    """A process outside the sandbox that can say whether it received a SIGWINCH (which harms no process)."""

    proc: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def got_sigwinch(self) -> bool:
        """Asked over its stdin: a signal already sent is handled before it reads the question."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip() == "True"


VICTIM = """
import signal, sys
hit = []
signal.signal(signal.SIGWINCH, lambda *_: hit.append(1))
print(flush=True)
for line in sys.stdin:
    print(bool(hit), flush=True)
    hit.clear()
"""


@pytest.fixture
def victim() -> Iterator[Victim]:
    """A process outside the sandbox, in a process group of its own (like the host and the keeper)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, process_group=0
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()  # its handler is in place
    yield Victim(proc)
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


def accepted(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except TimeoutError:
        return False
    return True


# -- processes outside the worker ---------------------------------------------------------------

PROCESS_ATTACKS = {
    "SIGKILL a process outside": "os.kill(ARGS, 9)",
    "SIGSTOP a process outside": "os.kill(ARGS, 19)",
    "its process group": "os.killpg(ARGS, 9)",
    "pidfd_send_signal": "import signal; signal.pidfd_send_signal(os.pidfd_open(ARGS), 9)",
    "ptrace attach": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(0x4206, ARGS, 0, 0) != 0:  # PTRACE_SEIZE: does not stop it
            raise OSError(ctypes.get_errno(), "ptrace")
    """,
    "read /proc/<pid>/mem": "mem = open(f'/proc/{ARGS}/mem', 'rb'); mem.seek(ADDRESS); mem.read(1)",
    "read /proc/<pid>/environ": "open(f'/proc/{ARGS}/environ', 'rb').read()",
    "read /proc/<pid>/cmdline": "open(f'/proc/{ARGS}/cmdline', 'rb').read()",
    "list /proc/<pid>/fd": "os.listdir(f'/proc/{ARGS}/fd')",
    "process_vm_readv": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
        there = (ctypes.c_void_p * 2)(ADDRESS, 8)
        if libc.process_vm_readv(ARGS, iov, 1, there, 1, 0) < 0:
            raise OSError(ctypes.get_errno(), "process_vm_readv")
    """,
    "pidfd_getfd": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(438, os.pidfd_open(ARGS), 1, 0) < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    """,
}


@needs_landlock
@needs_seccomp
@pytest.mark.parametrize("attack", PROCESS_ATTACKS.values(), ids=PROCESS_ATTACKS.keys())
def test_a_process_outside_the_sandbox_is_out_of_reach(attack: str, box: sb.Sandbox, victim: Victim) -> None:
    """No signal, ptrace, memory, environment, descriptor or /proc entry of a process outside reaches it."""
    with open(f"/proc/{victim.pid}/maps") as maps:  # a mapped address of the victim's, for the memory reads
        address = int(maps.readline().split("-")[0], 16)
    result = confined(attack.replace("ADDRESS", str(address)), box, args=victim.pid)
    assert result["outcome"] == "refused", result
    assert os.waitpid(victim.pid, os.WNOHANG) == (0, 0)
    with open(f"/proc/{victim.pid}/stat") as stat:
        assert stat.read().rsplit(")", 1)[1].split()[0] in ("S", "R")  # neither stopped nor traced


@needs_landlock
def test_kill_minus_one_reaches_nothing_outside(box: sb.Sandbox, victim: Victim) -> None:
    """kill(-1, sig) reports success unless every target said ESRCH; what matters is that nothing got it."""
    assert confined("os.kill(ARGS, 28)", box._replace(mode="off"), args=victim.pid)["outcome"] == "allowed"
    assert victim.got_sigwinch()  # the victim does notice a SIGWINCH ...
    confined("os.kill(-1, 28)", box)
    assert not victim.got_sigwinch()  # ... and got none from the confined kill(-1)


def test_unconfined_the_same_attack_succeeds(box: sb.Sandbox, victim: Victim) -> None:
    """The attacks above are real: with ``--sandbox off`` the worker reads the victim's environment."""
    result = confined(PROCESS_ATTACKS["read /proc/<pid>/environ"], box._replace(mode="off"), args=victim.pid)
    assert result["outcome"] == "allowed"


@needs_landlock
def test_the_worker_may_still_signal_its_own_children(box: sb.Sandbox) -> None:
    """The scope is the worker's own tree: a process it started is its to stop."""
    attack = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(30)"])
        child.kill()
        result["code"] = child.wait()
    """
    result = confined(attack, box)
    assert result["outcome"] == "allowed", result
    assert result["code"] == -signal.SIGKILL


# -- files --------------------------------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".secret").write_text("hunter2")
    return home / ".secret"


@needs_landlock
def test_a_secret_in_the_home_directory_cannot_be_read(box: sb.Sandbox, secret: Path) -> None:
    """Nothing outside what running the plugin needs is readable, the user's home included."""
    result = confined("result['data'] = open(ARGS).read()", box, args=str(secret))
    assert result["outcome"] == "refused"
    assert result["explained"] == f"refused reading {secret}; grant it with --allow-read {secret}"


@needs_landlock
@pytest.mark.parametrize("where", ["package", "site-packages"], ids=["beside greeter_core", "a .pth in site-packages"])
def test_nothing_installed_can_be_rewritten(box: sb.Sandbox, where: str) -> None:
    """greeter's own package and site-packages are read-only: no code planted for the host's next start."""
    package = Path(greeter_core.__file__).parent
    target = package / f"planted-{uuid.uuid4().hex}.py" if where == "package" else package.parent / "planted.pth"
    try:
        result = confined("open(ARGS, 'w').write('import os')", box, args=str(target))
        assert result["outcome"] == "refused"
        assert not target.exists()
        assert f"--allow-write {target.parent}" in result["explained"]
    finally:
        target.unlink(missing_ok=True)


@needs_landlock
def test_the_scratch_directory_is_writable_and_is_tmpdir_and_home(box: sb.Sandbox) -> None:
    """A plugin writes and reads back a file in its scratch directory, which TMPDIR and HOME name."""
    attack = """
        import tempfile
        with tempfile.NamedTemporaryFile("w+", delete=False) as file:
            file.write("kept")
        result["path"], result["data"] = file.name, open(file.name).read()
        result["home"] = os.path.expanduser("~")
    """
    result = confined(attack, box)
    assert result["outcome"] == "allowed", result
    assert result["data"] == "kept"
    assert Path(result["path"]).parent == Path(box.scratch) == Path(result["home"])


@needs_landlock
def test_a_file_over_the_size_cap_fails_with_efbig(box: sb.Sandbox) -> None:
    """RLIMIT_FSIZE caps each file: the write fails (EFBIG, Python ignores SIGXFSZ) and says so."""
    attack = "open(os.path.join(os.environ['TMPDIR'], 'big'), 'wb').write(b'x' * (2 * 1024 * 1024))"
    result = confined(attack, box._replace(file_size_mib=1))
    assert result["outcome"] == "refused"
    assert result["errno"] == 27  # EFBIG
    assert result["explained"] == "wrote a file over the sandbox's size limit (1 MiB per file)"


FRIENDLY = {
    "read the standard library": "result['n'] = len(open(os.__file__).read())",
    "import a compiled extension": "import _decimal, _json, _ssl; result['n'] = str(_decimal.Decimal('1.5'))",
    "time zones": "import zoneinfo; result['n'] = str(zoneinfo.ZoneInfo('Europe/Paris'))",
    "random bytes": "result['n'] = len(os.urandom(16))",
    "socketpair": "import socket; a, b = socket.socketpair(); a.send(b'x'); result['n'] = b.recv(1).decode()",
    "its own /proc entry": "result['n'] = open('/proc/self/status').read().count('Seccomp')",
}


@needs_landlock
@pytest.mark.parametrize("action", FRIENDLY.values(), ids=FRIENDLY.keys())
def test_what_running_a_plugin_needs_still_works(action: str, box: sb.Sandbox) -> None:
    """The interpreter, its stdlib and extensions, zoneinfo, urandom and a socketpair work confined."""
    result = confined(action, box)
    assert result["outcome"] == "allowed", result


# -- network ------------------------------------------------------------------------------------


@needs_landlock
@needs_seccomp
def test_a_tcp_connect_to_a_listener_on_loopback_is_refused(box: sb.Sandbox, listener: socket.socket) -> None:
    """TCP connect is refused by Landlock, and the message names the grant that would allow it."""
    port = listener.getsockname()[1]
    result = confined("import socket; socket.create_connection(('127.0.0.1', ARGS), timeout=2)", box, args=port)
    assert result["outcome"] == "refused"
    assert not accepted(listener)
    assert result["explained"] == (
        f"refused network access (connect 127.0.0.1:{port}); grant it with --allow-net {port}"
    )


NET_ATTACKS = {
    "UDP send": "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', ARGS))",
    "bind a TCP port": "import socket; socket.create_server(('127.0.0.1', 0))",
    "a raw socket": "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
    "SCTP": "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)",
    "a pathname Unix socket": "import socket; socket.socket(socket.AF_UNIX).connect(ARGS['unix'])",
    "an abstract Unix socket": "import socket; socket.socket(socket.AF_UNIX).connect(ARGS['abstract'])",
    "netlink": "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)",
}


@pytest.fixture
def endpoints(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A UDP socket, a pathname and an abstract Unix listener, all the test's."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen()
    abstract_name = f"\0greeter-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen()
    yield {"udp": udp.getsockname()[1], "unix": path, "abstract": abstract_name, "_udp": udp}
    for sock in (udp, unix, abstract):
        sock.close()


@needs_landlock
@needs_seccomp
@pytest.mark.parametrize("attack", NET_ATTACKS.values(), ids=NET_ATTACKS.keys())
def test_no_other_network_access(attack: str, box: sb.Sandbox, endpoints: dict[str, Any]) -> None:
    """No UDP, no listening, no raw/SCTP/netlink socket, no Unix socket outside the worker."""
    args = endpoints["udp"] if "SOCK_DGRAM" in attack else {k: v for k, v in endpoints.items() if k != "_udp"}
    result = confined(attack, box, args=args)
    assert result["outcome"] == "refused", result
    assert result["errno"] in (1, 13)
    assert result["explained"] is not None
    with pytest.raises(TimeoutError):
        endpoints["_udp"].recv(1)


# -- grants -------------------------------------------------------------------------------------


@needs_landlock
def test_allow_read_opens_exactly_that_file(box: sb.Sandbox, secret: Path) -> None:
    """--allow-read FILE opens that file, not its neighbour."""
    (secret.parent / "other").write_text("no")
    granted = box._replace(grants=sb.Grants(allow_read=(str(secret),)))
    assert confined("result['data'] = open(ARGS).read()", granted, args=str(secret))["data"] == "hunter2"
    assert confined("open(ARGS).read()", granted, args=str(secret.parent / "other"))["outcome"] == "refused"
    assert confined("open(ARGS, 'a').write('x')", granted, args=str(secret))["outcome"] == "refused"


@needs_landlock
def test_allow_write_opens_exactly_that_directory(box: sb.Sandbox, tmp_path: Path) -> None:
    """--allow-write DIR lets the plugin create and read files beneath DIR, nowhere beside it."""
    out = tmp_path / "out"
    out.mkdir()
    granted = box._replace(grants=sb.Grants(allow_write=(str(out),)))
    attack = "open(ARGS, 'w').write('made'); result['data'] = open(ARGS).read()"
    assert confined(attack, granted, args=str(out / "f"))["data"] == "made"
    assert confined(attack, granted, args=str(tmp_path / "beside"))["outcome"] == "refused"
    assert not (tmp_path / "beside").exists()


@needs_landlock
@needs_seccomp
def test_allow_net_opens_exactly_that_port(box: sb.Sandbox, listener: socket.socket, endpoints: dict[str, Any]) -> None:
    """--allow-net PORT: TCP connect to PORT works; another port, UDP and binding stay refused."""
    port = listener.getsockname()[1]
    other = socket.create_server(("127.0.0.1", 0))
    granted = box._replace(grants=sb.Grants(allow_net=(port,)))
    connect = "import socket; socket.create_connection(('127.0.0.1', ARGS), timeout=2).close()"
    try:
        assert confined(connect, granted, args=port)["outcome"] == "allowed"
        assert accepted(listener)
        assert confined(connect, granted, args=other.getsockname()[1])["outcome"] == "refused"
        assert confined(NET_ATTACKS["UDP send"], granted, args=endpoints["udp"])["outcome"] == "refused"
        bind = f"import socket; socket.create_server(('127.0.0.1', {port + 1 if port < 65535 else port - 1}))"
        assert confined(bind, granted)["outcome"] == "refused"
    finally:
        other.close()


def test_a_write_grant_that_reaches_a_protected_path_is_refused(tmp_path: Path) -> None:
    """Deny wins over allow: a write grant at, beneath or above a protected root is refused by name."""
    protected = tmp_path / "site-packages"
    (protected / "pkg").mkdir(parents=True)
    for grant in (protected, protected / "pkg", tmp_path):
        with pytest.raises(sb.SandboxError, match=f"--allow-write {grant} is refused: .*{protected}"):
            sb.check_grants(sb.Grants(allow_write=(str(grant),)), [str(protected)])
    sb.check_grants(sb.Grants(allow_write=(str(tmp_path / "elsewhere"),)), [str(protected)])


def test_grants_and_status_cross_the_channel_as_plain_data() -> None:
    """The records survive their data form; a malformed one is refused by field."""
    grants = sb.Grants(("/srv/a",), ("/srv/b",), (443,))
    box = sb.Sandbox("require", grants, ("/usr/lib",), "/tmp/x", 8, "landlock=3")
    assert sb.Sandbox.from_data(json.loads(json.dumps(box.to_data()))) == box
    assert grants.describe() == "--allow-read /srv/a --allow-write /srv/b --allow-net 443"
    bad: Any
    for bad in ({**grants.to_data(), "allow_net": [0]}, {**grants.to_data(), "allow_read": ["relative"]}, []):
        with pytest.raises(ValueError):
            sb.Grants.from_data(bad)


# -- best effort, require, off ------------------------------------------------------------------


@needs_landlock
def test_on_this_kernel_the_sandbox_is_fully_enforced(box: sb.Sandbox) -> None:
    """Landlock ABI 6+, seccomp and user namespaces here: nothing is missing."""
    status = sb.Status.from_data(confined("pass", box)["status"])
    assert status.state == "full", status.line()
    assert status.line() == f"sandbox fully enforced (Landlock ABI {SUPPORT.landlock_abi})"


@needs_landlock
def test_an_older_landlock_abi_reports_what_is_missing(box: sb.Sandbox) -> None:
    """ABI 3 (Linux 6.2): no TCP rules (a network namespace closes the network instead), no signal scoping."""
    result = confined(NET_ATTACKS["UDP send"], box._replace(simulate="landlock=3"), args=9)
    status = sb.Status.from_data(result["status"])
    assert status.state == "partial"
    assert status.missing == ("signal scoping (Landlock ABI 3 < 6)",)
    assert "user+net namespace" in status.in_force
    assert status.line() == "sandbox partially enforced: missing signal scoping (Landlock ABI 3 < 6)"


@needs_landlock
def test_without_seccomp_a_network_namespace_still_closes_the_network(box: sb.Sandbox, listener: socket.socket) -> None:
    """The fallback for a kernel without seccomp: the worker gets a network namespace, nothing is reachable."""
    port = listener.getsockname()[1]
    attack = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', ARGS))"
    result = confined(attack, box._replace(simulate="seccomp=0"), args=port)
    assert result["outcome"] == "refused"
    assert result["errno"] == 101  # ENETUNREACH: the namespace has no network
    assert "user+net namespace" in result["status"]["in_force"]
    assert result["status"]["state"] == "partial"


def test_without_landlock_the_status_says_so(box: sb.Sandbox, secret: Path) -> None:
    """No Landlock: the sandbox says files are open, and indeed they are (best effort, honest)."""
    result = confined("result['data'] = open(ARGS).read()", box._replace(simulate="landlock=0"), args=str(secret))
    assert result["data"] == "hunter2"
    assert result["status"]["state"] == "partial"
    assert "Landlock (unavailable (simulated))" in result["status"]["missing"]


@pytest.mark.parametrize("simulate", ["landlock=5", "landlock=0", "userns=0", "seccomp=0"])
def test_require_refuses_to_run_with_anything_missing(box: sb.Sandbox, simulate: str) -> None:
    """--sandbox require: one piece missing and the worker refuses to go on, naming what is missing."""
    result = confined("result['ran'] = True", box._replace(mode="require", simulate=simulate))
    assert "ran" not in result
    assert result["refused_to_start"].startswith("--sandbox require: refusing to run the plugin with the sandbox")


def test_off_applies_nothing(box: sb.Sandbox, secret: Path) -> None:
    """--sandbox off: the worker runs as before this module existed."""
    result = confined("result['data'] = open(ARGS).read()", box._replace(mode="off"), args=str(secret))
    assert result["data"] == "hunter2"
    assert result["status"]["mode"] == "off"


def test_the_sandbox_refuses_a_process_that_already_has_threads(box: sb.Sandbox) -> None:
    """A thread started before confine() would stay unconfined: refused, loudly, whatever the mode."""
    runner = RUNNER.replace(
        "result = {}",
        "import threading, time; threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); result = {}",
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", runner, json.dumps(box.to_data()), "pass"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(proc.stdout)["refused_to_start"].startswith("the sandbox must be set up before any thread")


def test_probe_names_why_landlock_is_missing() -> None:
    """The probe reports the ABI, and a simulated older kernel as older."""
    assert sb.probe("landlock=2").landlock_abi == min(2, SUPPORT.landlock_abi)
    assert sb.probe("landlock=0").landlock_problem
    assert not sb.probe("userns=0").userns
    with pytest.raises(ValueError, match="unknown item"):
        sb.probe("landlock")


def test_the_plugin_module_is_located_without_importing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install's package lies outside sys.path: found by its spec, read-allowed, never run here."""
    package = tmp_path / f"located_{uuid.uuid4().hex}"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('imported')")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sb.plugin_location(f"{package.name}.sub:Plugin") == (str(package),)
    assert package.name not in sys.modules
