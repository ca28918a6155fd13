"""Opening a library wherever its images live: a local folder, or a URL (see :mod:`picsift.core.storage`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import PicsiftError, workspace_space
from .catalog import Catalog
from .storage import default_workspace, is_url, public_url, remote_root
from .workspace import open_workspace

log = logging.getLogger(__name__)


def open_location(root: str | os.PathLike[str], workspace: str | os.PathLike[str] | None,
                  storage_options: dict[str, Any] | None = None) -> tuple[Any, Path, Catalog]:
    """The library's root (a folder, or a URL's ``UPath``), its workspace (made if missing) and its catalog.

    A URL's workspace is local: ``workspace``, else a folder named after the URL in the user's cache, announced
    once (when it is made).
    """
    if not is_url(root):
        if storage_options:
            raise PicsiftError(f"storage_options apply to a URL (s3://..., gs://..., https://...), not to the local "
                               f"folder {root}")
        return open_workspace(root, workspace)
    location = remote_root(str(root), storage_options)
    if workspace:
        folder = Path(workspace).expanduser().resolve()
    else:
        folder = default_workspace(str(root))
        if not folder.exists():
            log.warning("the workspace of %s is %s (choose another with workspace=..., CLI: --workspace DIR)",
                        public_url(str(root)), folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PicsiftError(f"cannot create workspace {folder} ({e.strerror}); pass workspace=... "
                           "(CLI: --workspace)") from e
    with workspace_space(folder, "try again"):
        catalog = Catalog(folder / "catalog.sqlite")
    return location, folder, catalog
