"""``hnsw``: hnswlib in memory, persisted to the workspace. Fast approximate search at any size.

hnswlib's loader trusts its file (a crafted entry point or neighbour list crashes the process), so a saved
folder is signed with this user's secret (:mod:`picsift.signing`) and loaded only when the signature holds;
anything else is rebuilt from the embedding store.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from .. import signing
from ..workspace_files import SMALL_LIMIT, WorkspaceFiles
from .base import UnreadableIndexError, VectorIndex, check_vectors, folder_lock, recover_folder, replace_folder, top_k

log = logging.getLogger(__name__)


class HnswIndex(VectorIndex):
    """An HNSW graph (hnswlib) over inner products of unit vectors.

    Parameters
    ----------
    M, ef_construction
        Graph degree and build-time beam width (hnswlib's parameters).
    ef
        Query-time beam width. hnswlib's default of 10 gives poor recall; picsift starts at 128
        and :meth:`calibrate` raises it until recall@k against exact search reaches a target.
    """

    name = "hnsw"

    def __init__(
        self, dim: int, path: Path | None = None, *, M: int = 16, ef_construction: int = 200, ef: int = 128,
        **options: Any,
    ):
        super().__init__(dim, path)
        self.M, self.ef_construction, self.ef = M, ef_construction, ef
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._next_label = 0
        self._index = hnswlib.Index(space="ip", dim=dim)
        loaded = False
        if self.path is not None:
            with folder_lock(self.path):  # not while another process swaps the folder
                recover_folder(self.path)
                parent = WorkspaceFiles(self.path.parent)
                if parent.exists(self.path.name) and (not parent.is_folder(self.path.name)
                                                      or parent.list(self.path.name)):
                    self._load()
                    loaded = True
        if not loaded:
            self._index.init_index(max_elements=1024, ef_construction=ef_construction, M=M,
                                   allow_replace_deleted=True)
        self._index.set_ef(self.ef)

    def _load(self) -> None:
        assert self.path is not None
        if not signing.verify_folder(self.path):
            raise UnreadableIndexError(f"hnsw index at {self.path} was not saved by picsift for this user (or a save "
                                       "stopped half-way)")
        files = WorkspaceFiles(self.path)
        try:
            meta = files.read_json("meta.json", SMALL_LIMIT)
            dim = meta["dim"]
            data = files.load_arrays("labels.npz")
            labels, ids = data["labels"].tolist(), data["ids"].tolist()
            if dim == self.dim:
                self._index.load_index(str(self.path / "index.bin"), max_elements=max(1024, meta["capacity"]),
                                       allow_replace_deleted=True)
            self.M, self.ef_construction, self.ef = meta["M"], meta["ef_construction"], meta["ef"]
            next_label = int(meta["next_label"])
            if len(ids) != len(labels) or self._index.get_current_count() < len(labels):
                raise ValueError(f"{len(ids)} ids for {len(labels)} labels")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # json, npz and hnswlib errors
            raise UnreadableIndexError(f"hnsw index at {self.path} cannot be read ({type(e).__name__}: {e})") from e
        if dim != self.dim:
            raise UnreadableIndexError(f"hnsw index at {self.path} holds {dim}-d vectors, not {self.dim}-d")
        self._label_of = dict(zip(ids, labels, strict=True))
        self._id_of = dict(zip(labels, ids, strict=True))
        self._next_label = next_label

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = check_vectors(ids, vectors, self.dim)
        if not len(ids):
            return
        labels = []
        for image_id in ids:
            label = self._label_of.get(image_id)
            if label is None:
                label = self._next_label
                self._next_label += 1
                self._label_of[image_id] = label
                self._id_of[label] = image_id
            labels.append(label)
        needed = self._index.get_current_count() + len(ids)
        if needed > self._index.get_max_elements():
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        self._index.add_items(vectors, np.array(labels, dtype=np.int64), replace_deleted=True)

    def remove(self, ids: Sequence[str]) -> None:
        for image_id in ids:
            label = self._label_of.pop(image_id, None)
            if label is not None:
                del self._id_of[label]
                self._index.mark_deleted(label)

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if restrict_to is not None:
            labels = np.array([self._label_of[i] for i in restrict_to if i in self._label_of], dtype=np.int64)
            # Small candidate sets are faster to score exactly than to filter during a graph walk.
            if len(labels) <= max(4096, 20 * k):
                return self._score_labels(query[0], labels, k)
            allowed = set(labels.tolist())
            k = min(k, len(allowed))
            try:
                found, distances = self._index.knn_query(query, k=k, filter=allowed.__contains__)
            except RuntimeError:  # the filtered walk found fewer than k: fall back to exact
                return self._score_labels(query[0], labels, k)
        else:
            k = min(k, len(self._label_of))
            if k == 0:
                return [], np.zeros(0, np.float32)
            try:
                found, distances = self._index.knn_query(query, k=k)
            except RuntimeError:  # k close to the count, with deleted nodes cutting paths: score all
                return self._score_labels(query[0], np.fromiter(self._id_of, np.int64, len(self._id_of)), k)
        return [self._id_of[int(label)] for label in found[0]], (1.0 - distances[0]).astype(np.float32)

    def _score_labels(self, query: np.ndarray, labels: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        if not len(labels):
            return [], np.zeros(0, np.float32)
        vectors = np.asarray(self._index.get_items(labels), dtype=np.float32)
        scores = vectors @ query
        order = top_k(scores, k)
        return [self._id_of[int(labels[i])] for i in order], scores[order]

    def calibrate(self, queries: np.ndarray, exact_ids: list[list[str]], k: int, target: float = 0.95) -> int:
        """Raise ``ef`` until mean recall@k against ``exact_ids`` reaches ``target``; returns the ef chosen."""
        for ef in sorted({k, int(1.5 * k), 2 * k, 3 * k, 4 * k, 6 * k, 8 * k, 12 * k, 16 * k}):
            self._index.set_ef(ef)
            found, _ = self._index.knn_query(np.asarray(queries, np.float32), k=k)
            recall = np.mean([
                len({self._id_of[int(label)] for label in row} & set(truth)) / max(1, len(truth))
                for row, truth in zip(found, exact_ids, strict=True)
            ])
            if recall >= target:
                break
        self.ef = ef
        level = logging.INFO if recall >= target else logging.WARNING
        log.log(level, "hnsw: ef=%d gives recall@%d=%.3f on %d sample queries (target %.2f)", ef, k, recall,
                len(queries), target)
        return ef

    def ids(self) -> set[str]:
        return set(self._label_of)

    def __len__(self) -> int:
        return len(self._label_of)

    def save(self) -> None:
        if self.path is None:
            return

        def write(folder: Path) -> None:
            self._index.save_index(str(folder / "index.bin"))  # a folder just made: nothing planted in it
            labels = np.array(list(self._label_of.values()), dtype=np.int64)
            ids = np.array(list(self._label_of.keys()), dtype="<U32")
            files = WorkspaceFiles(folder)
            files.save_arrays("labels.npz", labels=labels, ids=ids)
            meta = {"dim": self.dim, "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
                    "next_label": self._next_label, "capacity": self._index.get_max_elements()}
            files.write_json("meta.json", meta)

        with folder_lock(self.path):  # readers see the folder and its signature from the same save
            replace_folder(self.path, write)
            signing.sign_folder(self.path)
