"""The embedding store: the source of truth for vectors, one store per model.

Vectors live in a flat float32 file (``vectors-<generation>.f32`` in the model's folder), rows
allocated by the catalog's ``models.next_row``; which image owns which row is a catalog table.
Writing is two-phase: vectors go to the file first (flushed and fsynced), then one catalog
transaction records their rows together with the files they came from. A process killed between
the two leaves only unreferenced bytes past ``next_row``, which the next write overwrites.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .errors import ModelMismatchError

#: Rewrite the vectors file when fewer than this fraction of its rows are still in use.
COMPACT_BELOW = 0.75


@dataclass
class StoreSnapshot:
    """Live ids and their rows, and the matrix they index into (a read-only memory map)."""

    ids: np.ndarray  # (n,) str
    rows: np.ndarray  # (n,) int64
    matrix: np.ndarray  # (next_row, dim) float32; rows not in ``rows`` are unused
    version: int

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Image id -> position in :attr:`ids` (built once per snapshot)."""
        return {image_id: i for i, image_id in enumerate(self.ids.tolist())}

    def vectors(self, positions: np.ndarray | None = None) -> np.ndarray:
        rows = self.rows if positions is None else self.rows[positions]
        return np.asarray(self.matrix[rows])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Inner products of every live vector with each query: ``(len(self), len(queries))`` float32."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.matrix.shape[1])
        if not len(self):
            return np.zeros((0, len(queries)), np.float32)
        # Scoring the whole matrix and picking rows streams memory once; gathering rows first copies them.
        return np.asarray(self.matrix @ queries.T, dtype=np.float32)[self.rows]


class EmbeddingStore:
    """Vectors of one model inside a workspace."""

    def __init__(self, catalog: Catalog, folder: Path, identity: str, spec: str, dim: int):
        self.catalog = catalog
        self.folder = Path(folder)
        self.identity = identity
        self.dim = dim
        self._snapshot: StoreSnapshot | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        row = catalog.db.execute("SELECT dim FROM models WHERE identity=?", (identity,)).fetchone()
        if row is None:
            with catalog.transaction() as db:
                db.execute(
                    "INSERT INTO models(identity, spec, dim, vectors_file, next_row, version, created)"
                    " VALUES (?, ?, ?, ?, 0, 0, ?)",
                    (identity, spec, dim, "vectors-0.f32", time.time()),
                )
        elif row[0] != dim:
            raise ModelMismatchError(
                f"model {identity} produced {dim}-d vectors but its store holds {row[0]}-d ones; "
                f"delete {self.folder} to re-embed"
            )

    # -- reading ----------------------------------------------------------------------------------
    def _state(self) -> tuple[str, int, int]:
        return self.catalog.db.execute(
            "SELECT vectors_file, next_row, version FROM models WHERE identity=?", (self.identity,)
        ).fetchone()

    @property
    def version(self) -> int:
        return int(self._state()[2])

    def __len__(self) -> int:
        return int(
            self.catalog.db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE model=?", (self.identity,)
            ).fetchone()[0]
        )

    def embedded_ids(self) -> set[str]:
        rows = self.catalog.db.execute("SELECT image_id FROM embeddings WHERE model=?", (self.identity,))
        return {r[0] for r in rows}

    def snapshot(self) -> StoreSnapshot:
        """Everything needed to score the whole store, consistent as of the last commit.

        Cached until the store changes (every write bumps its version), so repeated searches do
        not re-read a million rows.
        """
        cached = self._snapshot
        if cached is not None and cached.version == self.version:
            return cached
        self._snapshot = self._read_snapshot()
        return self._snapshot

    def _read_snapshot(self) -> StoreSnapshot:
        db = self.catalog.db
        db.execute("BEGIN")  # one read transaction: rows and next_row from the same commit
        try:
            vectors_file, next_row, version = self._state()
            pairs = db.execute(
                "SELECT image_id, row FROM embeddings WHERE model=? ORDER BY row", (self.identity,)
            ).fetchall()
        finally:
            db.execute("COMMIT")
        ids = np.array([p[0] for p in pairs], dtype="<U32")
        rows = np.array([p[1] for p in pairs], dtype=np.int64)
        path = self.folder / vectors_file
        if next_row == 0 or not path.exists():
            matrix = np.zeros((0, self.dim), np.float32)
        else:
            matrix = np.memmap(path, dtype=np.float32, mode="r", shape=(next_row, self.dim))
        return StoreSnapshot(ids, rows, matrix, version)

    # -- writing ----------------------------------------------------------------------------------
    def write_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Phase 1: put vectors on disk past ``next_row``; returns the rows to commit with :meth:`commit_rows`."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        vectors_file, next_row, _ = self._state()
        path = self.folder / vectors_file
        with open(path, "r+b" if path.exists() else "w+b") as f:
            f.seek(next_row * self.dim * 4)
            f.write(vectors.tobytes())
            f.flush()
            os.fsync(f.fileno())
        return np.arange(next_row, next_row + len(vectors), dtype=np.int64)

    def commit_rows(self, db: sqlite3.Connection, ids: list[str], rows: np.ndarray) -> None:
        """Phase 2, inside the caller's transaction: record rows and advance ``next_row``."""
        if not ids:
            return
        db.executemany(
            "INSERT OR REPLACE INTO embeddings(model, image_id, row) VALUES (?, ?, ?)",
            [(self.identity, i, int(r)) for i, r in zip(ids, rows, strict=True)],
        )
        db.execute(
            "UPDATE models SET next_row=MAX(next_row, ?), version=version+1 WHERE identity=?",
            (int(rows.max()) + 1, self.identity),
        )

    @staticmethod
    def drop_unreferenced(db: sqlite3.Connection) -> int:
        """Delete embeddings (of every model) whose image no file refers to any more."""
        cursor = db.execute(
            "DELETE FROM embeddings WHERE image_id NOT IN"
            " (SELECT image_id FROM files WHERE image_id IS NOT NULL)"
        )
        if cursor.rowcount:
            db.execute("UPDATE models SET version=version+1")
        return cursor.rowcount

    def compact_if_sparse(self) -> bool:
        """Rewrite the vectors file without unused rows when they are a quarter or more of it."""
        snapshot = self.snapshot()
        total = snapshot.matrix.shape[0]
        if total < 1024 or len(snapshot) >= COMPACT_BELOW * total:
            return False
        vectors_file, _, _ = self._state()
        generation = int(vectors_file.split("-")[1].split(".")[0]) + 1
        new_file = f"vectors-{generation}.f32"
        with open(self.folder / new_file, "wb") as f:
            for start in range(0, len(snapshot), 65536):
                chunk = np.arange(start, min(start + 65536, len(snapshot)))
                f.write(np.ascontiguousarray(snapshot.vectors(chunk)).tobytes())
            f.flush()
            os.fsync(f.fileno())
        with self.catalog.transaction() as db:
            db.executemany(
                "UPDATE embeddings SET row=? WHERE model=? AND image_id=?",
                [(i, self.identity, image_id) for i, image_id in enumerate(snapshot.ids.tolist())],
            )
            db.execute(
                "UPDATE models SET vectors_file=?, next_row=?, version=version+1 WHERE identity=?",
                (new_file, len(snapshot), self.identity),
            )
        self.remove_stray_files()
        return True

    def remove_stray_files(self) -> None:
        """Delete vectors files left by a killed compaction. Call only while holding the update lock."""
        current = self._state()[0]
        for path in self.folder.glob("vectors-*.f32"):
            if path.name != current:
                path.unlink(missing_ok=True)
