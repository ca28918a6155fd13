"""The ``files`` table: every image (and unreadable video) file under the library root, and what the last
scan could not look at."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .connection import TableGroup

#: The meta key holding what the last scan could not look at (see :meth:`FileTable.scan_problems`).
SCAN_PROBLEMS_KEY = "scan_problems"
#: SQLite's bound-parameter limit, with room to spare: lookups of many ids go in chunks of this size.
CHUNK = 900


@dataclass
class FileRow:
    path: str
    size: int
    mtime_ns: int
    image_id: str | None
    width: int | None
    height: int | None
    error: str | None


class FileTable(TableGroup):
    """Reading and writing the ``files`` table (``Catalog.file_table``)."""

    def rows(self) -> dict[str, FileRow]:
        """Every row, by path."""
        rows = self._db.execute("SELECT path, size, mtime_ns, image_id, width, height, error FROM files").fetchall()
        return {r[0]: FileRow(*r) for r in rows}

    @staticmethod
    def upsert(db: sqlite3.Connection, rows: Iterable[FileRow]) -> None:
        now = time.time()
        db.executemany(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, image_id, width, height, error, indexed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.path, r.size, r.mtime_ns, r.image_id, r.width, r.height, r.error, now) for r in rows],
        )

    @staticmethod
    def delete(db: sqlite3.Connection, paths: Iterable[str]) -> None:
        db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])

    def listing(self) -> list[tuple[str, str | None, int, int | None, int | None, str | None]]:
        """``(path, image_id, size, width, height, error)`` of every file, by path."""
        return self._db.execute("SELECT path, image_id, size, width, height, error FROM files ORDER BY path").fetchall()

    def counts(self) -> tuple[int, int, int]:
        """How many files there are, how many have an image id, how many an error."""
        files, identified, failed = self._db.execute(
            "SELECT COUNT(*), COUNT(image_id), COUNT(error) FROM files").fetchone()
        return int(files), int(identified), int(failed)

    def image_count(self) -> int:
        """How many distinct images the files hold."""
        return int(self._db.execute(
            "SELECT COUNT(DISTINCT image_id) FROM files WHERE image_id IS NOT NULL").fetchone()[0])

    def paths_by_id(self) -> dict[str, str]:
        """For each image id, its first path (ids shared by duplicate files show one of them)."""
        rows = self._db.execute("SELECT image_id, MIN(path) FROM files WHERE image_id IS NOT NULL GROUP BY image_id")
        return dict(rows.fetchall())

    def paths_for(self, ids: list[str]) -> dict[str, str]:
        """:meth:`paths_by_id` for a few ids, without reading the whole table."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(
                f"SELECT image_id, MIN(path) FROM files WHERE image_id IN ({marks}) GROUP BY image_id", chunk
            ).fetchall())
        return found

    def id_for_path(self, path: str) -> str | None:
        row = self._db.execute("SELECT image_id FROM files WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def image_id_at(self, path: str) -> str | None:
        """The id of the image at ``path`` (relative to the root): a catalogued file's, else a dataset item's."""
        for query in ("SELECT image_id FROM files WHERE path=? AND image_id IS NOT NULL",
                      "SELECT image_id FROM dataset_items WHERE path=?"):
            row = self._db.execute(query, (path,)).fetchone()
            if row:
                return str(row[0])
        return None

    def paths_of(self, image_id: str) -> list[str]:
        """Every path holding image ``image_id``: its files and dataset items, sorted."""
        return [r[0] for r in self._db.execute(
            "SELECT path FROM dataset_items WHERE image_id=? UNION SELECT path FROM files WHERE image_id=?"
            " ORDER BY 1", (image_id, image_id))]

    def size_of(self, image_id: str) -> tuple[int | None, int | None, int | None]:
        """(bytes, width, height) of an image's first file; Nones when it has none."""
        row = self._db.execute("SELECT size, width, height FROM files WHERE image_id=? LIMIT 1", (image_id,)).fetchone()
        return tuple(row) if row else (None, None, None)

    def dataset_path_of(self, image_id: str) -> str | None:
        """The first dataset item path of image ``image_id``, if it is in a dataset."""
        return self._db.execute("SELECT MIN(path) FROM dataset_items WHERE image_id=?", (image_id,)).fetchone()[0]

    def errors(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT path, error FROM files WHERE error IS NOT NULL ORDER BY path").fetchall()

    def scan_problems(self) -> list[tuple[str, str]]:
        """What the last update's scan could not look at (names that are not UTF-8, broken symlinks,
        unreadable folders): they have no files row, so the scan's list is kept on its own."""
        try:
            found = json.loads(self._database.get_meta(SCAN_PROBLEMS_KEY) or "[]")
        except ValueError:
            return []
        if not isinstance(found, list):
            return []
        return [(p, r) for p, r in (item for item in found if isinstance(item, list) and len(item) == 2)
                if isinstance(p, str) and isinstance(r, str)]

    @staticmethod
    def set_scan_problems(db: sqlite3.Connection, problems: Iterable[tuple[str, str]]) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   (SCAN_PROBLEMS_KEY, json.dumps(sorted(problems))))
