"""Replace a file in one step: a reader sees the old content or the new, never a part."""

from __future__ import annotations

from pathlib import Path

from .workspace_files import WorkspaceFiles


def write_atomic(path: Path, data: bytes | str, *, fsync: bool = False, mode: int | None = None) -> None:
    """Write ``data`` to a new file beside ``path`` (unique per writer, never following a link), then rename it over
    ``path`` (see :meth:`picsift.workspace_files.WorkspaceFiles.write_bytes`).

    ``fsync`` makes the content durable before the rename; ``mode`` sets the file's permissions (default 0600).
    """
    path = Path(path)
    WorkspaceFiles(path.parent).write_bytes(path.name, data, fsync=fsync, mode=0o600 if mode is None else mode)
