"""The contract every vector index backend keeps.

Ids are picsift image ids (32 hex digits); vectors are L2-normalised float32, so the inner product
is the cosine similarity and scores are comparable across backends.
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from filelock import FileLock

from ..errors import PicsiftError
from ..workspace_files import WorkspaceFiles

if TYPE_CHECKING:
    from ..core.store import StoreSnapshot


class UnreadableIndexError(PicsiftError):
    """A saved index could not be read back (damaged or partly written); rebuild it from the store."""


class IndexBusyError(PicsiftError):
    """The index allows one process at a time and another one has it open."""


class NoRoomForIndexError(OSError):
    """The disk holding the index has too little free space for the files the index maps into memory (a write
    through such a map on a full disk would kill the process with SIGBUS); errno is ``ENOSPC``."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)


class VectorIndex(ABC):
    """Add, remove, and find the nearest vectors by cosine similarity.

    Parameters
    ----------
    dim
        Vector dimension.
    path
        Where the index persists itself; ``None`` keeps it in memory only. Opening an index on a
        path that holds a saved one reopens it.
    """

    #: Registry name, e.g. ``"hnsw"``.
    name: ClassVar[str]
    #: Whether results are exact (True) or approximate.
    exact: ClassVar[bool] = False
    #: How far a returned score may be from the float32 inner product (0: exact to float32 rounding).
    score_error: float = 0.0
    #: Whether the index holds no vectors of its own but searches an embedding store's snapshot (``ivf``): the
    #: keeper (:mod:`picsift.index.sync`) then :meth:`attach`es each new snapshot instead of adding and removing.
    follows_store: ClassVar[bool] = False
    #: The mean recall@100 on held-out text-like queries that calibration (:func:`.sync.calibrate_for_text_queries`)
    #: tunes an approximate index for.
    recall_target: ClassVar[float] = 0.95

    def __init__(self, dim: int, path: Path | None = None, **options: Any):
        self.dim = dim
        self.path = Path(path) if path is not None else None

    @abstractmethod
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert vectors; an id already present has its vector replaced."""

    @abstractmethod
    def remove(self, ids: Sequence[str]) -> None:
        """Remove ids; ids that are not present are ignored."""

    @abstractmethod
    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """The ``k`` ids most similar to ``query``, best first, with their cosine scores.

        With ``restrict_to``, only those ids are candidates. Fewer than ``k`` come back only when
        fewer candidates exist.
        """

    @abstractmethod
    def ids(self) -> set[str]:
        """Every id in the index."""

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    def persistent(self) -> bool:
        """Whether the index outlives this process (saved to ``path``, or kept by a server)."""
        return self.path is not None

    def attach(self, snapshot: StoreSnapshot) -> None:
        """Search ``snapshot`` from now on: an index that :attr:`follows_store` only."""
        raise NotImplementedError(f"the {self.name} index takes vectors (add), not store snapshots")

    @property
    def attached_version(self) -> int | None:
        """The store version of the snapshot :meth:`attach` gave (None: none, or an index that takes vectors)."""
        return None

    def save(self) -> None:  # noqa: B027 - backends that persist as they go need nothing here
        """Persist to ``path`` (a no-op in memory or for backends that persist on every write)."""

    def close(self) -> None:  # noqa: B027
        """Release files and connections."""

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.ids()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, count={len(self)}, path={self.path})"


def check_vectors(ids: Sequence[str], vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {vectors.shape}")
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate ids in one add() call")
    return vectors


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first (ties broken by position)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def folder_lock(path: Path, timeout: float = 600.0) -> FileLock:
    """The lock (``<path>.lock``) held while an index folder is loaded, saved or swapped.

    Every process that reads or writes ``path`` takes it, so a save never runs into another save or
    a load. One lock object per path and process, so a thread that holds it can take it again.
    """
    return _lock_for(str(path.with_name(path.name + ".lock")), timeout)


@functools.lru_cache(maxsize=64)
def _lock_for(lock_path: str, timeout: float) -> FileLock:
    # checked once, when the lock is made: qdrant-edge takes it around every search
    path = Path(lock_path)
    return FileLock(WorkspaceFiles(path.parent).lock_file(path.name), timeout=timeout)


def replace_folder(path: Path, write: Any) -> None:
    """Write a folder's files with ``write(tmp_folder)``, then swap it in for ``path``, under :func:`folder_lock`.

    Each save writes into a folder of its own (``<path>.tmp-<pid>-<random>``), so two processes never
    share or remove each other's half-written files. A crash leaves either the old folder, the new one,
    or the old one under ``<path>.old`` (which :func:`recover_folder` brings back); never a mix of old
    and new files. Temporary folders left by killed saves are removed by the next save.
    """
    files = WorkspaceFiles(path.parent)
    with folder_lock(path):
        recover_folder(path)
        for stale in files.list():  # only the lock holder writes one: these are dead
            if stale.startswith(f"{path.name}.tmp"):
                files.remove(stale)
        temporary = f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        previous = path.name + ".old"
        os.mkdir(files.path(temporary), 0o755)  # new: nothing planted can be in it
        try:
            write(files.path(temporary))
            files.remove(previous)
            if files.exists(path.name):
                files.rename(path.name, previous)
            files.rename(temporary, path.name)
        finally:
            files.remove(temporary)
        files.remove(previous)


def recover_folder(path: Path) -> None:
    """Undo a :func:`replace_folder` that was killed between its two renames.

    Call it holding :func:`folder_lock` (a running save's ``.old`` folder is not a dead one's).
    """
    files = WorkspaceFiles(path.parent)
    if not files.exists(path.name) and files.is_folder(path.name + ".old"):
        files.rename(path.name + ".old", path.name)


def remove_folder(path: Path) -> None:
    """Delete an index folder (to rebuild it), under :func:`folder_lock`."""
    files = WorkspaceFiles(path.parent)
    with folder_lock(path):
        for folder in (path.name, path.name + ".old"):
            files.remove(folder)
