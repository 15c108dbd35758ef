"""What the core's tests share: fixture plugins built as real distributions, and ways to drive greeter.

- Fixture plugins: :class:`PluginSpec` says what one is (driver, code,
  metadata); :class:`PluginFactory` builds its wheel once per session and
  unpacks it into a site directory as an installer would, ``RECORD`` included.
  Tests that need a real venv get one from :func:`core_venv`.
- The fixture plugins themselves, one per behaviour, each under its own name.
- ``greeter run`` as a real process (:class:`RunningGreeter`), HTTP to
  127.0.0.1, the process table, and one wait primitive, :func:`wait_for`:
  waits are on conditions (a line appeared, a counter moved, a process
  ended) with generous timeouts, never on durations; the machines are noisy.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

REPO = Path(__file__).resolve().parents[1]

#: Seconds: generous, only ever reached when something is wrong.
WAIT = 60.0

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float = WAIT, what: str = "a condition") -> T:
    """Poll *condition* until it returns something true, and return that; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {value!r}")
        time.sleep(0.01)


def one_line(stderr: str) -> str:
    """A user-facing failure is exactly one line on stderr and never a traceback; return it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a greeter subprocess: no inherited Python or greeter settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GREETER_"))}
    env.update(PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def forget_plugins() -> None:
    """Make this process see the installed plugins as they are now.

    stevedore keeps entry points per process and never refreshes them (that
    is what greeter's fresh-metadata fallback is for); tests that change
    sys.path start from a clean slate instead of relying on the fallback.
    """
    from stevedore import _cache
    from stevedore.extension import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()
    _cache._c._internal.clear()
    importlib.invalidate_caches()


# -- fixture plugin distributions ---------------------------------------------------------------


def greet_body(body: str, prelude: str = "") -> str:
    """Source of a Greeter plugin whose ``greet(self, name)`` runs *body*."""
    indented = "\n".join("        " + line for line in body.splitlines())
    header = "from greeter_core import Greeter\n\nclass Plugin(Greeter):\n    def greet(self, name):"
    return f"{prelude}\n{header}\n{indented}\n"


def greeter_code(word: str) -> str:
    """Source of a well-behaved plugin whose greeting is ``f"{word} {name or 'Universe'}"``."""
    return greet_body(f'return "{word} " + (name or "Universe")') + '\nPlugin.language = "Test"\n'


@dataclass(frozen=True)
class PluginSpec:
    """What a fixture plugin distribution is: its driver name, code and metadata."""

    driver: str
    code: str = field(default=greeter_code("Hi"))
    version: str = "1.0"
    distribution: str = ""
    attr: str = "Plugin"
    extra_files: tuple[tuple[str, str], ...] = ()
    dependencies: tuple[str, ...] = ()
    module_name: str = ""
    """Fix the module name, e.g. for two versions of one plugin (default: unique per code)."""

    @property
    def dist(self) -> str:
        return self.distribution or f"greeter-{self.driver}"

    @property
    def module(self) -> str:
        # Unique per distribution and code, so two fixture plugins never share
        # a module name in one process.
        if self.module_name:
            return self.module_name
        digest = hashlib.sha256(f"{self.dist}{self.version}{self.code}".encode()).hexdigest()[:8]
        return f"gt_{re.sub(r'[^a-z0-9]', '_', self.dist.lower())}_{digest}"

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def write_project(self, root: Path) -> Path:
        """Write a setuptools project for this plugin under *root*; return its pyproject.toml."""
        root.mkdir(parents=True, exist_ok=True)
        package = root / self.module
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text(
            '"""A greeter plugin built by the tests."""\n' + textwrap.dedent(self.code), encoding="utf-8"
        )
        for name, text in self.extra_files:
            (package / name).write_text(text, encoding="utf-8")
        deps = ", ".join(f'"{d}"' for d in self.dependencies)
        pyproject = root / "pyproject.toml"
        pyproject.write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["setuptools>=77"]
                build-backend = "setuptools.build_meta"

                [project]
                name = "{self.dist}"
                version = "{self.version}"
                description = "fixture plugin {self.driver}"
                dependencies = [{deps}]

                [project.entry-points."greeter.plugins"]
                {self.driver} = "{self.target}"

                [tool.setuptools]
                packages = ["{self.module}"]
                """
            ),
            encoding="utf-8",
        )
        return pyproject


