"""The one way picsift touches the files of its workspace.

A workspace travels with shared image folders (a zip file, a network drive, a repository), so whoever prepared
it chose every name, link and file type in it. Everything picsift keeps there (the embedding store, video
frames, index folders, thumbnails, maps, state and progress files, signatures, locks) is read and written
through :class:`WorkspaceFiles`, which promises:

- **No link is followed.** Every folder below the workspace is opened with ``O_NOFOLLOW`` relative to its
  parent's descriptor, and so is the file itself: a symlink anywhere on the way is refused, never followed.
  Where picsift writes, a link or file planted in place of one of its folders is removed (with a warning) and
  the folder made anew.
- **New content never lands in an existing file.** A file is written under a random name created with
  ``O_CREAT | O_EXCL`` and renamed into place (a planted link or hard link at the name is replaced, not
  written through). The few files updated in place (the store's vectors, a manifest) must be regular files
  with one link.
- **Reads are bounded and never block.** Only regular files are read (opened with ``O_NONBLOCK``: a named
  pipe cannot hang a read), each kind of file up to a size limit given by the caller.
- **Names are checked.** A name taken from the catalog or a manifest becomes a path only after
  :func:`checked_name` matched it against the pattern of what it should be.

Anything refused raises :class:`UnsafeWorkspaceFileError`, an ``OSError``: callers treat it as they treat an
unreadable file (rebuild it from what is trusted, with one warning). The workspace folder itself is chosen by
the user (or is ``ROOT/.picsift``, which :func:`picsift.core.workspace.open_workspace` refuses when it is a
link), so its own path is trusted as given.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

#: Size limits per kind of workspace file (bytes). A file larger than its limit is not one picsift wrote.
JSON_LIMIT = 16 * 2**20
SMALL_LIMIT = 64 * 2**10
ARRAYS_LIMIT = 2 * 2**30

#: Patterns of names that come from the catalog or a manifest before they become paths.
IMAGE_ID = re.compile(r"[0-9a-f]{32}")
VECTORS_FILE = re.compile(r"vectors-[0-9]{1,9}\.f(16|32)")
FRAME_FOLDER = re.compile(r"[0-9a-f]{16}")
FRAME_FILE = re.compile(r"[0-9]{9}\.jpg")


class UnsafeWorkspaceFileError(OSError):
    """A workspace file picsift refuses to use: a link, a special file, a hard link, too large, or a bad name."""

    def __str__(self) -> str:
        return str(self.args[0])


def checked_name(name: object, pattern: re.Pattern[str], what: str) -> str:
    """``name`` when it matches ``pattern`` in full, else :class:`UnsafeWorkspaceFileError` naming it."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise UnsafeWorkspaceFileError(
            f"{what} {name!r} read from the workspace is not a valid name (expected {pattern.pattern}); "
            "the workspace was changed by something other than picsift")
    return name


def _regular(fd: int, where: Path, *, limit: int | None = None, single_link: bool = True) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeWorkspaceFileError(f"{where} is not a regular file; picsift ignores it and rebuilds what it held")
    if single_link and info.st_nlink != 1:
        raise UnsafeWorkspaceFileError(
            f"{where} has {info.st_nlink} hard links; picsift writes workspace files with one link only")
    if limit is not None and info.st_size > limit:
        raise UnsafeWorkspaceFileError(f"{where} holds {info.st_size} bytes, more than the {limit} a picsift file "
                                       "of its kind can hold")
    return info


