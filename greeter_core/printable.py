"""The one-line rule for text a plugin hands the host to print: its greeting, its language, its errors.

stdout carries greetings, one per line, and every message on stderr is one
line. A plugin's text may hold anything a ``str`` can: newlines, carriage
returns, terminal escape sequences, lone surrogates (which no UTF-8 stream
can encode). :func:`printable` writes each such character as the backslash
escape Python would use, so the text stays one printable line and a reader
can still see what the plugin sent. Everything else is left as it is:
spaces of every kind, and format characters such as the zero-width joiner
that emoji and Persian need. A backslash is not doubled: the rule keeps
output one line, it is not a reversible encoding.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

#: C0 controls, DEL, C1 controls (NEL among them), the Unicode line and
#: paragraph separators, and the surrogates, which only appear alone in a str.
#: Compiled on first use: the one-shot greeting rarely needs it.
_ESCAPED = "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """*text* as one printable line: control characters, line separators and lone surrogates escaped.

    ``"a\\nb\\x1b[31m"`` becomes ``"a\\\\nb\\\\x1b[31m"``; ``"\\udc80"`` becomes ``"\\\\udc80"``.
    """
    if text.isprintable():  # the usual case, one pass in C
        return text
    return re.sub(_ESCAPED, _escape, text)  # re caches the compiled pattern


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
