"""Signatures for workspace folders that another library reads with pickle (qdrant's local mode).

A workspace travels with shared image folders, so picsift opens such a folder only if it carries an
HMAC-SHA256 made with this user's secret: anyone else's folder (or one changed since, or one a killed
update left half written) is deleted and rebuilt from the embedding store instead of being loaded.

The secret is 32 random bytes kept outside every workspace, in ``$XDG_CONFIG_HOME/picsift/secret``
(``~/.config/picsift/secret`` by default), created readable by this user only. It is used only when it and its
folder belong to this user and no one else can change them (nor read the secret): anyone who could would be
able to sign a folder of their own making. Otherwise :class:`UntrustedSecretError` says what to fix; until
then no folder verifies (each is rebuilt) and nothing is signed.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import PicsiftError
from .workspace_files import WorkspaceFiles

log = logging.getLogger(__name__)

SECRET_BYTES = 32
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Files a signature leaves out: lock files change while the folder is open, and hold no data.
_UNSIGNED = frozenset({".lock"})


class UntrustedSecretError(PicsiftError):
    """The signing secret, or its folder, belongs to another user or can be changed (or read) by others."""


def config_folder() -> Path:
    """Where picsift keeps per-user settings: ``$XDG_CONFIG_HOME/picsift`` or ``~/.config/picsift``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "picsift"


def user_secret() -> bytes:
    """This user's signing secret, created (mode 0600) on first use; :class:`UntrustedSecretError` when it or its
    folder is not this user's alone."""
    path = config_folder() / "secret"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _secret_folder(path.parent) as folder:
        try:
            return _read_secret(path, folder)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=folder)
        except FileExistsError:  # another process made it just now
            return _read_secret(path, folder)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        return _read_secret(path, folder)


@contextmanager
def _secret_folder(folder: Path) -> Iterator[int]:
    """A descriptor of the secret's folder (not reached through a link at its own name), once it is found to belong
    to this user and to be writable by no one else."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UntrustedSecretError(f"the folder of the signing secret, {folder}, is a symbolic link or not a "
                                       "folder; make it a folder of your own (mode 700)") from e
        raise
    try:
        _check_owned(folder, os.fstat(fd), others=0o022, fix="chmod go-w")
        yield fd
    finally:
        os.close(fd)


def _read_secret(path: Path, folder: int) -> bytes:
    """The secret ``path`` (in the open ``folder``), opened without following a link or blocking, once it is found
    to be this user's alone; ``FileNotFoundError`` when there is none yet."""
    try:
        fd = os.open(path.name, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=folder)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UntrustedSecretError(f"the signing secret {path} is a symbolic link; delete it and picsift makes "
                                       "a new secret") from e
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedSecretError(f"the signing secret {path} is not a regular file; delete it and picsift "
                                       "makes a new secret")
        _check_owned(path, info, others=0o077, fix="chmod 600")
        secret = f.read(SECRET_BYTES * 64)
    if len(secret) < SECRET_BYTES:
        raise UntrustedSecretError(f"{path} holds {len(secret)} bytes, not a picsift secret; delete it to make a "
                                   "new one")
    return secret


def _check_owned(path: Path, info: os.stat_result, *, others: int, fix: str) -> None:
    """:class:`UntrustedSecretError` unless ``path`` belongs to this user and has none of the permission bits
    ``others`` (write by others, for the folder; any access by others, for the secret itself)."""
    uid = os.getuid() if hasattr(os, "getuid") else info.st_uid
    if info.st_uid != uid:
        raise UntrustedSecretError(
            f"{path} belongs to user id {info.st_uid}, not to you ({uid}), so its owner could sign index folders "
            f"that picsift would then load as yours; picsift uses no signature until you remove it (a new secret is "
            f"made in a folder of your own) or set XDG_CONFIG_HOME to a folder only you can write")
    if info.st_mode & others:
        raise UntrustedSecretError(
            f"{path} can be {'changed' if others == 0o022 else 'read or changed'} by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}), who could then sign index folders that picsift would load as yours; "
            f"picsift uses no signature until you run: {fix} {path}")


def signature_file(folder: Path) -> Path:
    return folder.with_name(folder.name + ".signature")


def _signed_files(folder: Path) -> list[tuple[str, int]] | None:
    """``(name relative to folder, size)`` of every file under ``folder`` that a signature covers, in signing order;
    None when it holds links or special files (not something picsift wrote)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            path = os.path.join(root, name)
            info = os.lstat(path)
            if name in _UNSIGNED and stat.S_ISREG(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                return None
            found.append((os.path.relpath(path, folder), info.st_size))
    return found


def _digest(folder: Path, files: list[tuple[str, int]], secret: bytes) -> str:
    """HMAC of ``files`` under ``folder`` (:func:`_signed_files`): names, sizes and bytes, each file opened through
    :class:`~picsift.workspace_files.WorkspaceFiles` (no link followed, one hard link) and read to at most one byte
    past the size it was listed with (a file that grew since hashes differently, as it did read to its end)."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    reader = WorkspaceFiles(folder)
    for name, size in files:
        relative = name.encode("utf-8", "surrogateescape")
        mac.update(len(relative).to_bytes(8, "big") + relative + size.to_bytes(8, "big"))
        f, _ = reader.open_read(name)
        with f:
            left = size + 1
            while left > 0 and (block := f.read(min(1 << 20, left))):
                mac.update(block)
                left -= len(block)
    return mac.hexdigest()


def sign_folder(folder: Path) -> None:
    """Record that this user's picsift wrote ``folder`` as it is now: the HMAC of its files, then their total size
    (so that :func:`verify_folder` refuses a folder of another size, e.g. a planted 2 GB file, without reading it)."""
    files = _signed_files(folder)
    if files is None:
        return
    digest = _digest(folder, files, user_secret())  # an untrusted secret signs nothing: UntrustedSecretError
    size = sum(size for _, size in files)
    WorkspaceFiles(folder.parent).write_bytes(signature_file(folder).name, f"{digest} {size}".encode())


def verify_folder(folder: Path) -> bool:
    """Whether ``folder`` is exactly as this user's picsift last signed it. Its files' total size is compared
    first: a folder of another size is refused without hashing a byte (2026-12-07: three planted 2 GB files took 21
    s to hash before). A signature without a size (before 2026-12-07) is checked by its HMAC alone."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        recorded = WorkspaceFiles(folder.parent).read_bytes(signature_file(folder).name, 1024).decode().split()
        files = _signed_files(folder)
        if files is None or len(recorded) not in (1, 2):
            return False
        if len(recorded) == 2 and recorded[1] != str(sum(size for _, size in files)):
            return False
        digest = _digest(folder, files, user_secret())
    except UntrustedSecretError as e:
        log.warning("%s", e)
        return False
    except (OSError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(recorded[0].encode(), digest.encode())