class WorkspaceFiles:
    """Files below ``root`` (a workspace, or one folder of it), reached without following any link.

    Paths given to the methods are either relative to ``root`` or absolute paths inside it.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"WorkspaceFiles({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------------
    def parts(self, path: str | os.PathLike[str]) -> tuple[str, ...]:
        """The names from ``root`` down to ``path``; :class:`UnsafeWorkspaceFileError` when it is not below root."""
        given = Path(path)
        if given.is_absolute():
            absolute = Path(os.path.abspath(given))
            if not absolute.is_relative_to(self.root):
                raise UnsafeWorkspaceFileError(f"{given} is outside the workspace {self.root}")
            given = absolute.relative_to(self.root)
        names = given.parts
        if any(n in ("", ".", "..") or "\x00" in n for n in names):
            raise UnsafeWorkspaceFileError(f"{path} is not a plain path inside the workspace {self.root}")
        return tuple(names)

    def path(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path of ``path`` (checked to lie below ``root``; nothing is opened)."""
        return self.root.joinpath(*self.parts(path))

    @contextlib.contextmanager
    def _folder(self, names: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder ``root/names``, every step opened without following a link."""
        try:
            fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        try:
            for depth, name in enumerate(names):
                parent, fd = fd, -1
                fd = self._step(parent, name, self.root.joinpath(*names[: depth + 1]), create)  # closes parent
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)

    @staticmethod
    def _step(parent: int, name: str, where: Path, create: bool) -> int:
        flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
        try:
            try:
                child = os.open(name, flags, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=parent)
                child = os.open(name, flags, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                os.close(parent)
                raise
            if not create:
                os.close(parent)
                raise UnsafeWorkspaceFileError(
                    f"{where} is a link or not a folder; picsift follows no link inside its workspace") from e
            # picsift is about to write into a folder of its own: what was planted in its place goes (a link is
            # removed, never followed), and the folder is made anew
            log.warning("%s is a link or not a folder: replacing it with a new folder (what it points to is not "
                        "touched)", where)
            try:
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o755, dir_fd=parent)
                child = os.open(name, flags, dir_fd=parent)
            finally:
                os.close(parent)
            return child
        os.close(parent)
        return child

    def _split(self, path: str | os.PathLike[str]) -> tuple[tuple[str, ...], str]:
        names = self.parts(path)
        if not names:
            raise UnsafeWorkspaceFileError(f"{path} is the workspace folder itself, not a file in it")
        return names[:-1], names[-1]

    # -- reading ----------------------------------------------------------------------------------
    def open_read(self, path: str | os.PathLike[str], limit: int | None = None) -> tuple[IO[bytes], os.stat_result]:
        """A regular file with one link, opened for reading without following links or blocking; and its stat."""
        folder, name = self._split(path)
        where = self.path(path)
        with self._folder(folder) as parent:
            try:
                fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _NOCTTY | _CLOEXEC, dir_fd=parent)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise UnsafeWorkspaceFileError(f"{where} is a link; picsift follows no link inside its "
                                                   "workspace") from e
                raise
        try:
            info = _regular(fd, where, limit=limit)
            return os.fdopen(fd, "rb", buffering=0), info
        except BaseException:
            os.close(fd)
            raise

    def read_bytes(self, path: str | os.PathLike[str], limit: int) -> bytes:
        """The bytes of a regular workspace file of at most ``limit`` bytes (see :meth:`open_read`)."""
        f, info = self.open_read(path, limit)
        with f:
            data = f.read(min(info.st_size, limit) + 1)
        if len(data) > limit:
            raise UnsafeWorkspaceFileError(f"{self.path(path)} grew past {limit} bytes while read")
        return data

    def read_json(self, path: str | os.PathLike[str], limit: int = JSON_LIMIT) -> Any:
        """A JSON file; ``ValueError`` when it is not JSON (plain values only: no object hooks)."""
        return json.loads(self.read_bytes(path, limit).decode("utf-8"))

    def load_arrays(self, path: str | os.PathLike[str], limit: int = ARRAYS_LIMIT) -> dict[str, np.ndarray]:
        """The arrays of an ``.npz`` file, or ``{"": array}`` for an ``.npy`` file; never unpickled."""
        data = io.BytesIO(self.read_bytes(path, limit))
        loaded = np.load(data, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}

    # -- writing ----------------------------------------------------------------------------------
    def write_bytes(self, path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = False,
                    mode: int = 0o644) -> None:
        """Write ``data`` under a new random name (``O_EXCL``), then rename it over ``path`` in one step.

        A link, hard link or special file planted at ``path`` is replaced, never written through.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        folder, name = self._split(path)
        with self._folder(folder, create=True) as parent:
            temporary = f".{name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode,
                         dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                    if fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=parent)
                raise
            if fsync:
                os.fsync(parent)

    def write_json(self, path: str | os.PathLike[str], value: Any, *, fsync: bool = False) -> None:
        self.write_bytes(path, json.dumps(value), fsync=fsync)

    def save_arrays(self, path: str | os.PathLike[str], *, fsync: bool = False, **arrays: np.ndarray) -> None:
        """An ``.npz`` of plain arrays (object arrays are refused: a workspace never holds pickles)."""
        out = io.BytesIO()
        plain: dict[str, Any] = {key: np.asarray(value) for key, value in arrays.items()}
        np.savez(out, **plain)
        self.write_bytes(path, out.getvalue(), fsync=fsync)

    def save_array(self, path: str | os.PathLike[str], array: np.ndarray, *, fsync: bool = False) -> None:
        """An ``.npy`` file of one plain array."""
        out = io.BytesIO()
        np.save(out, np.asarray(array), allow_pickle=False)
        self.write_bytes(path, out.getvalue(), fsync=fsync)

    def open_update(self, path: str | os.PathLike[str], *, append: bool = False) -> IO[bytes]:
        """A file opened for writing in place (created with ``O_EXCL`` when missing): regular, one link, no link
        on the way. With ``append`` every write goes to its end."""
        folder, name = self._split(path)
        where = self.path(path)
        flags = os.O_RDWR | _NOFOLLOW | _NONBLOCK | _CLOEXEC | (os.O_APPEND if append else 0)
        with self._folder(folder, create=True) as parent:
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=parent)
            except FileExistsError:
                try:
                    fd = os.open(name, flags, dir_fd=parent)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        raise UnsafeWorkspaceFileError(f"{where} is a link; picsift writes through no link") from e
                    raise
        try:
            _regular(fd, where)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "r+b" if not append else "ab")
        except BaseException:
            os.close(fd)
            raise

    def make_folder(self, path: str | os.PathLike[str]) -> Path:
        """Create ``path`` and the folders above it (none of them may be a link); returns its absolute path."""
        with self._folder(self.parts(path), create=True):
            pass
        return self.path(path)

    # -- removing, renaming, listing ----------------------------------------------------------------
    def remove(self, path: str | os.PathLike[str]) -> None:
        """Delete a file, a link (not its target) or a whole folder (never following links in it); a missing
        one is fine."""
        folder, name = self._split(path)
        try:
            with self._folder(folder) as parent:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(name, dir_fd=parent)  # fd-based: safe against symlink attacks
                else:
                    os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass

    def rename(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        """Rename within one folder of the workspace (what is at ``target`` is replaced, not followed)."""
        folder, name = self._split(source)
        target_folder, target_name = self._split(target)
        if folder != target_folder:
            raise UnsafeWorkspaceFileError(f"rename of {source} to {target} leaves its folder")
        with self._folder(folder) as parent:
            os.rename(name, target_name, src_dir_fd=parent, dst_dir_fd=parent)

    def lstat(self, path: str | os.PathLike[str]) -> os.stat_result | None:
        """The file's own stat (a link is not followed), or None when it is missing, or a folder on the way is
        missing or no real folder (nothing behind a link is part of the workspace)."""
        folder, name = self._split(path)
        try:
            with self._folder(folder) as parent:
                return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError, UnsafeWorkspaceFileError):
            return None

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return self.lstat(path) is not None

    def is_folder(self, path: str | os.PathLike[str]) -> bool:
        info = self.lstat(path) if self.parts(path) else os.lstat(self.root)
        return info is not None and stat.S_ISDIR(info.st_mode)

    def list(self, path: str | os.PathLike[str] = ".") -> list[str]:
        """Names in a folder, sorted; ``[]`` when it is missing or not a folder picsift can enter."""
        names = () if str(path) == "." else self.parts(path)
        try:
            with self._folder(names) as fd:
                return sorted(os.listdir(fd))
        except (FileNotFoundError, NotADirectoryError, UnsafeWorkspaceFileError):
            return []

    # -- whole folders handed to other libraries --------------------------------------------------------
    def tree_problem(self, path: str | os.PathLike[str]) -> str | None:
        """Why a folder cannot be handed to a library that opens files by name (hnswlib, qdrant, SQLite), or None.

        Every folder on the way and every entry inside must be a real folder or a regular file with one link:
        such a library then reads and writes nothing outside the workspace, and blocks on no pipe.
        """
        names = self.parts(path)
        try:
            with self._folder(names) as fd:
                for top, dirs, files, top_fd in os.fwalk(dir_fd=fd):
                    for name in dirs + files:
                        info = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
                        kind = "a folder" if stat.S_ISDIR(info.st_mode) else None
                        if kind is None and not stat.S_ISREG(info.st_mode):
                            return f"{self.path(path) / top / name} is not a regular file or folder"
                        if kind is None and info.st_nlink != 1:
                            return f"{self.path(path) / top / name} has {info.st_nlink} hard links"
        except FileNotFoundError:
            return None
        except OSError as e:
            return str(e)
        return None

    def checked_file_path(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path of a file another library opens by name: no link on the way, and the file, when it
        exists, a regular file with one link. Raises :class:`UnsafeWorkspaceFileError` otherwise."""
        folder, name = self._split(path)
        with self._folder(folder, create=True) as parent:
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return self.path(path)
        where = self.path(path)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeWorkspaceFileError(f"{where} is a link or not a regular file")
        if info.st_nlink != 1:
            raise UnsafeWorkspaceFileError(f"{where} has {info.st_nlink} hard links")
        return where

    def lock_file(self, path: str | os.PathLike[str]) -> str:
        """The path of a lock file, made safe to open by name: a link or special file planted there is removed
        (lock libraries open with ``O_TRUNC``, which would empty a link's target)."""
        try:
            return str(self.checked_file_path(path))
        except UnsafeWorkspaceFileError:
            self.remove(path)
            return str(self.path(path))