#: Set by tox to one directory for all its envs: a fixture wheel is then built once per tox run.
WHEEL_CACHE_ENV = "GREETER_TEST_WHEELS"


class WheelBuilder:
    """Builds wheels through a PEP 517 front end (``uv build``), each distinct project once.

    The build runs in this test environment, which holds setuptools (the
    ``test`` extra), without build isolation: creating an isolated build
    environment per wheel would cost more than the build. Wheels are kept by
    a digest of the project's files and the setuptools version, so a cache
    shared across sessions and interpreters (the wheels are pure Python)
    can never serve a stale one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def wheel(self, project: Path) -> Path:
        """The wheel of the project in directory *project*, built unless an identical one was."""
        done = self.root / _digest(project)
        # One build per project even when pytest-xdist's workers ask for it at once: the others wait.
        with open(f"{done}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_dir():
                scratch = Path(tempfile.mkdtemp(prefix=f"{done.name}.", dir=self.root))
                # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
                source = shutil.copytree(project, scratch / "src", ignore=_NOT_SOURCE)
                uv("build", "--quiet", "--wheel", "--no-build-isolation", "--python", sys.executable,
                   "--out-dir", scratch / "dist", source, env=clean_env(UV_NO_CONFIG="1"))  # fmt: skip
                (scratch / "dist").rename(done)
                shutil.rmtree(scratch, ignore_errors=True)
        [wheel] = done.glob("*.whl")
        return wheel


_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info")


def _digest(project: Path) -> str:
    from importlib.metadata import version

    digest = hashlib.sha256(f"setuptools {version('setuptools')}".encode())
    for directory, dirs, files in os.walk(project):
        dirs[:] = sorted(set(dirs) - _NOT_SOURCE(directory, dirs))
        for name in sorted(set(files) - _NOT_SOURCE(directory, files)):
            path = Path(directory, name)
            digest.update(b"\0" + path.relative_to(project).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def wheel_builder(session_dir: Path) -> WheelBuilder:
    """The session's builder: tox's shared directory when tox set one, else *session_dir*."""
    shared = os.environ.get(WHEEL_CACHE_ENV)
    return WheelBuilder(Path(shared) if shared else session_dir)


class PluginFactory:
    """Builds each fixture plugin's wheel once (per session, or per tox run) and installs it."""

    def __init__(self, workdir: Path, builder: WheelBuilder) -> None:
        self.workdir = workdir
        self.builder = builder
        self._wheels: dict[PluginSpec, Path] = {}

    def wheel(self, spec: PluginSpec) -> Path:
        if spec not in self._wheels:
            project = Path(tempfile.mkdtemp(prefix=f"{spec.module}-", dir=self.workdir))
            spec.write_project(project)
            self._wheels[spec] = self.builder.wheel(project)
        return self._wheels[spec]

    def install(self, spec: PluginSpec, site: Path) -> Path:
        """Unpack the plugin's wheel into *site*, as an installer would; return the dist-info."""
        site.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(self.wheel(spec)) as wheel:
            wheel.extractall(site)
        [dist_info] = site.glob(f"{spec.dist.replace('-', '_')}-{spec.version}.dist-info")
        return dist_info


#: What a wheel of greeter-core is built from.
CORE_SOURCES = ("greeter_core", "pyproject.toml", "README.md")


def build_core_wheel(builder: WheelBuilder, scratch: Path) -> Path:
    """A wheel of greeter-core from this checkout (built once per content), for tests that build venvs."""
    source = Path(tempfile.mkdtemp(prefix="greeter-core-", dir=scratch))
    for name in CORE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=_NOT_SOURCE)
        else:
            shutil.copy2(REPO / name, source / name)
    return builder.wheel(source)


