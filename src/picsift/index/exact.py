"""``exact``: numpy brute force. The reference every other backend is measured against."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..workspace_files import WorkspaceFiles
from .base import UnreadableIndexError, VectorIndex, check_vectors, top_k


class ExactIndex(VectorIndex):
    """Every query scores every vector: exact, and the fastest choice below ~50k images."""

    name = "exact"
    exact = True

    def __init__(self, dim: int, path: Path | None = None, **options: Any):
        super().__init__(dim, path)
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), np.float32)
        self._count = 0
        if self.path is not None and WorkspaceFiles(self.path.parent).exists(f"{self.path.name}/exact.npz"):
            try:
                data = WorkspaceFiles(self.path).load_arrays("exact.npz")
                self._ids = [str(i) for i in data["ids"].tolist()]
                self._vectors = np.array(data["vectors"], dtype=np.float32).reshape(len(self._ids), dim)
            except (OSError, ValueError, KeyError) as e:
                raise UnreadableIndexError(f"exact index at {self.path} cannot be read ({e})") from e
            self._count = len(self._ids)
            self._positions = {image_id: i for i, image_id in enumerate(self._ids)}

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = check_vectors(ids, vectors, self.dim)
        new = [i for i, image_id in enumerate(ids) if image_id not in self._positions]
        for i, image_id in enumerate(ids):
            if image_id in self._positions:
                self._vectors[self._positions[image_id]] = vectors[i]
        if not new:
            return
        needed = self._count + len(new)
        if needed > len(self._vectors):
            grown = np.zeros((max(needed, 2 * len(self._vectors), 1024), self.dim), np.float32)
            grown[: self._count] = self._vectors[: self._count]
            self._vectors = grown
        self._vectors[self._count : needed] = vectors[new]
        for offset, i in enumerate(new):
            self._positions[ids[i]] = self._count + offset
            self._ids.append(ids[i])
        self._count = needed

    def remove(self, ids: Sequence[str]) -> None:
        for image_id in ids:
            position = self._positions.pop(image_id, None)
            if position is None:
                continue
            last = self._count - 1
            if position != last:  # move the last vector into the hole
                moved = self._ids[last]
                self._vectors[position] = self._vectors[last]
                self._ids[position] = moved
                self._positions[moved] = position
            self._ids.pop()
            self._count = last

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if restrict_to is None:
            scores = self._vectors[: self._count] @ query
            order = top_k(scores, k)
            return [self._ids[i] for i in order], scores[order]
        positions = np.array([self._positions[i] for i in restrict_to if i in self._positions], dtype=np.int64)
        scores = self._vectors[positions] @ query if len(positions) else np.zeros(0, np.float32)
        order = top_k(scores, k)
        return [self._ids[positions[i]] for i in order], scores[order]

    def ids(self) -> set[str]:
        return set(self._ids)

    def __len__(self) -> int:
        return self._count

    def save(self) -> None:
        if self.path is None:
            return
        WorkspaceFiles(self.path).save_arrays("exact.npz", ids=np.array(self._ids, dtype="<U32"),
                                              vectors=self._vectors[: self._count])
