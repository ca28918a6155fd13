"""Labelled data in the catalog: datasets, image tags, objects, labelling jobs and issues.

Every annotation is keyed by **image id** (the content hash), the key search results, collections and
embeddings already use. Filters are then plain SQL over one table each (see :mod:`picsift.query.filters`),
and a file that is moved or copied keeps its labels. Files belong to datasets through
``dataset_items(dataset, path, image_id)``, which records where each dataset's images live (a path
relative to the library root) and is what the exporters read. Two byte-identical files share their
annotations, as they share their embedding.

Methods accept an image as its id, or as a path (absolute, or relative to the library root).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..core.catalog import content_id, looks_like_id
from ..errors import PicsiftError, UnknownImageError, UnsafePathError
from ..safe_paths import check_folder_name, library_path

if TYPE_CHECKING:
    from ..core.catalog import Catalog

#: Statuses an image can have in a labelling job.
JOB_STATUSES = ("pending", "in_progress", "labelled", "in_review", "accepted", "rejected", "skipped")
ISSUE_STATUSES = ("open", "closed")
GEOMETRIES = ("rectangle", "polygon")

ImageKey = str | os.PathLike[str]
TagValue = str | int | float | None


class Metadata:
    """Datasets, tags, objects, jobs and issues of one library (``Library.metadata``).

    Parameters
    ----------
    catalog
        The workspace catalog.
    root
        The library's image folder; paths are stored relative to it.
    """

    def __init__(self, catalog: Catalog, root: Path, *, filter: Callable[..., list[str]] | None = None,
                 export: Callable[[Any, str | os.PathLike[str], str], Path] | None = None):
        self.catalog = catalog
        self.root = Path(root)
        self._filter, self._export = filter, export  # the library's, behind the deprecated names below

    # -- images -----------------------------------------------------------------------------------
    def image_id(self, image: ImageKey) -> str:
        """The id of an image given as an id or a path (the file is hashed when not catalogued yet)."""
        text = os.fspath(image)
        if isinstance(image, str) and looks_like_id(text):
            return text
        relative = self.relative_path(text)
        if relative is not None:
            db = self.catalog.db
            for query in ("SELECT image_id FROM files WHERE path=? AND image_id IS NOT NULL",
                          "SELECT image_id FROM dataset_items WHERE path=?"):
                row = db.execute(query, (relative,)).fetchone()
                if row:
                    return str(row[0])
        for candidate in (Path(text), self.root / text):
            if candidate.is_file():
                return content_id(candidate.read_bytes())
        raise UnknownImageError(f"{text!r} is neither an image id nor an image file (absolute or under {self.root})")

    def relative_path(self, path: str | os.PathLike[str]) -> str | None:
        """``path`` relative to the library root ('/'-separated), or ``None`` when it lies outside."""
        candidate = Path(path)
        if not candidate.is_absolute():
            try:
                library_path(self.root, os.fspath(path))
            except UnsafePathError:
                return None
            return candidate.as_posix()
        try:
            return candidate.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _ids(self, images: ImageKey | Iterable[ImageKey]) -> list[str]:
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        return list(dict.fromkeys(self.image_id(i) for i in images))

    # -- datasets ---------------------------------------------------------------------------------
    def add_dataset(self, name: str, folder: str | None = None, source: dict[str, Any] | None = None) -> int:
        """Create dataset ``name`` (or return the id of the existing one).

        ``name`` is a folder-like name (``cars``, ``project/cars``: no empty, hidden or ``..`` part); ``folder``,
        where its images live, is relative to the library root.
        """
        check_folder_name(name)
        if folder is not None:
            library_path(self.root, folder, what=f"folder of dataset {name!r}")
        with self.catalog.transaction() as db:
            row = db.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
            if row:
                return int(row[0])
            cursor = db.execute(
                "INSERT INTO datasets(name, folder, source, created) VALUES (?, ?, ?, ?)",
                (name, folder, json.dumps(source or {}), time.time()),
            )
            return int(cursor.lastrowid or 0)

    def dataset_names(self) -> list[str]:
        return [r[0] for r in self.catalog.db.execute("SELECT name FROM datasets ORDER BY id")]

    def datasets(self) -> pd.DataFrame:
        """Datasets: name, folder, number of images, where they came from."""
        rows = self.catalog.db.execute(
            "SELECT d.name, d.folder, COUNT(i.path), d.source FROM datasets d"
            " LEFT JOIN dataset_items i ON i.dataset = d.id GROUP BY d.id ORDER BY d.id"
        ).fetchall()
        return pd.DataFrame(rows, columns=["name", "folder", "size", "source"])

    def add_to_dataset(self, dataset: str, path: str, image_id: str | None = None,
                       size: tuple[int, int] | None = None) -> str:
        """Record that the file at ``path`` (under the library root) belongs to ``dataset``; returns its id."""
        relative = self.relative_path(path)
        if relative is None:
            raise PicsiftError(f"{path} is outside the library folder {self.root}")
        image_id = image_id or content_id((self.root / relative).read_bytes())
        dataset_id = self._dataset_id(dataset)
        width, height = size or (None, None)
        self.catalog.db.execute(
            "INSERT OR REPLACE INTO dataset_items(dataset, path, image_id, width, height) VALUES (?, ?, ?, ?, ?)",
            (dataset_id, relative, image_id, width, height),
        )
        return image_id

    def dataset_items(self, dataset: str) -> pd.DataFrame:
        """The images of a dataset: path (relative to the root), id, width, height."""
        rows = self.catalog.db.execute(
            "SELECT path, image_id, width, height FROM dataset_items WHERE dataset=? ORDER BY path",
            (self._dataset_id(dataset),),
        ).fetchall()
        return pd.DataFrame(rows, columns=["path", "id", "width", "height"])

    def _dataset_id(self, name: str) -> int:
        row = self.catalog.db.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
        if row is None:
            raise PicsiftError(f"no dataset named {name!r}; datasets: {', '.join(self.dataset_names()) or '(none)'}")
        return int(row[0])

    # -- tags -------------------------------------------------------------------------------------
    def add_tag(self, image: ImageKey, name: str, value: TagValue = None, author: str | None = None) -> None:
        """Tag an image (a tag may repeat with different values)."""
        _check_text("tag name", name)
        image_id = self.image_id(image)
        self.catalog.db.execute(
            "INSERT INTO image_tags(image_id, name, value, author) VALUES (?, ?, ?, ?)",
            (image_id, name, value, author),
        )

    def remove_tag(self, image: ImageKey, name: str, value: TagValue = None) -> int:
        """Remove tag ``name`` from an image (only with this value, when given); returns how many went."""
        query = "DELETE FROM image_tags WHERE image_id=? AND name=?"
        params: list[TagValue] = [self.image_id(image), name]
        if value is not None:
            query += " AND value=?"
            params.append(value)
        return self.catalog.db.execute(query, params).rowcount

    def tags(self, image: ImageKey) -> list[tuple[str, TagValue]]:
        """An image's tags as ``(name, value)`` pairs."""
        return [tuple(r) for r in self.catalog.db.execute(
            "SELECT name, value FROM image_tags WHERE image_id=? ORDER BY id", (self.image_id(image),))]

    def tag_names(self) -> list[str]:
        """Every image tag name in use."""
        return [r[0] for r in self.catalog.db.execute("SELECT DISTINCT name FROM image_tags ORDER BY name")]

    def tag_values(self, *, objects: bool = False, limit: int = 50) -> dict[str, list[TagValue]]:
        """Every image tag name (object tag names with ``objects``) -> up to ``limit`` of its values,
        as stored (text or numbers, so a value chosen from them matches exactly)."""
        table = "object_tags" if objects else "image_tags"
        values: dict[str, list[TagValue]] = {
            r[0]: [] for r in self.catalog.db.execute(f"SELECT DISTINCT name FROM {table} ORDER BY name")}
        for name, value in self.catalog.db.execute(
                f"SELECT DISTINCT name, value FROM {table} WHERE value IS NOT NULL ORDER BY name, value"):
            if len(values[name]) < limit:
                values[name].append(value)
        return values

    # -- objects ----------------------------------------------------------------------------------
    def add_object(
        self, image: ImageKey, cls: str, *, bbox: Sequence[float] | None = None,
        polygon: Sequence[Sequence[float]] | None = None, tags: Iterable[tuple[str, TagValue]] = (),
        author: str | None = None,
    ) -> int:
        """Add an object of class ``cls``: a ``bbox`` ``(x1, y1, x2, y2)`` or a ``polygon`` ``[(x, y), ...]``
        in pixels. Returns the object's id."""
        _check_text("class", cls)
        if (bbox is None) == (polygon is None):
            raise PicsiftError(f"an object needs exactly one of bbox or polygon (class {cls!r})")
        if bbox is not None:
            if len(bbox) != 4:
                raise PicsiftError(f"bbox must be (x1, y1, x2, y2), got {list(bbox)!r}")
            geometry, points = "rectangle", [[bbox[0], bbox[1]], [bbox[2], bbox[3]]]
        else:
            points = [[float(p[0]), float(p[1])] for p in polygon or []]
            if len(points) < 3:
                raise PicsiftError(f"a polygon needs at least 3 points, got {len(points)}")
            geometry = "polygon"
        return self._insert_object(self.image_id(image), cls, geometry, points, list(tags), author)

    def _insert_object(self, image_id: str, cls: str, geometry: str, points: list[list[float]],
                       tags: list[tuple[str, TagValue]], author: str | None) -> int:
        if geometry not in GEOMETRIES:
            raise PicsiftError(f"geometry {geometry!r}; valid choices: {', '.join(GEOMETRIES)}")
        db = self.catalog.db
        cursor = db.execute(
            "INSERT INTO objects(image_id, class, geometry, points, author) VALUES (?, ?, ?, ?, ?)",
            (image_id, cls, geometry, json.dumps([[float(x), float(y)] for x, y in points]), author),
        )
        object_id = int(cursor.lastrowid or 0)
        db.executemany("INSERT INTO object_tags(object, name, value) VALUES (?, ?, ?)",
                       [(object_id, n, v) for n, v in tags])
        return object_id

    def tag_object(self, object_id: int, name: str, value: TagValue = None, author: str | None = None) -> None:
        """Tag an object."""
        _check_text("tag name", name)
        self._check_object(object_id)
        self.catalog.db.execute("INSERT INTO object_tags(object, name, value, author) VALUES (?, ?, ?, ?)",
                                (object_id, name, value, author))

    def remove_object(self, object_id: int) -> None:
        self._check_object(object_id)
        self.catalog.db.execute("DELETE FROM objects WHERE id=?", (object_id,))

    def _check_object(self, object_id: int) -> None:
        if not self.catalog.db.execute("SELECT 1 FROM objects WHERE id=?", (object_id,)).fetchone():
            raise PicsiftError(f"no object with id {object_id!r}")

    def objects(self, image: ImageKey | None = None) -> pd.DataFrame:
        """Objects (of one image, or all): id, image id, class, geometry, points, author, tags."""
        query = "SELECT id, image_id, class, geometry, points, author FROM objects"
        params: tuple[str, ...] = ()
        if image is not None:
            query, params = query + " WHERE image_id=?", (self.image_id(image),)
        rows = self.catalog.db.execute(query + " ORDER BY id", params).fetchall()
        tags: dict[int, list[tuple[str, TagValue]]] = {}
        if rows:
            ids = [r[0] for r in rows]
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                for object_id, name, value in self.catalog.db.execute(
                    f"SELECT object, name, value FROM object_tags WHERE object IN ({','.join('?' * len(chunk))})"
                    " ORDER BY rowid", chunk,
                ):
                    tags.setdefault(object_id, []).append((name, value))
        return pd.DataFrame({
            "id": [r[0] for r in rows],
            "image_id": [r[1] for r in rows],
            "class": [r[2] for r in rows],
            "geometry": [r[3] for r in rows],
            "points": [json.loads(r[4]) for r in rows],
            "author": [r[5] for r in rows],
            "tags": [tags.get(r[0], []) for r in rows],
        })

    def object_tag_names(self) -> list[str]:
        """Every object tag name in use."""
        return [r[0] for r in self.catalog.db.execute("SELECT DISTINCT name FROM object_tags ORDER BY name")]

    def authors(self) -> list[str]:
        """Everyone who made an object (labeller logins)."""
        return [r[0] for r in self.catalog.db.execute(
            "SELECT DISTINCT author FROM objects WHERE author IS NOT NULL ORDER BY author")]

    def set_classes(self, classes: Iterable[tuple[str, str, str | None]]) -> None:
        """Declare object classes as ``(name, shape, color)``; shapes are rectangle, polygon or any."""
        self.catalog.db.executemany("INSERT OR REPLACE INTO classes(name, shape, color) VALUES (?, ?, ?)",
                                    list(classes))

    def classes(self) -> list[tuple[str, str, str | None]]:
        """Declared classes, then classes only seen on objects (shape ``any``)."""
        declared = [tuple(r) for r in self.catalog.db.execute("SELECT name, shape, color FROM classes ORDER BY rowid")]
        known = {r[0] for r in declared}
        seen = [r[0] for r in self.catalog.db.execute("SELECT DISTINCT class FROM objects ORDER BY class")]
        return declared + [(c, "any", None) for c in seen if c not in known]

    # -- jobs -------------------------------------------------------------------------------------
    def create_job(self, name: str, images: Iterable[ImageKey] = (), description: str | None = None) -> None:
        """Create labelling job ``name`` (if missing) with these images as pending."""
        _check_text("job name", name)
        self.catalog.db.execute("INSERT OR IGNORE INTO jobs(name, description, created) VALUES (?, ?, ?)",
                                (name, description, time.time()))
        ids = self._ids(list(images) if not isinstance(images, (str, os.PathLike)) else images)
        self.catalog.db.executemany(
            "INSERT OR IGNORE INTO job_items(job, image_id, status, updated) VALUES (?, ?, 'pending', ?)",
            [(name, i, time.time()) for i in ids],
        )

    def set_status(self, job: str, images: ImageKey | Iterable[ImageKey], status: str) -> None:
        """Set the status of images in a job (created if missing); see :data:`JOB_STATUSES`."""
        check_status(status)
        ids = self._ids(images)
        with self.catalog.transaction() as db:
            db.execute("INSERT OR IGNORE INTO jobs(name, created) VALUES (?, ?)", (job, time.time()))
            db.executemany("INSERT OR REPLACE INTO job_items(job, image_id, status, updated) VALUES (?, ?, ?, ?)",
                           [(job, i, status, time.time()) for i in ids])

    def job_status(self, job: str) -> dict[str, str]:
        """Each image's status in ``job``."""
        if not self.catalog.db.execute("SELECT 1 FROM jobs WHERE name=?", (job,)).fetchone():
            raise PicsiftError(f"no labelling job named {job!r}; jobs: {', '.join(self.job_names()) or '(none)'}")
        return dict(self.catalog.db.execute("SELECT image_id, status FROM job_items WHERE job=?", (job,)).fetchall())

    def job_names(self) -> list[str]:
        return [r[0] for r in self.catalog.db.execute("SELECT name FROM jobs ORDER BY created")]

    # -- issues -----------------------------------------------------------------------------------
    def open_issue(self, image: ImageKey, text: str, author: str | None = None) -> int:
        """Attach an open issue to an image; returns its id."""
        _check_text("issue text", text)
        cursor = self.catalog.db.execute(
            "INSERT INTO issues(image_id, text, status, author, created) VALUES (?, ?, 'open', ?, ?)",
            (self.image_id(image), text, author, time.time()),
        )
        return int(cursor.lastrowid or 0)

    def close_issue(self, issue_id: int) -> None:
        if not self.catalog.db.execute("UPDATE issues SET status='closed' WHERE id=?", (issue_id,)).rowcount:
            raise PicsiftError(f"no issue with id {issue_id!r}")

    def issues(self, image: ImageKey | None = None, status: str | None = None) -> pd.DataFrame:
        """Issues (of one image, with one status, or all): id, image id, text, status, author."""
        if status is not None and status not in ISSUE_STATUSES:
            raise PicsiftError(f"issue status {status!r}; valid choices: {', '.join(ISSUE_STATUSES)}")
        query, params = "SELECT id, image_id, text, status, author FROM issues WHERE 1=1", []
        if image is not None:
            query += " AND image_id=?"
            params.append(self.image_id(image))
        if status is not None:
            query += " AND status=?"
            params.append(status)
        rows = self.catalog.db.execute(query + " ORDER BY id", params).fetchall()
        return pd.DataFrame(rows, columns=["id", "image_id", "text", "status", "author"])

    # -- orphans ----------------------------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Ids with labels but no file or dataset item any more (files removed outside picsift).

        They are kept on purpose: a folder moved away and back gets its labels back. See :meth:`prune`.
        """
        held = "SELECT image_id FROM files WHERE image_id IS NOT NULL UNION SELECT image_id FROM dataset_items"
        labelled = " UNION ".join(f"SELECT image_id FROM {t}" for t in ("image_tags", "objects", "job_items", "issues"))
        return [r[0] for r in self.catalog.db.execute(
            f"SELECT image_id FROM ({labelled}) WHERE image_id NOT IN ({held}) ORDER BY image_id")]

    def prune(self) -> int:
        """Delete the labels of :meth:`orphans`; returns how many images lost their labels."""
        from ..core.files import forget_images

        with self.catalog.transaction() as db:
            return len(forget_images(db, self.orphans()))

    # -- filters, import, export ------------------------------------------------------------------
    def labelled(self) -> set[str]:
        """Ids of the images with objects or image tags."""
        rows = self.catalog.db.execute("SELECT image_id FROM objects UNION SELECT image_id FROM image_tags")
        return {r[0] for r in rows}

    def filter(self, *filters: Any, within: Any = None) -> list[str]:
        """Deprecated: ``Library.filter(*filters, within=...).ids`` (one ``filter``, returning an image set)."""
        warnings.warn("Library.labels.filter(...) is now Library.filter(..., within=...).ids", DeprecationWarning,
                      stacklevel=2)
        if self._filter is None:
            raise PicsiftError("filter with Library.filter(...); these labels belong to no library")
        return self._filter(*filters, within=within)

    def import_project(self, source: str | os.PathLike[str], format: str, *, target: str | None = None,
                       copy: bool = True) -> list[str]:
        """Import a labelled project; returns the names of the datasets it made.

        Parameters
        ----------
        source
            The project folder (COCO: a folder or one instances JSON file).
        format
            "supervisely", "coco" or "yolo" (see :mod:`picsift.labels.formats`).
        target
            Folder under the library root for the images (default: the project folder's name); each
            dataset gets a subfolder. Images already under the library root stay where they are. A
            target or dataset name with an empty, hidden or ``..`` part, or an absolute one, is refused.

        The project folder is untrusted input: only regular files inside it (after resolving links) are
        read, and a malformed or escaping entry raises :class:`~picsift.errors.PicsiftError` naming the
        file and entry before anything is copied (see :mod:`picsift.labels.formats`).
        copy
            ``False`` refuses projects whose images are not already under the library root.

        Run ``Library.update()`` afterwards to embed the new images.
        """
        from .formats import import_project

        return import_project(self, Path(source), format, target=target, copy=copy)

    def export(self, images: Any, out: str | os.PathLike[str], format: str) -> Path:
        """Deprecated: ``Library.export(images, out, format)`` (the one ``export``, tables and projects)."""
        warnings.warn("Library.labels.export(...) is now Library.export(...)", DeprecationWarning, stacklevel=2)
        if self._export is None:
            raise PicsiftError("export with Library.export(...); these labels belong to no library")
        return self._export(images, out, format)

    # -- colouring a map by a field -----------------------------------------------------------------
    def color_fields(self) -> list[str]:
        """Fields :meth:`field_values` can read: ``dataset``, ``class`` (each image's most frequent
        object class), ``author`` (who made most of its objects), ``issues`` (open or not), then
        ``tag:<name>`` for each image tag and ``job:<name>`` for each labelling job (the status)."""
        return (["dataset", "class", "author", "issues"] + [f"tag:{n}" for n in self.tag_names()]
                + [f"job:{n}" for n in self.job_names()])

    def field_values(self, field: str, ids: Iterable[str]) -> list[str]:
        """Each image's value of ``field`` (one of :meth:`color_fields`) as a label, in the order of
        ``ids``; images without a value get a label in parentheses, e.g. ``(no objects)``."""
        db = self.catalog.db
        kind, _, name = field.partition(":")
        if field == "dataset":
            found = dict(db.execute("SELECT t.image_id, MIN(d.name) FROM dataset_items t"
                                    " JOIN datasets d ON d.id = t.dataset GROUP BY t.image_id").fetchall())
            missing = "(no dataset)"
        elif field in ("class", "author"):
            column = "class" if field == "class" else "COALESCE(author, '(unknown author)')"
            found = {}
            for image_id, value, _n in db.execute(f"SELECT image_id, {column}, COUNT(*) FROM objects"
                                                  " GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"):
                found.setdefault(image_id, str(value))  # each image's rows come most frequent first
            missing = "(no objects)"
        elif field == "issues":
            found = {r[0]: "open issues"
                     for r in db.execute("SELECT DISTINCT image_id FROM issues WHERE status='open'")}
            missing = "(no open issue)"
        elif kind == "tag" and name in self.tag_names():
            found = {}
            for image_id, value in db.execute("SELECT image_id, value FROM image_tags WHERE name=? ORDER BY id",
                                              (name,)):
                found.setdefault(image_id, name if value is None else f"{name}={value}")
            missing = f"(no {name})"
        elif kind == "job" and name in self.job_names():
            found = dict(db.execute("SELECT image_id, status FROM job_items WHERE job=?", (name,)).fetchall())
            missing = "(not in job)"
        else:
            raise PicsiftError(f"unknown field {field!r}; fields: {', '.join(self.color_fields())}")
        return [found.get(str(i), missing) for i in ids]


def check_status(status: str) -> None:
    if status not in JOB_STATUSES:
        raise PicsiftError(f"job status {status!r}; valid choices: {', '.join(JOB_STATUSES)}")


def _check_text(what: str, text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise PicsiftError(f"invalid {what} {text!r}: it must be a non-empty string")
