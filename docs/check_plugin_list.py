"""Fail unless the built plugin page lists every installed greeter plugin (``tox -e docs`` runs it).

stevedore's ``list-plugins`` directive renders each plugin as a section whose
id is made from its name; an empty list would still build without a warning,
so this checks the HTML against what is really installed.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

from docutils.nodes import make_id

import greeter_core


class _SectionIds(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.ids.update(value for name, value in attrs if name == "id" and value)


def main(page: Path) -> int:
    """Compare the sections of *page* with ``greeter_core.discover()``; print what is missing."""
    installed = sorted({plugin.name for plugin in greeter_core.discover()})
    parser = _SectionIds()
    parser.feed(page.read_text(encoding="utf-8"))
    missing = [name for name in installed if make_id(name) not in parser.ids]
    if not installed or missing:
        print(f"{page}: installed plugins {installed or 'none'}, missing from the page: {missing}", file=sys.stderr)
        return 1
    print(f"{page}: lists all {len(installed)} installed plugins: {', '.join(installed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
