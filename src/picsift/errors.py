"""Exceptions raised by picsift. Every message names the offending value and, where useful, the choices."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PicsiftError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ModelUnavailableError(PicsiftError):
    """A model's weights are neither cached locally nor reachable."""


class UnnamedModelError(PicsiftError):
    """The workspace records a model that picsift loads only when the user names it (``model=``, ``--model``)."""


class ModelMismatchError(PicsiftError):
    """Embeddings made with one model were about to be used with another."""


class NotIndexedError(PicsiftError):
    """A search was asked for before any image of the library was embedded."""


class UnknownImageError(PicsiftError):
    """An image reference is neither an id in the library nor a readable file."""


class WorkspaceBusyError(PicsiftError):
    """Another process is updating the same workspace."""


class MissingDependencyError(PicsiftError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


class UnsafePathError(PicsiftError):
    """A path from a project, a workspace or an argument would lead outside the folder it must stay in."""


class WorkspaceFullError(PicsiftError, OSError):
    """The disk holding the workspace is full; the message names the workspace and what to do."""


_SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)  # the constant is new in Python 3.11


@contextmanager
def workspace_space(workspace: Path, then: str) -> Iterator[None]:
    """Turn "disk full" while writing the workspace into one :class:`WorkspaceFullError` naming it and the fix.

    SQLite rolls the failed transaction back and the embedding store writes vectors before the rows
    that point at them, so the workspace stays as of its last commit; ``then`` says what to do next.
    """
    try:
        yield
    except sqlite3.OperationalError as e:
        if getattr(e, "sqlite_errorcode", None) != _SQLITE_FULL and "full" not in str(e):
            raise
        raise WorkspaceFullError(_full_message(workspace, str(e), then)) from e
    except OSError as e:
        if isinstance(e, PicsiftError) or e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        raise WorkspaceFullError(_full_message(workspace, e.strerror or str(e), then)) from e


def _full_message(workspace: Path, reason: str, then: str) -> str:
    return (f"the disk holding the workspace {workspace} is full ({reason}); free some space there, or move the "
            f"workspace to another disk (workspace=..., CLI: --workspace DIR), then {then}")
