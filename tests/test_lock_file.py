"""Which lock files ``PluginLock.read`` accepts: only greeter's format, at its version, stated in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from greeter_core.errors import UsageError
from greeter_core.lock import LOCK_VERSION, PluginLock

DISTRIBUTIONS = '[distributions."greeter-klingon"]\nversion = "1.0"\n'


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("", "None"),
        ("lock-version = true\n", "True"),
        ("lock-version = 1.0\n", "1.0"),
        ('lock-version = "1"\n', "'1'"),
        (f"lock-version = {LOCK_VERSION + 1}\n", str(LOCK_VERSION + 1)),
    ],
    ids=["no-version-line", "true", "float", "string", "next"],
)
def test_a_lock_file_without_its_version_as_an_integer_is_refused(tmp_path: Path, header: str, found: str) -> None:
    """A lock file must say its version as a TOML integer: a missing line is not defaulted, true is not 1."""
    path = tmp_path / "greeter.lock"
    path.write_text(header + DISTRIBUTIONS, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        PluginLock.read(path)
    assert str(caught.value).endswith(
        f"is not a greeter lock file: expected lock-version = {LOCK_VERSION} (or 1), found {found}"
    )


def test_the_same_file_with_its_version_line_is_read(tmp_path: Path) -> None:
    """The control case: the same file with the current ``lock-version`` is read, its distribution kept."""
    path = tmp_path / "greeter.lock"
    path.write_text(f"lock-version = {LOCK_VERSION}\n" + DISTRIBUTIONS, encoding="utf-8")
    assert [d.version for d in PluginLock.read(path).distributions.values()] == ["1.0"]
