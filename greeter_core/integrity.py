"""Check a plugin's installed files against its ``RECORD`` before loading it.

go-plugin's ``SecureConfig`` checks a checksum of the plugin binary before it
runs it. A Python distribution already carries one per file: every installer
writes a ``RECORD`` listing each installed file with its sha256 (PEP 376/627).

What this guards: a listed file that was changed or removed, and any
importable file (every suffix Python imports: ``.py``, ``.pyc``, extension
modules) added anywhere under the distribution's own packages, or beside its
top-level modules, where it could shadow or extend the plugin's code.
Byte-code caches in ``__pycache__`` are data: ``RECORD`` lists them without
a hash, and Python checks a cache only against its source's mtime and size,
which anyone who can write it can copy; so the cache Python would run in
place of a verified source must hold that source's code
(:func:`bytecode_problem`). What it does not guard: code outside the
distribution (a ``.pth`` file, another package it imports), and someone who can
rewrite ``RECORD`` along with the files (a lock file guards that). An editable
install is refused: its ``RECORD`` hashes none of the plugin's modules, so
there is nothing to verify against.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import marshal
import os
import stat
from importlib.machinery import all_suffixes
from importlib.metadata import Distribution, FileHash, PackagePath, distribution
from pathlib import Path

from .discovery import PluginInfo
from .errors import IntegrityError

__all__ = ["bytecode_problem", "read_record", "unlisted_files", "verify_plugin"]


def verify_plugin(plugin: PluginInfo) -> None:
    """Raise :class:`IntegrityError` naming the first file that does not match ``RECORD``."""
    dist = distribution(plugin.distribution)
    files = read_record(dist)
    if files is None:
        raise IntegrityError(plugin.name, plugin, "RECORD", "the distribution has no RECORD to verify against")
    top = plugin.target.partition(":")[0].split(".")[0]
    if top not in _import_roots(files):
        raise IntegrityError(
            plugin.name,
            plugin,
            "RECORD",
            f"it lists none of the plugin's modules ({top!r}): an editable or otherwise unverifiable install, "
            f"so nothing could be verified; install it normally to use --verify",
        )
    for file in files:
        if file.hash is not None:
            _check_file(plugin, dist, file)
            if file.name.endswith(".py"):  # verified: now the byte-code Python would run in its place
                source = Path(str(dist.locate_file(file)))
                problem = bytecode_problem(source)
                if problem:
                    cache = Path(os.path.relpath(_cache_path(source), Path(str(dist.locate_file("")))))
                    raise IntegrityError(plugin.name, plugin, cache.as_posix(), problem)
    for path in unlisted_files(dist, files):
        raise IntegrityError(
            plugin.name,
            plugin,
            path.relative_to(Path(str(dist.locate_file("")))).as_posix(),
            "not listed in RECORD (an importable file was added to the distribution's modules)",
        )


def _cache_path(source: Path) -> str:
    from importlib.util import cache_from_source

    return cache_from_source(str(source))


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


def _importable(name: str) -> bool:
    return name.endswith(tuple(all_suffixes()))


def _import_roots(files: list[PackagePath]) -> set[str]:
    """The top-level import names the distribution installs: its packages and its top-level modules."""
    roots = set()
    for file in files:
        first = file.parts[0]
        if first == ".." or first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        if len(file.parts) > 1:
            roots.add(first)
        elif _importable(first) and not first.endswith(".pth"):
            roots.add(first.partition(".")[0])
    return roots


def _check_file(plugin: PluginInfo, dist: Distribution, file: PackagePath) -> None:
    assert file.hash is not None
    if file.hash.mode not in hashlib.algorithms_guaranteed:
        raise IntegrityError(plugin.name, plugin, str(file), f"unsupported hash {file.hash.mode!r} in RECORD")
    path = Path(str(dist.locate_file(file)))
    try:
        # Non-blocking and regular files only: RECORD is as untrusted as the files it lists,
        # and a line naming a FIFO or a device must not hang the check.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise IntegrityError(plugin.name, plugin, str(file), "listed in RECORD but missing") from None
    except OSError as error:
        raise IntegrityError(plugin.name, plugin, str(file), f"cannot be read: {error.strerror}") from None
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IntegrityError(plugin.name, plugin, str(file), "listed in RECORD but not a regular file")
        digest = hashlib.file_digest(handle, file.hash.mode).digest()
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
        raise IntegrityError(plugin.name, plugin, str(file), f"{file.hash.mode} does not match RECORD")


def unlisted_files(dist: Distribution, files: list[PackagePath]) -> list[Path]:
    """Importable files that *files* (its RECORD) does not list, under the distribution's packages or
    named like one of its top-level modules: code Python could import instead of, or beside, the
    recorded code. ``__pycache__`` is left to Python, which checks it against the source."""
    listed = {Path(str(dist.locate_file(f))).resolve() for f in files}
    site = Path(str(dist.locate_file("")))
    found = []
    for root in sorted(_import_roots(files)):
        package = site / root
        candidates = sorted(package.rglob("*")) if package.is_dir() else []
        candidates += sorted(site.glob(f"{root}.*"))
        for path in candidates:
            if "__pycache__" in path.relative_to(site).parts or not _importable(path.name) or not path.is_file():
                continue
            if path.resolve() not in listed:
                found.append(path)
    return found


def bytecode_problem(source: Path) -> str | None:
    """Why the byte-code cache Python would import in place of *source* (already found to match the
    lock) does not hold the code compiled from it; None when it does, or when Python would not use it.

    Python imports ``__pycache__/NAME.TAG.pyc`` instead of compiling the source when the cache's header
    matches the source (its mtime and size, or its hash; PEP 552), so a planted cache runs code the
    lock never saw. Code objects compare equal when their byte-code, constants and names are equal.
    """
    from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash

    try:
        cache = Path(cache_from_source(str(source)))
        if not cache.is_file():  # none, or not one Python would read (no FIFO may hang us)
            return None
        pyc = cache.read_bytes()
        data = source.read_bytes()
    except (NotImplementedError, OSError):
        return None  # no cache (or none this interpreter reads)
    if len(pyc) < 16 or pyc[:4] != MAGIC_NUMBER:
        return None  # Python ignores it and compiles the source
    flags = int.from_bytes(pyc[4:8], "little")
    if flags & 0b01:  # hash-based: used when unchecked, or when the hash matches
        if flags & 0b10 and pyc[8:16] != source_hash(data):
            return None
    else:  # timestamp-based: used when the source's mtime and size match the header
        info = source.stat()
        header = (int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF)
        if (int.from_bytes(pyc[8:12], "little"), int.from_bytes(pyc[12:16], "little")) != header:
            return None
    problem = "the byte-code cache Python would import instead of the locked source does not hold its code"
    try:
        cached = marshal.loads(pyc[16:])
        fresh = compile(data, str(source), "exec", dont_inherit=True)
    except (ValueError, EOFError, TypeError, SyntaxError):
        return problem
    return None if cached == fresh else problem
