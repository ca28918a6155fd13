"""The ``models`` and ``embeddings`` tables: which model a store holds, and which row of its vectors file
belongs to which image (the vectors themselves live in :mod:`picsift.core.store`)."""

from __future__ import annotations

import sqlite3
import time

from .connection import TableGroup
from .files import CHUNK

#: The identity (and spec) of a model's object store ends with this: its rows are keyed by object id, not image id
#: (see :mod:`picsift.core.objects`), so they are never matched against files.
OBJECTS_SUFFIX = "#objects"
#: The identity (and spec) of a model's region store ends with this: its rows are keyed by region id (see
#: :mod:`picsift.core.regions`), so they are never matched against files either.
REGIONS_SUFFIX = "#regions"


class EmbeddingTables(TableGroup):
    """Rows of the embedding stores (``Catalog.embeddings``)."""

    # -- models -----------------------------------------------------------------------------------
    def model_dim(self, identity: str) -> int | None:
        """The vector size of model ``identity``, or None when it has no store yet."""
        row = self._db.execute("SELECT dim FROM models WHERE identity=?", (identity,)).fetchone()
        return None if row is None else int(row[0])

    def add_model(self, identity: str, spec: str, dim: int, vectors_file: str) -> None:
        with self._database.transaction() as db:
            db.execute(
                "INSERT INTO models(identity, spec, dim, vectors_file, next_row, version, created)"
                " VALUES (?, ?, ?, ?, 0, 0, ?)",
                (identity, spec, dim, vectors_file, time.time()),
            )

    def state(self, identity: str) -> tuple[str, int, int]:
        """``(vectors_file, next_row, version)`` of model ``identity``."""
        return self._db.execute(
            "SELECT vectors_file, next_row, version FROM models WHERE identity=?", (identity,)).fetchone()

    def latest_identity(self, spec: str) -> str | None:
        """The identity of the newest store made with model ``spec``."""
        row = self._db.execute(
            "SELECT identity FROM models WHERE spec=? ORDER BY created DESC LIMIT 1", (spec,)).fetchone()
        return None if row is None else str(row[0])

    def counts_by_spec(self) -> list[tuple[str, int]]:
        """``(model spec, embedded images)`` of every store."""
        return self._db.execute("SELECT m.spec, COUNT(e.image_id) FROM models m LEFT JOIN embeddings e"
                                " ON e.model = m.identity WHERE m.identity NOT LIKE ? AND m.identity NOT LIKE ?"
                                " GROUP BY m.identity", (f"%{OBJECTS_SUFFIX}", f"%{REGIONS_SUFFIX}")).fetchall()

    # -- rows -------------------------------------------------------------------------------------
    def count(self, identity: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (identity,)).fetchone()[0])

    def rows_of(self, identity: str, ids: list[str]) -> dict[str, int]:
        """Rows of those of ``ids`` that model ``identity`` embedded."""
        found: dict[str, int] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            found.update(self._db.execute(
                f"SELECT image_id, row FROM embeddings WHERE model=? AND image_id IN ({','.join('?' * len(chunk))})",
                (identity, *chunk)).fetchall())
        return found

    def embedded_ids(self, identity: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT image_id FROM embeddings WHERE model=?", (identity,))}

    def snapshot(self, identity: str) -> tuple[tuple[str, int, int], list[tuple[str, int]]]:
        """:meth:`state` and every ``(image_id, row)`` by row, read from the same commit."""
        with self._database.reading() as db:
            state = self.state(identity)
            pairs = db.execute("SELECT image_id, row FROM embeddings WHERE model=? ORDER BY row",
                               (identity,)).fetchall()
        return state, pairs

    def missing_from(self, identity: str, previous: str) -> list[str]:
        """Images of the files that model ``previous`` embedded and model ``identity`` has not."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT f.image_id FROM files f JOIN embeddings old ON old.image_id=f.image_id AND old.model=?"
            " WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model=? AND e.image_id=f.image_id)",
            (previous, identity))]

    # -- writing ----------------------------------------------------------------------------------
    @staticmethod
    def commit_rows(db: sqlite3.Connection, identity: str, ids: list[str], rows: list[int]) -> None:
        """Record rows and advance ``next_row``, inside the caller's transaction."""
        db.executemany("INSERT OR REPLACE INTO embeddings(model, image_id, row) VALUES (?, ?, ?)",
                       [(identity, i, r) for i, r in zip(ids, rows, strict=True)])
        db.execute("UPDATE models SET next_row=MAX(next_row, ?), version=version+1 WHERE identity=?",
                   (max(rows) + 1, identity))

    @staticmethod
    def drop_unreferenced(db: sqlite3.Connection) -> int:
        """Delete embeddings (of every model's image store) whose image no file refers to any more."""
        cursor = db.execute(
            "DELETE FROM embeddings WHERE model NOT LIKE ? AND model NOT LIKE ?"
            " AND image_id NOT IN (SELECT image_id FROM files WHERE image_id IS NOT NULL)",
            (f"%{OBJECTS_SUFFIX}", f"%{REGIONS_SUFFIX}"))
        if cursor.rowcount:
            db.execute("UPDATE models SET version=version+1")
        return cursor.rowcount

    @staticmethod
    def drop_ids(db: sqlite3.Connection, identity: str, ids: list[str]) -> int:
        """Delete the rows of ``ids`` from model ``identity``'s store (their vector rows become unused)."""
        removed = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            removed += db.execute(f"DELETE FROM embeddings WHERE model=? AND image_id IN ({marks})",
                                  (identity, *chunk)).rowcount
        if removed:
            db.execute("UPDATE models SET version=version+1 WHERE identity=?", (identity,))
        return removed

    def switch_file(self, identity: str, vectors_file: str, next_row: int, packed: list[str] | None) -> None:
        """Point model ``identity`` at a rewritten vectors file; ``packed``: the ids of its rows 0, 1, ...
        (a compaction), None when every row kept its number."""
        with self._database.transaction() as db:
            if packed is not None:
                db.executemany("UPDATE embeddings SET row=? WHERE model=? AND image_id=?",
                               [(i, identity, image_id) for i, image_id in enumerate(packed)])
            db.execute("UPDATE models SET vectors_file=?, next_row=?, version=version+1 WHERE identity=?",
                       (vectors_file, next_row, identity))

    def reset_model(self, identity: str, vectors_file: str) -> None:
        """Forget every vector of model ``identity`` (its images are embedded again) and start ``vectors_file``."""
        with self._database.transaction() as db:
            db.execute("DELETE FROM embeddings WHERE model=?", (identity,))
            db.execute("UPDATE models SET vectors_file=?, next_row=0, version=version+1 WHERE identity=?",
                       (vectors_file, identity))
