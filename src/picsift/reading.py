"""Reading files from an image folder safely: regular files only, never blocking, never unbounded.

Image folders are shared, and a name ending in ``.png`` may be a named pipe (opening it waits for a
writer forever) or a symlink to ``/dev/zero`` (reading it never ends). These helpers open files
without blocking, refuse anything but regular files, and stop at a size limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

#: Files larger than this are not read (the skip reason names the limit): every image under
#: :data:`~picsift.embedding.decode.MAX_PIXELS` fits, even as an uncompressed 8-bit RGBA TIFF.
MAX_FILE_BYTES = 512 * 2**20

#: How skip reasons name a file that is no regular file (such files are never opened).
_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def special_file_kind(mode: int) -> str | None:
    """``None`` for a regular file, else what it is ("a named pipe", "a character device", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _SPECIAL_FILES if test(mode)), "not a regular file")


class UnreadableFileError(OSError):
    """A file picsift refuses to read: no regular file, or larger than the read limit. ``str(e)`` says why."""

    def __str__(self) -> str:
        return str(self.args[0])


def open_regular_file(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """Open ``path`` for reading if it is a regular file, never blocking (a named pipe would wait forever).

    Raises :class:`UnreadableFileError` for anything else, ``OSError`` when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        kind = special_file_kind(info.st_mode)
        if kind is not None:
            raise UnreadableFileError(f"not a regular file ({kind}); only regular files are read")
        return os.fdopen(fd, "rb", buffering=0), info
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], limit: int | None = None) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most ``limit`` bytes (default :data:`MAX_FILE_BYTES`), and its stat.

    Raises :class:`UnreadableFileError` for a special file or one larger than ``limit`` (checked
    before reading, and again while reading a file that grows), ``OSError`` when it cannot be read.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    too_large = UnreadableFileError(
        f"file is larger than the {_size(limit)} read limit per file (picsift.reading.MAX_FILE_BYTES)")
    f, info = open_regular_file(path)
    with f:
        if info.st_size > limit:
            raise too_large
        parts, total = [], 0
        want = info.st_size + 1  # one read for a file that does not change while read; +1 to see EOF
        while chunk := f.read(want):
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
            want = min(1 << 20, limit + 1 - total)
    return b"".join(parts), info


def read_file_bytes(path: str | os.PathLike[str] | Any, limit: int | None = None) -> bytes:
    """The bytes of an image file wherever it lives, at most ``limit`` (default :data:`MAX_FILE_BYTES`).

    A local path is read by :func:`read_regular_file`. Anything else is a path object of a file system
    (universal_pathlib's ``UPath``, which a library over a URL has as its root; see :mod:`picsift.core.storage`):
    it is read through its own file system (``path.fs``), and refused past the limit like a local file. Raises
    ``OSError``.
    """
    if isinstance(path, (str, os.PathLike)):
        return read_regular_file(path, limit)[0]
    limit = MAX_FILE_BYTES if limit is None else limit
    try:  # one request: a ranged GET (a server that ignores the range sends it whole, refused below)
        data: bytes = path.fs.cat_file(path.path, start=0, end=limit + 1)
    except OSError:
        raise
    except Exception as e:  # a file system's own errors (an HTTP status, a client error): one kind for callers
        raise OSError(f"{type(e).__name__}: {e}") from e
    if len(data) > limit:
        raise UnreadableFileError(f"file is larger than the {_size(limit)} read limit per file "
                                  "(picsift.reading.MAX_FILE_BYTES)")
    return data


def _size(count: int) -> str:
    return f"{count / 2**30:g} GiB" if count >= 2**30 else f"{count / 2**20:g} MiB"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """First 16 hex digits of a file's sha256, computed once per (path, size, mtime) in a process."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()[:16]
    return _DIGESTS[key]
