"""Check a plugin's installed files against its ``RECORD`` before loading it.

go-plugin's ``SecureConfig`` checks a checksum of the plugin binary before it
runs it. A Python distribution already carries one per file: every installer
writes a ``RECORD`` listing each installed file with its sha256 (PEP 376/627).

What this guards: a listed file that was changed or removed, and a stray
module dropped into the plugin's own package directories. What it does not:
byte-code caches (``RECORD`` lists ``.pyc`` files without a hash) and code
outside the distribution (a ``.pth`` file, another package it imports). It
detects corruption and tampering of the plugin itself, not a hostile user
who can write to site-packages.
"""

from __future__ import annotations

import base64
import csv
import hashlib
from importlib.metadata import Distribution, FileHash, PackagePath, distribution
from pathlib import Path

from .discovery import PluginInfo
from .errors import IntegrityError

__all__ = ["read_record", "unlisted_files", "verify_plugin"]


def verify_plugin(plugin: PluginInfo) -> None:
    """Raise :class:`IntegrityError` naming the first file that does not match ``RECORD``."""
    dist = distribution(plugin.distribution)
    files = read_record(dist)
    if files is None:
        raise IntegrityError(plugin.name, plugin, "RECORD", "the distribution has no RECORD to verify against")
    for file in files:
        if file.hash is not None:
            _check_file(plugin, dist, file)
    _check_no_strays(plugin, dist, files)


def read_record(dist: Distribution) -> list[PackagePath] | None:
    """Every file RECORD lists, read directly: since Python 3.12 ``Distribution.files``
    silently leaves out the ones that are missing, which is exactly what we look for."""
    text = dist.read_text("RECORD")
    if text is None:
        return None
    files = []
    for row in csv.reader(text.splitlines()):
        if not row:
            continue
        name, digest, size = [*row, "", ""][:3]
        path = PackagePath(name)
        path.hash = FileHash(digest) if digest else None
        path.size = int(size) if size else None
        path.dist = dist
        files.append(path)
    return files


def _check_file(plugin: PluginInfo, dist: Distribution, file: PackagePath) -> None:
    assert file.hash is not None
    path = Path(str(dist.locate_file(file)))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(plugin.name, plugin, str(file), "listed in RECORD but missing") from None
    if file.hash.mode not in hashlib.algorithms_guaranteed:
        raise IntegrityError(plugin.name, plugin, str(file), f"unsupported hash {file.hash.mode!r} in RECORD")
    digest = base64.urlsafe_b64encode(hashlib.new(file.hash.mode, data).digest()).rstrip(b"=").decode()
    if digest != file.hash.value:
        raise IntegrityError(plugin.name, plugin, str(file), f"{file.hash.mode} does not match RECORD")


def _check_no_strays(plugin: PluginInfo, dist: Distribution, files: list[PackagePath]) -> None:
    """A ``.py`` file in the plugin's own package directories must be one RECORD lists."""
    for path in unlisted_files(dist, files):
        raise IntegrityError(plugin.name, plugin, str(path), "not listed in RECORD (a file was added to the package)")


def unlisted_files(dist: Distribution, files: list[PackagePath]) -> list[Path]:
    """Modules in the distribution's own package directories that *files* does not list: code
    Python would import that nobody recorded (the lock file checks these too)."""
    listed = {Path(str(dist.locate_file(f))).resolve() for f in files}
    packages = {Path(str(dist.locate_file(f))).resolve().parent for f in files if f.name == "__init__.py"}
    return [
        path for package in sorted(packages) for path in sorted(package.glob("*.py")) if path.resolve() not in listed
    ]
