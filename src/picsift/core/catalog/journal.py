"""The ``file_actions`` journal (see :mod:`picsift.core.files`): file actions are written here before any file
is touched, and the catalog rows they change are recorded in the same transaction that clears them."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from .connection import TableGroup

#: ``(action, source, target, image_id, dataset)`` of one journalled action.
PlannedAction = tuple[str, str, str | None, str, str | None]


class Journal(TableGroup):
    """The file-action journal (``Catalog.journal``)."""

    def append(self, rows: list[PlannedAction]) -> int:
        """Journal actions in one transaction; returns the id of the first (the others follow in order)."""
        with self._database.transaction() as db:
            first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM file_actions").fetchone()[0]
            db.executemany("INSERT INTO file_actions(action, source, target, image_id, dataset) VALUES (?, ?, ?, ?, ?)",
                           rows)
        return int(first)

    def pending(self) -> list[tuple[int, str, str, str | None, str, str | None]]:
        """``(id, action, source, target, image_id, dataset)`` of every journalled action, in order."""
        return self._database.db.execute(
            "SELECT id, action, source, target, image_id, dataset FROM file_actions ORDER BY id").fetchall()

    def has_pending(self) -> bool:
        return self._database.db.execute("SELECT 1 FROM file_actions LIMIT 1").fetchone() is not None

    @staticmethod
    def clear(db: sqlite3.Connection, ids: list[int]) -> None:
        """Drop journal rows (done, or rolled back)."""
        db.executemany("DELETE FROM file_actions WHERE id=?", [(i,) for i in ids])

    def dataset_folder(self, dataset: str) -> str:
        """The folder (relative to the root) of ``dataset``, creating the dataset in its own folder if needed."""
        with self._database.transaction() as db:
            row = db.execute("SELECT folder FROM datasets WHERE name=?", (dataset,)).fetchone()
            if row is None:
                db.execute("INSERT INTO datasets(name, folder, source, created) VALUES (?, ?, ?, ?)",
                           (dataset, dataset, '{"made_by": "picsift"}', time.time()))
                return dataset
            return str(row[0] or dataset)

    @staticmethod
    def record_delete(db: sqlite3.Connection, path: str) -> None:
        """A deleted file: its ``files`` and ``dataset_items`` rows go."""
        db.execute("DELETE FROM files WHERE path=?", (path,))
        db.execute("DELETE FROM dataset_items WHERE path=?", (path,))

    @staticmethod
    def record_copy_or_move(db: sqlite3.Connection, action: str, source: str, target: str, image_id: str,
                            dataset: str, stat_target: Callable[[], os.stat_result]) -> None:
        """A file copied or moved to ``target`` in ``dataset``: it gets the source's rows (a move drops those)."""
        source_row = db.execute("SELECT size, image_id, width, height FROM files WHERE path=?", (source,)).fetchone()
        item = db.execute("SELECT width, height FROM dataset_items WHERE path=? AND image_id=?",
                          (source, image_id)).fetchone()
        width, height = (source_row[2], source_row[3]) if source_row else (item or (None, None))
        if action == "move" and target != source:
            Journal.record_delete(db, source)
        if source_row is not None:
            st = stat_target()
            db.execute(
                "INSERT OR REPLACE INTO files(path, size, mtime_ns, image_id, width, height, error, indexed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                (target, st.st_size, st.st_mtime_ns, image_id, width, height, time.time()),
            )
        dataset_id = db.execute("SELECT id FROM datasets WHERE name=?", (dataset,)).fetchone()[0]
        db.execute(
            "INSERT OR REPLACE INTO dataset_items(dataset, path, image_id, width, height) VALUES (?, ?, ?, ?, ?)",
            (dataset_id, target, image_id, width, height),
        )
