"""The ``collections`` and ``collection_items`` tables: named, ranked lists of image ids with their recipe."""

from __future__ import annotations

import json
import time

from .connection import TableGroup


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


class CollectionTables(TableGroup):
    """Reading and writing collections (``Catalog.collections``)."""

    def write(self, name: str, ids: list[str], scores: list[float | None] | None, recipe: dict[str, object]) -> None:
        """Create or replace a collection; ``ids`` in rank order (duplicates keep their first place)."""
        with self._database.transaction() as db:
            db.execute("DELETE FROM collections WHERE name=?", (name,))
            db.execute(
                "INSERT INTO collections(name, created, recipe) VALUES (?, ?, ?)",
                (name, time.time(), json.dumps(recipe, default=str)),
            )
            db.executemany(
                "INSERT OR IGNORE INTO collection_items(collection, image_id, score, rank) VALUES (?, ?, ?, ?)",
                [
                    (name, image_id, None if scores is None else _float_or_none(scores[i]), i + 1)
                    for i, image_id in enumerate(ids)
                ],
            )

    def copy(self, source: str, target: str) -> None:
        with self._database.transaction() as db:
            if not db.execute("SELECT 1 FROM collections WHERE name=?", (source,)).fetchone():
                raise KeyError(source)
            db.execute("DELETE FROM collections WHERE name=?", (target,))
            db.execute(
                "INSERT INTO collections(name, created, recipe) SELECT ?, ?, recipe FROM collections WHERE name=?",
                (target, time.time(), source),
            )
            db.execute(
                "INSERT INTO collection_items(collection, image_id, score, rank)"
                " SELECT ?, image_id, score, rank FROM collection_items WHERE collection=?",
                (target, source),
            )

    def exists(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM collections WHERE name=?", (name,)).fetchone() is not None

    def names(self) -> list[tuple[str, float, str, int]]:
        """``(name, created, recipe JSON, size)`` of every collection, oldest first."""
        return self._db.execute(
            "SELECT c.name, c.created, c.recipe, COUNT(i.image_id) FROM collections c"
            " LEFT JOIN collection_items i ON i.collection = c.name GROUP BY c.name ORDER BY c.created"
        ).fetchall()

    def summary(self, name: str) -> tuple[dict[str, object], int]:
        """One collection's recipe and size (KeyError if there is none), without reading the others."""
        row = self._db.execute("SELECT recipe FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        size = self._db.execute("SELECT COUNT(*) FROM collection_items WHERE collection=?", (name,)).fetchone()[0]
        return json.loads(row[0]), int(size)

    def items(self, name: str) -> tuple[dict[str, object], list[tuple[str, float | None, int]]]:
        """One collection's recipe and ``(image_id, score, rank)`` items in rank order (KeyError if there is none)."""
        row = self._db.execute("SELECT recipe FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        items = self._db.execute(
            "SELECT image_id, score, rank FROM collection_items WHERE collection=? ORDER BY rank", (name,)
        ).fetchall()
        return json.loads(row[0]), items

    def delete(self, name: str) -> bool:
        with self._database.transaction() as db:
            return db.execute("DELETE FROM collections WHERE name=?", (name,)).rowcount > 0