def wheel_of_installed(distribution: str, out: Path) -> Path:
    """Repack an installed pure-Python distribution (here: stevedore) as a wheel, so that a test
    venv gets the very version under test without a network or an index."""
    from importlib.metadata import distribution as find_distribution

    dist = find_distribution(distribution)
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [
        f for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts and f.name not in skipped
    ]
    [dist_info] = {f.parts[0] for f in files if f.parts[0].endswith(".dist-info")}
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{dist_info.removesuffix('.dist-info')}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in files:
            data = file.read_binary()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            archive.writestr(file.as_posix(), data)
            record.append(f"{file.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def uv(*args: str | Path, env: dict[str, str]) -> None:
    """Run uv (a test dependency) quietly; fail the test with its output if it fails."""
    from uv import find_uv_bin

    subprocess.run([find_uv_bin(), *map(str, args)], env=env, check=True, capture_output=True, text=True)


class Venv(NamedTuple):
    """A real venv built for one test, and the environment to run its programs in."""

    python: Path
    env: dict[str, str]

    def install(self, *wheels: Path) -> None:
        """Install (or upgrade to) *wheels*, offline, as `pip install` would, while greeter may be running."""
        uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", self.python, *wheels, env=self.env)


def core_venv(root: Path, core: Sequence[Path], *wheels: Path, env: dict[str, str], seed: bool = False) -> Path:
    """A fresh venv at *root* holding the *core* wheels (greeter-core and stevedore) and *wheels*; its python.

    Offline: no index is asked. ``seed`` adds pip.
    """
    uv("venv", "--quiet", *(["--seed"] if seed else []), "--python", sys.executable, root, env=env)
    python = root / "bin" / "python"
    uv("pip", "install", "--quiet", "--offline", "--no-index", "--python", python, *core, *wheels, env=env)
    return python


# -- the fixture plugins: one per behaviour, each under its own driver name ---------------------

ALPHA = PluginSpec("alpha", code=greeter_code("Alpha"))
BETA = PluginSpec("beta", code=greeter_code("Beta"))
GAMMA = PluginSpec("gamma", code=greeter_code("Gamma"))
#: Two versions of one distribution, sharing a module name: an upgrade in place.
ALPHA_V1 = PluginSpec("alpha", code=greeter_code("Alpha"), version="1.0", module_name="gt_alpha_upgradable")
ALPHA_V2 = PluginSpec("alpha", code=greeter_code("Alpha two"), version="2.0", module_name="gt_alpha_upgradable")

#: The Go post's panicking plugin.
PANIC = PluginSpec("panic", code=greet_body('raise RuntimeError("I\'m gone.")'))
#: ``sys.exit(1)`` in greet(): contained in process, like any exception.
SYS_EXIT = PluginSpec("sysexit", code=greet_body("sys.exit(1)", "import sys"))
#: ``os._exit(3)`` in greet(): the Go post's os.Exit, which only isolation survives.
OS_EXIT = PluginSpec("exit", code=greet_body("os._exit(3)", "import os"))
SEGFAULT = PluginSpec("segfault", code=greet_body("ctypes.string_at(0)", "import ctypes"))
#: Logs "sleeping" (so a test can tell the call is in flight), then never returns.
HANG = PluginSpec("hang", code=greet_body('self.context.logger.warning("sleeping")\ntime.sleep(3600)', "import time"))
NOT_A_STRING = PluginSpec("number", code=greet_body("return 42"))
BROKEN_IMPORT = PluginSpec("broken", code="import gt_no_such_module_anywhere\n")
NO_GREET = PluginSpec(
    "nogreet", code="class Plugin:\n    def __init__(self, context):\n        self.context = context\n"
)
#: Writes to stdout (print and raw fd 1), to stderr and to its logger, at import time and when greeting.
NOISY = PluginSpec(
    "noisy",
    code=greet_body(
        'print("chatter on stdout", flush=True)\n'
        'print("chatter on stderr", file=sys.stderr, flush=True)\n'
        'os.write(1, b"raw bytes on fd 1\\n")\n'
        'self.context.logger.warning("about to greet %s", name)\n'
        'return "Hello " + name',
        'import os, sys\nprint("import-time chatter", flush=True)',
    ),
)
#: Greets with its driver name, its options, the name and its pid: what crossed into the plugin.
ECHO_CONFIG = PluginSpec(
    "echoconfig",
    code=greet_body(
        'return f"{self.context.driver} {sorted(self.context.config.items())} {name} {os.getpid()}"', "import os"
    ),
)


def marking(driver: str, word: str) -> PluginSpec:
    """A well-behaved plugin that records each import of its module, with the importing pid, in a file
    ``imported-<driver>`` beside its package: observable from any process (see :func:`imports_of`)."""
    mark = (
        "import os as _os, pathlib as _pathlib\n"
        f'with open(_pathlib.Path(__file__).parent.parent / "imported-{driver}", "a") as _file:\n'
        "    _file.write(f'{_os.getpid()}\\n')\n"
    )
    return PluginSpec(driver, code=mark + greeter_code(word))


def imports_of(spec: PluginSpec, site: Path) -> list[int]:
    """The pids of every process that imported the :func:`marking` plugin *spec* installed in *site*."""
    marker = site / f"imported-{spec.driver}"
    return [int(pid) for pid in marker.read_text().split()] if marker.exists() else []


# -- processes ------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while *pid* is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of *pid*, from the process table."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent(int(entry.name)) == pid:
                    kids.append(int(entry.name))
            except OSError:
                continue
    return kids


def parent(pid: int) -> int:
    """*pid*'s parent (a worker's is its keeper; a keeper's is the fork server or the host)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every process below *pid* (a worker runs under its keeper, a grandchild of its host)."""
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children(parent)]
        found += frontier
    return found


