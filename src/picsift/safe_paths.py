"""The one check for every path picsift records, reads from a project, or writes: it stays in its folder.

Image folders, their workspaces and labelled projects are shared (zip files, network drives,
repositories), so every path they hold is untrusted input. Paths the catalog records (files, dataset
items, dataset folders, the file-action journal) and every folder or file picsift writes into a library
or an export are relative, ``'/'``-separated and without ``..``: :func:`library_path` checks them and is
the only way the catalog's paths become files (import, metadata, file actions and export all use it).
Files a project names are accepted only when they are regular files inside the project folder after
links are resolved (:func:`project_file`).

Symlinked folders *inside the library* are the library's own structure (the scan follows them), so
library paths are checked as written, not resolved.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PureWindowsPath

from .errors import UnsafePathError

_SEPARATORS = re.compile(r"[\\/]")
_HINT = "give a relative path without '..', like 'cars/a.png'"


def _problem(path: str) -> str | None:
    """Why ``path`` is not a relative path that stays in its folder, or None when it is one."""
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if path.startswith(("/", "\\")) or (os.name == "nt" and PureWindowsPath(path).drive):
        return "is absolute"
    if ".." in _SEPARATORS.split(path):
        return "has a '..' part"
    return None


def check_relative(path: object, what: str) -> str:
    """``path`` when it is a relative path that cannot leave its folder, else :class:`UnsafePathError`.

    Parameters
    ----------
    path
        The path as recorded or given (text, ``'/'``-separated).
    what
        What the path is, for the error message (e.g. ``"COCO file_name"``).
    """
    if not isinstance(path, str):
        raise UnsafePathError(f"{what} {path!r} is not a text path; {_HINT}")
    problem = _problem(path)
    if problem:
        raise UnsafePathError(f"{what} {path!r} {problem}: it would lead outside its folder; {_HINT}")
    return path


def check_folder_name(name: object, what: str = "dataset name") -> str:
    """A dataset name or target folder: relative, no empty, ``.`` or ``..`` part, none hidden (the scan skips
    hidden folders), no backslash. Raises :class:`UnsafePathError` naming the value."""
    if isinstance(name, str):
        parts = name.split("/")
        problem = _problem(name) or next((
            f"has the part {p!r}" for p in parts if not p.strip() or p.startswith(".") or "\\" in p), None)
    else:
        problem = "is not text"
    if problem:
        raise UnsafePathError(f"invalid {what} {name!r}: it {problem}; give a name like 'cars' or 'project/cars'")
    return str(name)


def library_path(root: Path, path: object, *, what: str = "catalog path", workspace: Path | None = None) -> Path:
    """The file a catalog path names under ``root``; :class:`UnsafePathError` when it would be outside.

    Parameters
    ----------
    root
        The library's image folder (or an export folder).
    path
        A path relative to ``root``, as the catalog records it.
    what
        What the path is, for the error message.
    workspace
        The workspace folder, when it lies outside ``root``: absolute paths inside it are accepted (video
        frames are cached there and catalogued by absolute path).
    """
    if (workspace is not None and isinstance(path, str) and os.path.isabs(path)
            and not _problem(path.lstrip("/\\")) and Path(path).is_relative_to(workspace)):
        return Path(path)
    problem = _problem(path) if isinstance(path, str) else "is not text"
    if problem:
        raise UnsafePathError(f"{what} {path!r} {problem}: it would be outside the library folder {root}")
    return root / str(path)


def project_file(project: Path, path: Path, what: str) -> Path:
    """``path`` resolved, when it is a regular file inside ``project`` after following links.

    Raises :class:`UnsafePathError` when a link leads outside the project (or the file is a device,
    a pipe or a folder), :class:`~picsift.errors.PicsiftError` when it does not exist.
    """
    real_project = project.resolve()
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop on older Pythons
        raise UnsafePathError(f"{what} {path} cannot be read: {getattr(e, 'strerror', None) or e}") from e
    if not real.is_relative_to(real_project):
        raise UnsafePathError(f"{what} {path} is a link to {real}, outside the project folder {real_project}; "
                              "copy the file into the project instead")
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{what} {path} is not a regular file")
    return real
