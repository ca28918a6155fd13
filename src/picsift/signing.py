"""Signatures for workspace folders that another library reads with pickle (qdrant's local mode).

A workspace travels with shared image folders, so picsift opens such a folder only if it carries an
HMAC-SHA256 made with this user's secret: anyone else's folder (or one changed since, or one a killed
update left half written) is deleted and rebuilt from the embedding store instead of being loaded.

The secret is 32 random bytes kept outside every workspace, in ``$XDG_CONFIG_HOME/picsift/secret``
(``~/.config/picsift/secret`` by default), created readable by this user only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from .reading import open_regular_file
from .workspace_files import WorkspaceFiles

log = logging.getLogger(__name__)

SECRET_BYTES = 32
#: Files a signature leaves out: lock files change while the folder is open, and hold no data.
_UNSIGNED = frozenset({".lock"})


def config_folder() -> Path:
    """Where picsift keeps per-user settings: ``$XDG_CONFIG_HOME/picsift`` or ``~/.config/picsift``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "picsift"


def user_secret() -> bytes:
    """This user's signing secret, created (mode 0600) on first use."""
    path = config_folder() / "secret"
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now
        return _read_secret(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(SECRET_BYTES))
        f.flush()
        os.fsync(f.fileno())
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file; delete it and picsift makes a new secret")
    if info.st_mode & 0o077:
        log.warning("%s can be read by other users; restrict it with chmod 600 %s", path, path)
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise OSError(f"{path} holds {len(secret)} bytes, not a picsift secret; delete it to make a new one")
    return secret


def signature_file(folder: Path) -> Path:
    return folder.with_name(folder.name + ".signature")


def folder_digest(folder: Path, secret: bytes) -> str | None:
    """HMAC of every file under ``folder`` (names and bytes); None when it holds links or special files."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            path = os.path.join(root, name)
            info = os.lstat(path)
            if name in _UNSIGNED and stat.S_ISREG(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                return None  # a symlink, pipe or device: not something picsift wrote
            relative = os.path.relpath(path, folder).encode("utf-8", "surrogateescape")
            mac.update(len(relative).to_bytes(8, "big") + relative + info.st_size.to_bytes(8, "big"))
            f, _ = open_regular_file(path)
            with f:
                while block := f.read(1 << 20):
                    mac.update(block)
    return mac.hexdigest()


def sign_folder(folder: Path) -> None:
    """Record that this user's picsift wrote ``folder`` as it is now."""
    digest = folder_digest(folder, user_secret())
    if digest is None:
        return
    WorkspaceFiles(folder.parent).write_bytes(signature_file(folder).name, digest)


def verify_folder(folder: Path) -> bool:
    """Whether ``folder`` is exactly as this user's picsift last signed it."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        recorded = WorkspaceFiles(folder.parent).read_bytes(signature_file(folder).name, 1024).decode().strip()
        digest = folder_digest(folder, user_secret())
    except (OSError, UnicodeDecodeError):
        return False
    return digest is not None and hmac.compare_digest(recorded, digest)
