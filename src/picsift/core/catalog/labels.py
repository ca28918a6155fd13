"""Labelled data: datasets and their items, declared classes and tag types, image tags, objects and their
tags, labelling jobs and issues (see :mod:`picsift.labels.metadata`, which validates what comes in).

Every annotation is keyed by image id. Values are stored as given; the checks live above, in the API.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from .connection import TableGroup
from .embeddings import EmbeddingTables
from .files import CHUNK

TagValue = str | int | float | None
#: Tables of annotations keyed by image id, dropped with the last file of an image.
ANNOTATION_TABLES = ("image_tags", "objects", "job_items", "issues", "collection_items")
#: What an object row holds: id, image id, class, geometry, points (decoded), author, tags.
ObjectRow = tuple[int, str, str, str, list[list[float]], str | None, list[tuple[str, TagValue]]]


class LabelTables(TableGroup):
    """Reading and writing labels (``Catalog.labels``). Writes taking ``db`` join the caller's transaction."""

    # -- datasets ---------------------------------------------------------------------------------
    def add_dataset(self, name: str, folder: str | None, source: dict[str, Any]) -> int:
        """Create dataset ``name`` (or return the id of the existing one)."""
        with self._database.transaction() as db:
            row = db.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
            if row:
                return int(row[0])
            cursor = db.execute("INSERT INTO datasets(name, folder, source, created) VALUES (?, ?, ?, ?)",
                                (name, folder, json.dumps(source), time.time()))
            return int(cursor.lastrowid or 0)

    def dataset_id(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def dataset_names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM datasets ORDER BY id")]

    def datasets(self) -> list[tuple[str, str | None, int, str | None]]:
        """``(name, folder, size, source JSON)`` of every dataset, oldest first."""
        return self._db.execute(
            "SELECT d.name, d.folder, COUNT(i.path), d.source FROM datasets d"
            " LEFT JOIN dataset_items i ON i.dataset = d.id GROUP BY d.id ORDER BY d.id").fetchall()

    def add_dataset_item(self, dataset_id: int, path: str, image_id: str, width: int | None,
                         height: int | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO dataset_items(dataset, path, image_id, width, height) VALUES (?, ?, ?, ?, ?)",
            (dataset_id, path, image_id, width, height))

    def dataset_items(self, dataset_id: int) -> list[tuple[str, str, int | None, int | None]]:
        """``(path, image_id, width, height)`` of a dataset's items, by path."""
        return self._db.execute("SELECT path, image_id, width, height FROM dataset_items WHERE dataset=? ORDER BY path",
                                (dataset_id,)).fetchall()

    def first_item(self, image_id: str) -> tuple[str, str, int | None, int | None] | None:
        """``(dataset, path, width, height)`` of the image's file in its first dataset, else of its first
        file (in a dataset named ``images``); None when the library has no file of it."""
        row = self._db.execute(
            "SELECT d.name, i.path, i.width, i.height FROM dataset_items i JOIN datasets d ON d.id = i.dataset"
            " WHERE i.image_id=? ORDER BY d.id, i.path LIMIT 1", (image_id,)).fetchone()
        if row is None:
            row = self._db.execute("SELECT 'images', MIN(path), width, height FROM files WHERE image_id=?",
                                   (image_id,)).fetchone()
        return None if row is None or row[1] is None else row

    # -- classes and tag types --------------------------------------------------------------------
    def set_classes(self, classes: Iterable[tuple[str, str, str | None]]) -> None:
        """Declare (or redeclare) classes as ``(name, shape, color)``."""
        self._db.executemany("INSERT OR REPLACE INTO classes(name, shape, color) VALUES (?, ?, ?)", list(classes))

    def add_classes(self, classes: Iterable[tuple[str, str]]) -> None:
        """Declare classes ``(name, shape)`` that are not declared yet."""
        self._db.executemany("INSERT OR IGNORE INTO classes(name, shape) VALUES (?, ?)", list(classes))

    def declared_classes(self) -> list[tuple[str, str, str | None]]:
        return [tuple(r) for r in self._db.execute("SELECT name, shape, color FROM classes ORDER BY rowid")]

    def object_classes(self) -> list[str]:
        """Every class some object has."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT class FROM objects ORDER BY class")]

    def add_tag_types(self, types: Iterable[tuple[str, str]]) -> None:
        """Declare tag value types ``(name, value_type)`` that are not declared yet."""
        self._db.executemany("INSERT OR IGNORE INTO tag_names(name, value_type) VALUES (?, ?)", list(types))

    def tag_types(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT name, value_type FROM tag_names").fetchall())

    # -- image tags -------------------------------------------------------------------------------
    def add_tag(self, image_id: str, name: str, value: TagValue, author: str | None) -> None:
        self._db.execute("INSERT INTO image_tags(image_id, name, value, author) VALUES (?, ?, ?, ?)",
                         (image_id, name, value, author))

    def remove_tags(self, image_id: str, name: str, value: TagValue = None) -> int:
        """Remove tag ``name`` of an image (only with this value, when given); returns how many went."""
        query = "DELETE FROM image_tags WHERE image_id=? AND name=?"
        params: list[TagValue] = [image_id, name]
        if value is not None:
            query += " AND value=?"
            params.append(value)
        return self._db.execute(query, params).rowcount

    def tags(self, image_id: str) -> list[tuple[str, TagValue]]:
        """An image's tags as ``(name, value)``, in the order they were added."""
        return [tuple(r) for r in self._db.execute(
            "SELECT name, value FROM image_tags WHERE image_id=? ORDER BY id", (image_id,))]

    def tag_names(self, *, objects: bool = False) -> list[str]:
        """Every image tag name (object tag name with ``objects``) in use."""
        table = "object_tags" if objects else "image_tags"
        return [r[0] for r in self._db.execute(f"SELECT DISTINCT name FROM {table} ORDER BY name")]

    def tag_values(self, *, objects: bool = False) -> list[tuple[str, TagValue]]:
        """Every distinct ``(name, value)`` of image tags (object tags with ``objects``) that has a value."""
        table = "object_tags" if objects else "image_tags"
        return self._db.execute(
            f"SELECT DISTINCT name, value FROM {table} WHERE value IS NOT NULL ORDER BY name, value").fetchall()

    def tagged(self, name: str) -> list[tuple[str, TagValue]]:
        """``(image_id, value)`` of every image tag ``name``, in the order they were added."""
        return self._db.execute("SELECT image_id, value FROM image_tags WHERE name=? ORDER BY id", (name,)).fetchall()

    def labelled_ids(self) -> set[str]:
        """Images with an object or an image tag."""
        return {r[0] for r in self._db.execute("SELECT image_id FROM objects UNION SELECT image_id FROM image_tags")}

    # -- objects ----------------------------------------------------------------------------------
    def add_object(self, image_id: str, cls: str, geometry: str, points: list[list[float]],
                   tags: list[tuple[str, TagValue]], author: str | None) -> int:
        """Insert an object with its tags; returns its id."""
        cursor = self._db.execute(
            "INSERT INTO objects(image_id, class, geometry, points, author) VALUES (?, ?, ?, ?, ?)",
            (image_id, cls, geometry, json.dumps([[float(x), float(y)] for x, y in points]), author))
        object_id = int(cursor.lastrowid or 0)
        self._db.executemany("INSERT INTO object_tags(object, name, value) VALUES (?, ?, ?)",
                             [(object_id, n, v) for n, v in tags])
        return object_id

    def has_object(self, object_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM objects WHERE id=?", (object_id,)).fetchone() is not None

    def tag_object(self, object_id: int, name: str, value: TagValue, author: str | None) -> None:
        self._db.execute("INSERT INTO object_tags(object, name, value, author) VALUES (?, ?, ?, ?)",
                         (object_id, name, value, author))

    def remove_object(self, object_id: int) -> None:
        self._db.execute("DELETE FROM objects WHERE id=?", (object_id,))

    def set_object_class(self, object_id: int, cls: str) -> None:
        self._db.execute("UPDATE objects SET class=? WHERE id=?", (cls, object_id))

    def objects(self, image_id: str | None = None) -> list[ObjectRow]:
        """Objects (of one image, or all) with their tags, by id."""
        query = "SELECT id, image_id, class, geometry, points, author FROM objects"
        params: tuple[str, ...] = ()
        if image_id is not None:
            query, params = query + " WHERE image_id=?", (image_id,)
        rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        tags: dict[int, list[tuple[str, TagValue]]] = {}
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for object_id, name, value in self._db.execute(
                f"SELECT object, name, value FROM object_tags WHERE object IN ({','.join('?' * len(chunk))})"
                " ORDER BY rowid", chunk,
            ):
                tags.setdefault(object_id, []).append((name, value))
        return [(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], tags.get(r[0], [])) for r in rows]

    def object_shapes(self) -> list[tuple[int, str, str, str, list[list[float]]]]:
        """Every object's id, image id, class, geometry and points (decoded), by id: no tags, for embedding."""
        rows = self._db.execute("SELECT id, image_id, class, geometry, points FROM objects ORDER BY id").fetchall()
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def objects_version(self) -> int:
        """A counter that grows whenever an object or a file's image changes (triggers of schema 5): what
        :func:`picsift.core.objects.live_objects` depends on is unchanged while it is."""
        return int(self._db.execute("SELECT value FROM change_counters WHERE name='objects'").fetchone()[0])

    def authors(self) -> list[str]:
        """Everyone who made an object."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT author FROM objects WHERE author IS NOT NULL ORDER BY author")]

    # -- jobs -------------------------------------------------------------------------------------
    def create_job(self, name: str, description: str | None, ids: list[str]) -> None:
        """Create job ``name`` (if missing) with these images as pending (those not in it yet)."""
        self._db.execute("INSERT OR IGNORE INTO jobs(name, description, created) VALUES (?, ?, ?)",
                         (name, description, time.time()))
        self._db.executemany(
            "INSERT OR IGNORE INTO job_items(job, image_id, status, updated) VALUES (?, ?, 'pending', ?)",
            [(name, i, time.time()) for i in ids])

    def set_status(self, job: str, ids: list[str], status: str) -> None:
        """Set the status of images in a job (created if missing), in one transaction."""
        with self._database.transaction() as db:
            db.execute("INSERT OR IGNORE INTO jobs(name, created) VALUES (?, ?)", (job, time.time()))
            db.executemany("INSERT OR REPLACE INTO job_items(job, image_id, status, updated) VALUES (?, ?, ?, ?)",
                           [(job, i, status, time.time()) for i in ids])

    def has_job(self, job: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE name=?", (job,)).fetchone() is not None

    def job_status(self, job: str) -> dict[str, str]:
        """Each image's status in ``job`` (empty when there is no such job)."""
        return dict(self._db.execute("SELECT image_id, status FROM job_items WHERE job=?", (job,)).fetchall())

    def job_names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM jobs ORDER BY created")]

    # -- issues -----------------------------------------------------------------------------------
    def open_issue(self, image_id: str, text: str, author: str | None) -> int:
        cursor = self._db.execute(
            "INSERT INTO issues(image_id, text, status, author, created) VALUES (?, ?, 'open', ?, ?)",
            (image_id, text, author, time.time()))
        return int(cursor.lastrowid or 0)

    def close_issue(self, issue_id: int) -> bool:
        """Close an issue; False when there is none with this id."""
        return self._db.execute("UPDATE issues SET status='closed' WHERE id=?", (issue_id,)).rowcount > 0

    def issues(self, image_id: str | None = None,
               status: str | None = None) -> list[tuple[int, str, str, str, str | None]]:
        """``(id, image_id, text, status, author)`` of issues (of one image, with one status, or all), by id."""
        query, params = "SELECT id, image_id, text, status, author FROM issues WHERE 1=1", []
        if image_id is not None:
            query += " AND image_id=?"
            params.append(image_id)
        if status is not None:
            query += " AND status=?"
            params.append(status)
        return self._db.execute(query + " ORDER BY id", params).fetchall()

    # -- images without files ---------------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Ids with labels but no file or dataset item any more."""
        held = "SELECT image_id FROM files WHERE image_id IS NOT NULL UNION SELECT image_id FROM dataset_items"
        labelled = " UNION ".join(f"SELECT image_id FROM {t}" for t in ("image_tags", "objects", "job_items", "issues"))
        return [r[0] for r in self._db.execute(
            f"SELECT image_id FROM ({labelled}) WHERE image_id NOT IN ({held}) ORDER BY image_id")]


def forget_images(db: sqlite3.Connection, ids: Iterable[str]) -> list[str]:
    """Drop annotations and embeddings of those images no file or dataset item holds any more, inside the
    caller's transaction; returns their ids."""
    gone = [i for i in ids if not db.execute(
        "SELECT 1 FROM files WHERE image_id=? UNION ALL SELECT 1 FROM dataset_items WHERE image_id=? LIMIT 1",
        (i, i)).fetchone()]
    for table in ANNOTATION_TABLES:
        db.executemany(f"DELETE FROM {table} WHERE image_id=?", [(i,) for i in gone])
    EmbeddingTables.drop_unreferenced(db)
    return gone
