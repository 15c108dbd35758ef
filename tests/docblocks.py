"""The fenced code blocks of the README and the docs, and running their commands as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from basics import REPO

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
