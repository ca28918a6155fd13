"""A workspace's index, kept in line with its embedding store and saved safely across processes.

The store is the source of truth and the index an accelerator built from it, so anything wrong with
a saved index is repaired by rebuilding it from the store. Next to a persisted index lies a state file
(``<name>.state.json``: the store version and count it reflects). Loading an index and reading its
state, and saving an index and writing its state, each happen under the index folder's lock, so the
two always match, and a process never saves an older index over a newer one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from .. import signing
from ..core.workspace import open_only_if_signed
from ..workspace_files import SMALL_LIMIT, WorkspaceFiles
from . import backend_class
from .base import (
    IndexBusyError,
    NoRoomForIndexError,
    UnreadableIndexError,
    VectorIndex,
    folder_lock,
    remove_folder,
    top_k,
)

if TYPE_CHECKING:
    from ..core.store import StoreSnapshot

log = logging.getLogger(__name__)

#: Indexes with a ``calibrate`` method are re-tuned when they reach this size and grow by 20%.
CALIBRATE_FROM = 10_000
#: Vectors added per ``add`` call while syncing.
CHUNK = 10_000


def wider_k(k: int) -> int:
    """How many candidates to ask an index with approximate scores for, to rescore exactly and keep ``k``."""
    return k + max(10, k // 2)


class Store(Protocol):
    """What syncing needs of an :class:`~picsift.core.store.EmbeddingStore`."""

    @property
    def version(self) -> int: ...

    def snapshot(self) -> StoreSnapshot: ...


def read_state(path: Path) -> dict[str, Any]:
    """The state saved next to an index; ``{}`` when missing or unreadable (the index is then checked id by id)."""
    try:
        state = WorkspaceFiles(path.parent).read_json(path.name, SMALL_LIMIT)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.info("index state %s is unreadable (%s); checking the index against the store", path, e)
        return {}
    if not isinstance(state, dict):
        return {}
    # only the counters picsift writes, as whole numbers: anything else in a shared workspace is ignored
    return {key: value for key, value in state.items()
            if key in ("version", "count", "calibrated_count") and type(value) is int and value >= 0}


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically: a reader sees the old state or the new one, never a part."""
    WorkspaceFiles(path.parent).write_json(path.name, state, fsync=True)


