"""Mutation testing (``tox -e mutation``): cosmic-ray over the modules that guard a promise, in the installed wheel.

cosmic-ray rewrites one module file on disk per mutant and runs a test
command; pointed at the copy tox installed (not the checkout), it tests what
the suite tests, subprocesses included (mutmut 3 instead runs tests against
its own copy of the source tree, which this suite refuses to import). Each
module gets its own session and only the test files that speak for it, one
pytest worker (``-n 0``), first failure ends a mutant (``-x``).

``python tests/mutation.py [MODULE ...]`` runs the named modules (all by
default), resuming sessions already started; the report goes to stdout and
``$TOX_ENV_DIR/mutation/report.txt``.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db  # type: ignore[import-not-found]
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult  # type: ignore[import-not-found]

import greeter_core

HERE = Path(__file__).resolve().parent
INSTALLED = Path(greeter_core.__file__).resolve().parent
SCRIPTS = Path(sysconfig.get_path("scripts"))

#: module (under greeter_core/) -> the test files that speak for it.
TARGETS: dict[str, list[str]] = {
    "printable.py": ["test_printable.py", "test_hostile_plugins.py"],
    "contract.py": ["test_contract.py", "test_loading.py", "test_hostile_plugins.py"],
    "policy.py": ["test_policy_rules.py", "test_policy.py"],
    "integrity.py": ["test_integrity.py"],
    "lock.py": ["test_lock_file.py", "test_lock.py"],
    "catalog.py": ["test_catalog.py"],
    "guard.py": ["test_loading.py", "test_hostile_plugins.py"],
    "worker/protocol.py": [
        "test_deadline.py",
        "test_errors.py",
        "isolation/test_containment.py",
        "isolation/test_boundary.py",
    ],
    # the wire codec: errors.to_data/from_data, or worker/codec.py once it moves there
    "worker/codec.py": ["test_errors.py", "isolation/test_boundary.py"],
    "errors.py": ["test_errors.py", "test_worker_failure.py", "isolation/test_boundary.py"],
}


def config(module: Path, tests: list[str], timeout: float) -> str:
    """One cosmic-ray session's configuration (TOML)."""
    pytest = SCRIPTS / "pytest"
    files = " ".join(str(HERE / name) for name in tests if (HERE / name).exists())
    # the pytest script, not python -m pytest: the checkout must not come first on sys.path
    command = f"{pytest} -x -q -n 0 -p no:cacheprovider -p no:randomly {files}"
    return (
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {command!r}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where *source*'s annotations are, as ((line, column), (end line, end column)), cosmic-ray's positions."""
    annotations: list[ast.expr] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            annotations.append(node.returns)
    return [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in annotations]


def skip_annotations(module: Path, session: Path) -> int:
    """Mark the mutants inside annotations as skipped: equivalent, since ``from __future__ import annotations``
    keeps every annotation a string that nothing evaluates. Return how many."""
    source = module.read_text(encoding="utf-8")
    assert "from __future__ import annotations" in source, f"{module}: its annotations are evaluated"
    spans = annotation_spans(source)
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.work_items:
            if all(any(start <= m.start_pos and m.end_pos <= end for start, end in spans) for m in item.mutations):
                db.set_result(item.job_id, WorkResult(output="in an annotation", worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
    return skipped


def forget_survivors(session: Path) -> None:
    """Make the mutants that survived pending again: after new tests, only they need another run."""
    with use_db(str(session), WorkDB.Mode.open) as db:
        survived = [
            item.job_id for item, result in db.completed_work_items if result.test_outcome == TestOutcome.SURVIVED
        ]
    with sqlite3.connect(session) as connection:  # cosmic-ray's WorkDB has no call that removes a result
        connection.executemany("DELETE FROM work_results WHERE job_id = ?", [(job,) for job in survived])


def run(name: str, work: Path, timeout: float, *, retest: bool = False) -> str:
    """Mutate one installed module (resuming its session); return cosmic-ray's report for it."""
    module = INSTALLED / name
    work.mkdir(parents=True, exist_ok=True)
    stem = name.replace("/", "-").removesuffix(".py")
    toml, session = work / f"{stem}.toml", work / f"{stem}.sqlite"
    toml.write_text(config(module, TARGETS[name], timeout), encoding="utf-8")
    if not session.exists():
        subprocess.run([SCRIPTS / "cosmic-ray", "init", str(toml), str(session)], check=True)
    elif retest:
        forget_survivors(session)
    skipped = skip_annotations(module, session)
    pristine = module.read_bytes()
    try:
        subprocess.run([SCRIPTS / "cosmic-ray", "exec", str(toml), str(session)], check=True, cwd=HERE.parent)
    finally:  # stopped in the middle of a mutant, cosmic-ray leaves it on disk
        module.write_bytes(pristine)
    report = subprocess.run(
        [SCRIPTS / "cr-report", "--surviving-only", "--show-diff", str(session)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return f"== greeter_core/{name} ({skipped} mutants in annotations skipped)\n{report}"


def main(argv: list[str] | None = None) -> int:
    """Run the sessions; return 0 (survivors are a report, not a failure)."""
    parser = argparse.ArgumentParser(description="cosmic-ray over the installed greeter_core")
    parser.add_argument("modules", nargs="*", help="paths under greeter_core/ (default: every target)")
    parser.add_argument("--work", type=Path, default=Path(sys.prefix) / "mutation", help="sessions and report")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant's test run")
    parser.add_argument("--retest", action="store_true", help="run the mutants that survived last time again")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a stopped run restores the module it mutated
    names = args.modules or [name for name in TARGETS if (INSTALLED / name).exists()]
    # A same-size mutant written within the second its original was compiled would run from the stale .pyc:
    # no bytecode at all for the package under test (the tests' subprocesses set PYTHONDONTWRITEBYTECODE).
    for cache in INSTALLED.rglob("__pycache__"):
        shutil.rmtree(cache)
    reports = [run(name, args.work, args.timeout, retest=args.retest) for name in names]
    text = "\n".join(reports)
    (args.work / "report.txt").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
