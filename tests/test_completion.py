"""`greeter completion`: bash completes commands, options and installed driver names, importing no plugin."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from plugins import imports_of, marking

MARKED = marking("tabbed", "Tabbed")


@pytest.fixture
def complete(cli, install, greeter_env: dict[str, str], tmp_path: Path):
    """``complete("greeter check ")``: the candidates bash's completion function offers for that line."""
    install(MARKED)
    result = cli("completion", "bash")
    assert result.returncode == 0, result.stderr
    script = tmp_path / "greeter.bash"
    script.write_text(result.stdout)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (
            f'greeter() {{ {shlex.quote(sys.executable)} -m greeter_core "$@"; }}\n'
            f"source {shlex.quote(str(script))}\n"
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
            'COMP_LINE=${COMP_WORDS[*]}; _greeter; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run(["bash", "--norc", "-c", program], env=greeter_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line]

    return complete


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("greeter ", ["list", "check", "run", "install", "uninstall", "lock", "new-plugin", "completion"]),
        ("greeter l", ["list", "lock"]),
        ("greeter list --j", ["--json"]),
        ("greeter run --cou", ["--count"]),
        ("greeter --dr", ["--driver"]),
        ("greeter --driver tab", ["tabbed"]),
        ("greeter run --driver tab", ["tabbed"]),
        ("greeter check --json tab", ["tabbed"]),
    ],
)
def test_bash_offers_the_candidates(complete, line: str, expected: list[str]) -> None:
    """Each line completes to exactly these candidates: commands, a command's options, installed drivers."""
    assert complete(line) == expected


def test_driver_names_come_from_the_catalog_without_importing_a_plugin(complete, site: Path) -> None:
    """Tab after --driver lists every installed driver, and no plugin module was imported to know them."""
    candidates = complete("greeter --driver ")
    assert "tabbed" in candidates and candidates == sorted(candidates)
    assert imports_of(MARKED, site) == []


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_the_commands_and_ask_for_drivers(cli, shell: str) -> None:
    """The other shells' scripts carry the same commands and ask `greeter completion --drivers` for names."""
    result = cli("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "new-plugin" in result.stdout and "greeter completion --drivers" in result.stdout


def test_no_shell_is_one_line_and_exit_2(cli) -> None:
    """`greeter completion` alone says what to type."""
    result = cli("completion")
    assert (result.returncode, result.stderr) == (
        2,
        "greeter: error: name a shell: greeter completion bash, zsh or fish\n",
    )