class IndexKeeper:
    """Opens one workspace index, brings it in line with the store, and saves it.

    Parameters
    ----------
    name
        Registered backend name (see :func:`picsift.index.available_backends`).
    dim
        Vector dimension.
    path
        Where the backend persists itself (None: in memory, or on a server named in ``options``).
    state_file
        Where the store version the saved index reflects is kept (``<name>.state.json``).
    options
        Passed to the backend.
    on_save
        Called with ``path`` after each save (the library signs qdrant's local storage with it).
    """

    def __init__(self, name: str, dim: int, path: Path | None, state_file: Path, options: dict[str, Any],
                 on_save: Callable[[Path], None] | None = None):
        self.name, self.dim, self.path, self.state_file, self.options = name, dim, path, state_file, options
        self.on_save = on_save
        self.index: VectorIndex | None = None
        self.version: int | None = None  # store version the open index reflects; None: unknown
        self._calibrated = 0
        self._busy_logged = False

    def _lock_path(self) -> Path:
        return self.path if self.path is not None else self.state_file.with_suffix("")

    def open(self) -> VectorIndex:
        """Open (or reopen) the index; an unreadable one is deleted and rebuilt, with one warning."""
        if self.index is not None:
            return self.index
        cls = backend_class(self.name)
        with folder_lock(self._lock_path()):  # the index and its state from the same save
            try:
                index = cls(self.dim, self.path, **self.options)
            except UnreadableIndexError as e:
                if self.path is None:
                    raise
                log.warning("%s; rebuilding it from the embedding store", e)
                remove_folder(self.path)
                WorkspaceFiles(self.state_file.parent).remove(self.state_file.name)
                index = cls(self.dim, self.path, **self.options)
            state = read_state(self.state_file) if index.persistent else {}
        self.index = index
        self.version = state.get("version") if state.get("count") == len(index) else None
        self._calibrated = int(state.get("calibrated_count", 0) or 0)
        return index

    def sync(self, store: Store, *, room_fallback: bool = True) -> VectorIndex:
        """The open index with exactly the store's ids and vectors, saved when it changed.

        A backend that allows one process at a time (``qdrant-edge``) and is open in another
        process is left to that process, which syncs it on its next use; this one then searches
        the store itself (:class:`StoreIndex`: exact, one scan per query). So does a disk with too little room
        for the index's files (:class:`~picsift.index.base.NoRoomForIndexError`), unless ``room_fallback`` is False
        (an update: the error then says the disk is full).
        """
        try:
            return self._sync(store)
        except (IndexBusyError, NoRoomForIndexError) as e:
            if isinstance(e, NoRoomForIndexError) and not room_fallback:
                raise
            if not self._busy_logged:
                log.warning("%s; searching the embedding store exactly instead", e)
                self._busy_logged = True
            return StoreIndex(store.snapshot())

    def _sync(self, store: Store) -> VectorIndex:
        index = self.open()
        version = store.version
        if self.version is not None and self.version == version:
            if index.follows_store and index.attached_version != version:  # a new process
                index.attach(store.snapshot())
            return index
        snapshot = store.snapshot()
        if index.follows_store:  # ivf: searches the store's own codes, holds no vectors
            index.attach(snapshot)
        else:
            self._fill(index, snapshot)
        if hasattr(index, "calibrate") and len(index) >= CALIBRATE_FROM and len(index) > 1.2 * self._calibrated:
            calibrate_for_text_queries(index, snapshot)
            self._calibrated = len(index)
        self.version = snapshot.version
        if index.persistent:
            self._save(index, snapshot.version)
        return index

    def _fill(self, index: VectorIndex, snapshot: StoreSnapshot) -> None:
        """Remove from ``index`` what the store no longer holds and add what it lacks."""
        have, want = index.ids(), set(snapshot.ids.tolist())
        if have - want:
            index.remove(sorted(have - want))
        missing = np.flatnonzero([i not in have for i in snapshot.ids.tolist()])
        with tqdm(total=len(missing), desc=f"Building {self.name} index", unit="vec",
                  disable=len(missing) < 5 * CHUNK) as bar:  # building an hnsw graph of 1M takes minutes
            for start in range(0, len(missing), CHUNK):
                chunk = missing[start : start + CHUNK]
                index.add(snapshot.ids[chunk].tolist(), snapshot.vectors(chunk))
                bar.update(len(chunk))

    def _save(self, index: VectorIndex, version: int) -> None:
        with folder_lock(self._lock_path()):
            saved = read_state(self.state_file)
            if saved.get("version", -1) >= version and saved.get("count") == len(index):
                return  # another process saved this version, or a newer one: keep it
            index.save()
            if self.on_save is not None and self.path is not None:
                self.on_save(self.path)
            write_state(self.state_file, {"version": version, "count": len(index),
                                          "calibrated_count": self._calibrated})

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
        self.index, self.version = None, None


class StoreIndex(VectorIndex):
    """Exact search over a store snapshot, read-only: what a search uses while the real index is busy."""

    name = "store"
    exact = True

    def __init__(self, snapshot: StoreSnapshot):
        super().__init__(snapshot.dim, None)
        self.snapshot = snapshot

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        raise NotImplementedError("the store is changed by updates, not through its index")

    def remove(self, ids: Sequence[str]) -> None:
        raise NotImplementedError("the store is changed by updates, not through its index")

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        snapshot = self.snapshot
        if restrict_to is None:
            positions = np.arange(len(snapshot))
        else:
            positions = snapshot.positions_of(np.asarray(list(restrict_to), dtype=str))
        if not len(positions) or k <= 0:
            return [], np.zeros(0, np.float32)
        scores = snapshot.scan(query, snapshot.rows[positions])[:, 0]
        last = scores[top_k(scores, k)[-1]]
        band = positions[scores >= last - 2 * snapshot.scan_error]  # all that can be among the k best
        exact = snapshot.exact(query, band)[:, 0]
        order = top_k(exact, k)
        return snapshot.ids[band[order]].tolist(), exact[order]

    def ids(self) -> set[str]:
        return set(self.snapshot.ids.tolist())

    def __len__(self) -> int:
        return len(self.snapshot)