def kill_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# -- greeter run as a real process, and HTTP to it ---------------------------------------------

ENDPOINT = re.compile(r"control endpoint on http://\S+:(\d+)")
SUMMARY = re.compile(r"stopped after (\d+) greetings?, (\d+) errors?, (\d+) swaps?, (\d+) reloads?")


class Reply(NamedTuple):
    """One HTTP reply: its status, headers (lower-case names) and decoded JSON body."""

    status: int
    headers: dict[str, str]
    data: Any


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request to 127.0.0.1:port; the body of every reply must be JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw))
    finally:
        connection.close()


def post_json(port: int, path: str, data: object, headers: dict[str, str] | None = None) -> Reply:
    return request(port, "POST", path, json.dumps(data), {"Content-Type": "application/json", **(headers or {})})


class Lines:
    """The lines of a stream, read by a thread as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
        stream.close()

    def wait_for(self, predicate: Callable[[list[str]], T | None], timeout: float = WAIT) -> T:
        """Wait until *predicate* of the lines so far is true; return its value."""
        return wait_for(lambda: predicate(list(self.lines)), timeout, f"a line; lines so far: {self.lines[-20:]}")

    def search(self, pattern: str | re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        regex = re.compile(pattern)
        return self.wait_for(lambda lines: next(filter(None, map(regex.search, lines)), None), timeout)

    def join(self) -> None:
        self._thread.join(WAIT)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class RunningGreeter:
    """A running `python -m greeter_core run ...` process."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        stdout: IO[str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.process = subprocess.Popen(
            [python, "-m", "greeter_core", "run", *args],
            env=env,
            cwd=cwd,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._stdout = Lines(self.process.stdout) if stdout is None else None  # type: ignore[arg-type]
        self.stderr = Lines(self.process.stderr)  # type: ignore[arg-type]
        self._port: int | None = None

    @property
    def stdout(self) -> Lines:
        assert self._stdout is not None, "stdout was redirected to a file"
        return self._stdout

    @property
    def port(self) -> int:
        """The control port the process logged (it was started with port 0)."""
        if self._port is None:
            self._port = int(self.stderr.search(ENDPOINT).group(1))
        return self._port

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return request(self.port, method, path, body, headers)

    def status(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        reply = self.request("GET", "/status", headers=headers)
        assert reply.status == 200, reply
        return reply.data  # type: ignore[no-any-return]

    def swap(self, driver: str) -> Reply:
        return self.request("GET", f"/?mod={driver}")

    def wait_greetings(self, text: str, more: int = 1) -> None:
        """Wait until *more* further lines equal to *text* appear on stdout."""
        start = self.stdout.lines.count(text)
        self.stdout.wait_for(lambda lines: lines.count(text) >= start + more)

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """Poll ``/status`` until *predicate* holds; return that status."""

        def matching() -> dict[str, Any] | None:
            status = self.status()
            return status if predicate(status) else None

        return wait_for(matching, timeout, "/status to match")

    def send(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.process.wait(timeout)
        self.stderr.join()
        if self._stdout is not None:
            self._stdout.join()
        return code

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.send(signum)
        return self.wait()

    def summary(self) -> tuple[int, int, int, int]:
        """(greetings, errors, swaps, reloads) from the summary line on stderr."""
        greetings, errors, swaps, reloads = map(int, self.stderr.search(SUMMARY, timeout=0).groups())
        return greetings, errors, swaps, reloads

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


@contextmanager
def launcher(env: dict[str, str], cwd: Path, python: str = sys.executable) -> Iterator[Callable[..., RunningGreeter]]:
    """``start(*args)`` runs `greeter run ARGS`; every process still running at the end is killed."""
    started: list[RunningGreeter] = []

    def start(*args: str, stdout: IO[str] | None = None, env_extra: dict[str, str] | None = None) -> RunningGreeter:
        process = RunningGreeter(list(args), {**env, **(env_extra or {})}, cwd, stdout, python)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


# -- the code blocks of the README and the docs ---------------------------------------------------

FENCE = re.compile(r"(?:<!-- doc-test: (?P<note>[^\n]*?) -->\n)?```(?P<lang>[a-z{}]*)\n(?P<text>.*?)```", re.S)


class Block(NamedTuple):
    """One fenced code block of a page, and the note before it."""

    page: Path
    line: int
    lang: str
    text: str
    note: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def commands(self) -> list[str]:
        """The commands it shows: ``$`` lines of a console block, every line of a sh block."""
        if self.lang == "console":
            return [line[2:] for line in self.text.splitlines() if line.startswith("$ ")]
        return [line for line in self.text.splitlines() if line.strip() and not line.startswith("#")]

    def transcript(self) -> list[tuple[str, list[str]]]:
        """(command, the output lines shown after it) for each command of a console block."""
        steps: list[tuple[str, list[str]]] = []
        for line in self.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        return steps

    def option(self, name: str) -> list[str]:
        match = re.search(rf"\b{name}=(\S+)", self.note)
        return match.group(1).split(",") if match else []


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, text.count("\n", 0, m.start("lang")) + 1, m["lang"], m["text"], m["note"] or "")
        for m in FENCE.finditer(text)
    ]


