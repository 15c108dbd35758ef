"""``greeter completion bash|zsh|fish``: a shell completion script, and the driver names it asks for.

Commands and options are written into the script from the parsers
themselves (one source); driver names are asked for at completion time
(``greeter completion --drivers``), from the catalog: no plugin is imported,
so pressing Tab never runs plugin code.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping

from .options import _add, _parser

__all__ = ["SHELLS", "parser", "run", "script"]

#: Options whose value is a driver name, and commands whose arguments are.
_DRIVER_OPTIONS = ("--driver",)
_DRIVER_COMMANDS = ("check",)


def parser(prog: str) -> argparse.ArgumentParser:
    """The command line of ``greeter completion``."""
    parsed = _parser(
        prog=f"{prog} completion",
        description='Print a completion script; e.g. in ~/.bashrc: eval "$(greeter completion bash)".',
    )
    parsed.add_argument("shell", nargs="?", choices=sorted(SHELLS), help="the shell to complete in")
    parsed.add_argument("--drivers", action="store_true", help="print the installed driver names (what Tab offers)")
    _add(parsed, "completion")
    return parsed


Parsers = Mapping[str, Callable[[str], argparse.ArgumentParser]]


def run(args: argparse.Namespace, top: Callable[[str], argparse.ArgumentParser], commands: Parsers) -> int:
    """Print the script for ``args.shell`` (*top*: greeter's own parser; *commands*: the table's), or the drivers."""
    if args.drivers:
        from .catalog import listed

        print("\n".join(sorted({plugin.name for plugin in listed().plugins})))
        return 0
    if args.shell is None:
        from .errors import UsageError

        raise UsageError("name a shell: greeter completion bash, zsh or fish")
    options = {name: _options(parser("greeter")) for name, parser in commands.items()}
    print(script(args.shell, _options(top("greeter")), options), end="")
    return 0


def _options(parsed: argparse.ArgumentParser) -> list[str]:
    return sorted(option for action in parsed._actions for option in action.option_strings if option.startswith("--"))


def script(shell: str, top: list[str], commands: Mapping[str, list[str]]) -> str:
    """The completion script for *shell*: *top* the options of ``greeter`` itself, *commands* each command's."""
    return SHELLS[shell](top, commands)


def _bash(top: list[str], commands: Mapping[str, list[str]]) -> str:
    cases = "".join(f"        {name}) opts={shlex.quote(' '.join(opts))} ;;\n" for name, opts in commands.items())
    return f"""\
# greeter's bash completion: eval "$(greeter completion bash)"
_greeter() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} command="" opts word
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case $word in {"|".join(commands)}) command=$word; break ;; esac
    done
    if [[ " {" ".join(_DRIVER_OPTIONS)} " == *" $prev "* ]]; then
        COMPREPLY=($(compgen -W "$(greeter completion --drivers 2>/dev/null)" -- "$cur")); return
    fi
    case $command in
{cases}        *) opts={shlex.quote(" ".join(top))} ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -z $command ]]; then
        COMPREPLY=($(compgen -W {shlex.quote(" ".join(commands))} -- "$cur"))
    elif [[ " {" ".join(_DRIVER_COMMANDS)} " == *" $command "* ]]; then
        COMPREPLY=($(compgen -W "$(greeter completion --drivers 2>/dev/null)" -- "$cur"))
    fi
}}
complete -F _greeter greeter
"""


def _zsh(top: list[str], commands: Mapping[str, list[str]]) -> str:
    # zsh runs bash completion functions through bashcompinit: one script, the same candidates.
    return f"""\
#compdef greeter
# greeter's zsh completion: eval "$(greeter completion zsh)"
autoload -U +X bashcompinit && bashcompinit
{_bash(top, commands)}"""


def _fish(top: list[str], commands: Mapping[str, list[str]]) -> str:
    lines = ["# greeter's fish completion: greeter completion fish | source", "complete -c greeter -f"]
    lines.append(f"complete -c greeter -n __fish_use_subcommand -a {shlex.quote(' '.join(commands))}")
    for option in top:
        lines.append(f"complete -c greeter -n __fish_use_subcommand -l {option[2:]}")
    for name, opts in commands.items():
        lines.extend(f"complete -c greeter -n '__fish_seen_subcommand_from {name}' -l {o[2:]}" for o in opts)
    drivers = "(greeter completion --drivers 2>/dev/null)"
    for option in _DRIVER_OPTIONS:
        lines.append(f"complete -c greeter -l {option[2:]} -x -a '{drivers}'")
    for name in _DRIVER_COMMANDS:
        lines.append(f"complete -c greeter -n '__fish_seen_subcommand_from {name}' -a '{drivers}'")
    return "\n".join(lines) + "\n"


SHELLS: Mapping[str, Callable[[list[str], Mapping[str, list[str]]], str]] = {
    "bash": _bash,
    "zsh": _zsh,
    "fish": _fish,
}