def calibrate_for_text_queries(index: Any, snapshot: StoreSnapshot, k: int = 100, queries: int = 100,
                               target: float | None = None, margin: float = 0.02) -> None:
    """Tune an approximate index (its ``calibrate(queries, exact_ids, k)``) on queries shaped like text prompts.

    A stored vector is its own nearest neighbour, which flatters recall. A CLIP text query points at a
    concept, a group of images, while sitting far from every one of them (cosine ~0.3). So each calibration
    query is the centre of a stored vector's ``k`` nearest neighbours, mixed with a direction orthogonal to it
    to cosine 0.35. (Mixing the stored vector itself with noise, as before 2026-12-01, asks for its own
    neighbourhood blurred by noise: at 1M clustered vectors that needed ef 1600 where held-out concept
    queries reach recall 0.97 at ef 600; bench/README.md.)

    The recall of a sample of ``queries`` is an estimate, and two graph builds of the same vectors differ
    (at 1M, held-out recall at one ef moved by 0.07 between builds), so the index is tuned to ``target +
    margin`` on the sample for ``target`` (default: the index's ``recall_target``) to hold on queries it has not
    seen.
    """
    target = index.recall_target if target is None else target
    rng = np.random.default_rng(0)
    sample = rng.choice(len(snapshot), size=min(queries, len(snapshot)), replace=False)
    neighbourhoods = _exact_top_k(snapshot, snapshot.vectors(sample), k)
    centres = np.stack([snapshot.vectors(near).mean(axis=0) for near in neighbourhoods])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    away = rng.normal(size=centres.shape).astype(np.float32)
    away -= (away * centres).sum(axis=1, keepdims=True) * centres
    away /= np.linalg.norm(away, axis=1, keepdims=True)
    vectors = (0.35 * centres + np.sqrt(1 - 0.35**2) * away).astype(np.float32)
    exact = [snapshot.ids[positions].tolist() for positions in _exact_top_k(snapshot, vectors, k)]
    if index.score_error:  # a compact index whose candidates the library rescores exactly
        index.calibrate(vectors, exact, k=k, target=target + margin, wider=wider_k(k))
    else:
        index.calibrate(vectors, exact, k=k, target=target + margin)


def _exact_top_k(snapshot: StoreSnapshot, queries: np.ndarray, k: int, chunk: int = 16) -> list[np.ndarray]:
    """Positions of each query's exact ``k`` best, best first; ``chunk`` queries at a time, so that the scores
    held at once stay ``chunk`` columns of the store (64 MB at 1M images), not one per query."""
    return [top_k(column, k) for start in range(0, len(queries), chunk)
            for column in snapshot.scores(queries[start : start + chunk]).T]


__all__ = ["CALIBRATE_FROM", "IndexKeeper", "StoreIndex", "calibrate_for_text_queries", "read_state", "wider_k",
           "write_state"]


def open_keeper(name: str, dim: int, folder: Path, slug: str, options: dict[str, Any]) -> IndexKeeper:
    """The keeper of backend ``name``'s index for one model, stored under its folder ``folder`` of the workspace
    (a Qdrant server's collection is named after the model's ``slug``)."""
    options = dict(options)
    path = None
    if name == "qdrant":
        options.setdefault("collection", f"picsift_{slug}")
        if not options.get("url"):
            path = folder / "qdrant"
            open_only_if_signed(path)
    elif name != "exact":  # exact rebuilds from the store faster than it reloads
        path = folder / name
    if name == "qdrant-edge":  # 512 B per vector: searches rescore its candidates from the store
        options.setdefault("datatype", "uint8")
    # qdrant's local mode keeps pickles: sign what we wrote, so that only our own storage is ever opened
    on_save = signing.sign_folder if name == "qdrant" else None
    return IndexKeeper(name, dim, path, folder / f"{name}.state.json", options, on_save)