def matches(shown: list[str], actual: list[str]) -> bool:
    """Whether *actual* lines are what the docs show, a line "..." standing for any lines."""
    if not shown:
        return not actual
    if shown[0] == "...":
        return any(matches(shown[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and shown[0] == actual[0] and matches(shown[1:], actual[1:])


def block_after(page: Path, marker: str, lang: str | None = None) -> Block:
    """The first block of *page* (of language *lang*) after the text *marker*."""
    text = page.read_text(encoding="utf-8")
    line = text.count("\n", 0, text.index(marker)) + 1
    return next(b for b in blocks(page) if b.line > line and (lang is None or b.lang == lang))


def sh(
    command: str, env: dict[str, str], cwd: Path, timeout: float = 600, *, merged: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run *command* as written, in bash; stdout and stderr together, as a terminal shows them.

    ``merged=False`` keeps stderr apart: curl shows no progress meter on a
    terminal, but writes one to a pipe.
    """
    return subprocess.run(
        ["bash", "-c", command],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def copy_checkout(target: Path) -> Path:
    """The checkout's sources, as a clean clone has them (no venvs, builds or caches)."""
    skip = shutil.ignore_patterns(
        ".git", ".tox", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "_build", "generated", "wheelhouse"
    )
    return Path(shutil.copytree(REPO, target, ignore=skip))
