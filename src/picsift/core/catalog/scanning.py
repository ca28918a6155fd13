"""Finding image and video files under a folder, and the content ids images are known by (no SQL here)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...embedding.decode import IMAGE_EXTENSIONS
from ...reading import special_file_kind

#: The default workspace folder, created inside the image folder.
WORKSPACE_DIRNAME = ".picsift"
ID_HEX_LENGTH = 32
#: Videos are found by the scan too; their frames become images (see :mod:`picsift.core.video`).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a scan found: image and video files with their size and mtime, and files it could not look at.

    ``unreadable`` holds the paths (folders or files) that exist but could not be read: folders that
    cannot be listed, and symlinks whose target is missing (an unplugged disk, an unmounted share).
    What the catalog knows under them is not deleted: it is kept until they can be read again.
    """

    files: dict[str, FileState] = field(default_factory=dict)
    videos: dict[str, FileState] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why

    def keeps(self, path: str) -> bool:
        """Whether ``path`` is, or lies under, a path that could not be read (so its rows stay)."""
        return self.unreadable_ancestor(path) is not None

    def unreadable_ancestor(self, path: str) -> str | None:
        """The unreadable path that ``path`` is or lies under, if any (as many lookups as ``path`` has parts)."""
        if not self.unreadable:
            return None
        if "." in self.unreadable:
            return "."
        while path:
            if path in self.unreadable:
                return path
            path = path.rpartition("/")[0]
        return None


def scan(root: Path, skip: Iterable[Path] = ()) -> ScanResult:
    """Find image and video files under ``root`` recursively (extensions case-insensitive).

    Symlinked folders are followed once (loops are detected); hidden files and folders are skipped,
    as are the folders in ``skip`` (the workspace). Only regular files are listed: a named pipe or a
    device named like an image is a problem, never opened.
    """
    root = Path(root)
    skipped = {key for key in map(_identity, skip) if key is not None}
    result = ScanResult()
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(relative: str, reason: str, report: bool = True) -> None:
        result.unreadable[relative or "."] = reason
        if report:
            result.problems.append((relative or ".", reason))

    def enter(folder: str, relative: str) -> Iterator[os.DirEntry[str]] | None:
        """The sorted entries of a folder not entered before, or None (unreadable, or already scanned)."""
        try:
            info = os.stat(folder)
        except OSError as e:
            unreadable(relative, f"cannot read folder: {e.strerror}")
            return None
        key = (info.st_dev, info.st_ino)
        if key in skipped:
            return None  # the workspace
        if key in seen_dirs:
            return None  # a symlink loop or a second link to a folder already scanned
        seen_dirs.add(key)
        try:
            return iter(sorted(os.scandir(folder), key=lambda e: e.name))
        except OSError as e:
            unreadable(relative, f"cannot list folder: {e.strerror}")
            return None

    # Depth first with a stack of its own, in the order a recursive walk would take: a folder nested
    # thousands deep (Python's recursion limit is 1,000) is scanned like any other.
    first = enter(str(root), "")
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", first)] if first is not None else []
    while stack:
        relative, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        rel = f"{relative}/{entry.name}" if relative else entry.name
        extension = os.path.splitext(entry.name)[1].lower()
        media = extension in IMAGE_EXTENSIONS or extension in VIDEO_EXTENSIONS
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
            target = entry.stat(follow_symlinks=True) if not is_dir and (media or entry.is_symlink()) else None
        except OSError as e:
            # A symlink whose target is gone or cannot be reached: an unplugged disk is not a deletion.
            # A link without an image's name may be a folder: its rows are kept quietly (the update
            # warns when the catalog holds images under it).
            reason = ("cannot read folder or file: symlink target is missing (a disk that is not mounted?)"
                      if isinstance(e, FileNotFoundError) else f"cannot read folder or file: {e.strerror}")
            unreadable(_printable_path(rel), reason, report=media)
            continue
        if is_dir:
            inside = enter(entry.path, rel)
            if inside is not None:
                stack.append((rel, inside))
            continue
        if not media or target is None:
            continue
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            result.problems.append((_printable_path(rel), "file name is not valid UTF-8"))
            continue
        kind = special_file_kind(target.st_mode)
        if kind is not None:
            result.problems.append((rel, f"not a regular file ({kind}); only regular files are read"))
            continue
        (result.videos if extension in VIDEO_EXTENSIONS else result.files)[rel] = FileState(
            target.st_size, target.st_mtime_ns)
    return result


def _identity(folder: str | os.PathLike[str]) -> tuple[int, int] | None:
    """A folder's device and inode (the same folder however it is reached), or None when it cannot be read."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _printable_path(relative: str) -> str:
    """A scanned path as text that can be stored and printed (undecodable bytes become U+FFFD)."""
    return os.fsencode(relative).decode("utf-8", "replace")


def content_id(data: bytes) -> str:
    """An image's id: a 128-bit BLAKE2b hash of its bytes, as 32 hex digits."""
    return hashlib.blake2b(data, digest_size=ID_HEX_LENGTH // 2).hexdigest()


def looks_like_id(text: str) -> bool:
    return len(text) == ID_HEX_LENGTH and all(c in "0123456789abcdef" for c in text)

