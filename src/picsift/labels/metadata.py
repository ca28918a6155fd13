"""Labelled data in the catalog: datasets, image tags, objects, labelling jobs and issues.

Every annotation is keyed by **image id** (the content hash), the key search results, collections and
embeddings already use. Filters are then one indexed query over one table each (see
:mod:`picsift.query.filters`), and a file that is moved or copied keeps its labels. Files belong to datasets through
``dataset_items(dataset, path, image_id)``, which records where each dataset's images live (a path
relative to the library root) and is what the exporters read. Two byte-identical files share their
annotations, as they share their embedding.

Methods accept an image as its id, or as a path (absolute, or relative to the library root). What they
write goes through the checks of :mod:`picsift.labels.checks` (imported projects go through the same ones);
the rows themselves are read and written by :class:`picsift.core.catalog.labels.LabelTables`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..core.catalog import content_id, looks_like_id
from ..core.catalog.labels import forget_images
from ..errors import PicsiftError, UnknownImageError, UnsafePathError
from ..safe_paths import check_folder_name, library_path
from . import formats
from .checks import (  # noqa: F401  (the statuses and check_status are part of this module's API)
    GEOMETRIES,
    ISSUE_STATUSES,
    JOB_STATUSES,
    TagValue,
    check_author,
    check_object,
    check_status,
    check_tag,
    check_tags,
    check_text,
)

if TYPE_CHECKING:
    from ..core.catalog import Catalog

ImageKey = str | os.PathLike[str]


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
        self.root = Path(root) if isinstance(root, (str, os.PathLike)) else root  # a URL's path (core.storage)
        self._filter, self._export = filter, export  # the library's, behind the deprecated names below

    # -- images -----------------------------------------------------------------------------------
    def image_id(self, image: ImageKey) -> str:
        """The id of an image given as an id or a path (the file is hashed when not catalogued yet)."""
        text = os.fspath(image)
        if isinstance(image, str) and looks_like_id(text):
            return text
        relative = self.relative_path(text)
        found = None if relative is None else self.catalog.file_table.image_id_at(relative)
        if found is not None:
            return found
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
        return self.catalog.labels.add_dataset(name, folder, source or {})

    def dataset_names(self) -> list[str]:
        return self.catalog.labels.dataset_names()

    def datasets(self) -> pd.DataFrame:
        """Datasets: name, folder, number of images, where they came from."""
        return pd.DataFrame(self.catalog.labels.datasets(), columns=["name", "folder", "size", "source"])

    def add_to_dataset(self, dataset: str, path: str, image_id: str | None = None,
                       size: tuple[int, int] | None = None) -> str:
        """Record that the file at ``path`` (under the library root) belongs to ``dataset``; returns its id."""
        relative = self.relative_path(path)
        if relative is None:
            raise PicsiftError(f"{path} is outside the library folder {self.root}")
        image_id = image_id or content_id((self.root / relative).read_bytes())
        dataset_id = self._dataset_id(dataset)
        width, height = size or (None, None)
        self.catalog.labels.add_dataset_item(dataset_id, relative, image_id, width, height)
        return image_id

    def dataset_items(self, dataset: str) -> pd.DataFrame:
        """The images of a dataset: path (relative to the root), id, width, height."""
        rows = self.catalog.labels.dataset_items(self._dataset_id(dataset))
        return pd.DataFrame(rows, columns=["path", "id", "width", "height"])

    def _dataset_id(self, name: str) -> int:
        found = self.catalog.labels.dataset_id(name)
        if found is None:
            raise PicsiftError(f"no dataset named {name!r}; datasets: {', '.join(self.dataset_names()) or '(none)'}")
        return found

    # -- tags -------------------------------------------------------------------------------------
    def add_tag(self, image: ImageKey, name: str, value: TagValue = None, author: str | None = None) -> None:
        """Tag an image (a tag may repeat with different values): a value is text, a finite number or None."""
        check_tag(name, value)
        check_author(author)
        self.catalog.labels.add_tag(self.image_id(image), name, value, author)

    def remove_tag(self, image: ImageKey, name: str, value: TagValue = None) -> int:
        """Remove tag ``name`` from an image (only with this value, when given); returns how many went."""
        return self.catalog.labels.remove_tags(self.image_id(image), name, value)

    def tags(self, image: ImageKey) -> list[tuple[str, TagValue]]:
        """An image's tags as ``(name, value)`` pairs."""
        return self.catalog.labels.tags(self.image_id(image))

    def tag_names(self) -> list[str]:
        """Every image tag name in use."""
        return self.catalog.labels.tag_names()

    def tag_values(self, *, objects: bool = False, limit: int = 50) -> dict[str, list[TagValue]]:
        """Every image tag name (object tag names with ``objects``) -> up to ``limit`` of its values,
        as stored (text or numbers, so a value chosen from them matches exactly)."""
        values: dict[str, list[TagValue]] = {name: [] for name in self.catalog.labels.tag_names(objects=objects)}
        for name, value in self.catalog.labels.tag_values(objects=objects):
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
        if (bbox is None) == (polygon is None):
            raise PicsiftError(f"an object needs exactly one of bbox or polygon (class {cls!r})")
        if bbox is not None:
            if len(bbox) != 4:
                raise PicsiftError(f"bbox must be (x1, y1, x2, y2), got {list(bbox)!r}")
            geometry, points = "rectangle", [[bbox[0], bbox[1]], [bbox[2], bbox[3]]]
        else:
            points = [[p[0], p[1]] for p in polygon or []]
            if len(points) < 3:
                raise PicsiftError(f"a polygon needs at least 3 points, got {len(points)}")
            geometry = "polygon"
        return self._insert_object(self.image_id(image), cls, geometry, points, tags, author)

    def _insert_object(self, image_id: str, cls: str, geometry: str, points: Sequence[Sequence[float]],
                       tags: Iterable[tuple[str, TagValue]], author: str | None, about: str = "") -> int:
        """Check an object (the API's and the importers' one way in) and insert it; returns its id."""
        checked = check_object(cls, geometry, points, about)
        checked_tags = check_tags(tags, f"{about}object of class {cls!r}: ")
        check_author(author, about)
        return self.catalog.labels.add_object(image_id, cls, geometry, checked, checked_tags, author)

    def tag_object(self, object_id: int, name: str, value: TagValue = None, author: str | None = None) -> None:
        """Tag an object."""
        check_tag(name, value)
        check_author(author)
        self._check_object(object_id)
        self.catalog.labels.tag_object(object_id, name, value, author)

    def remove_object(self, object_id: int) -> None:
        self._check_object(object_id)
        self.catalog.labels.remove_object(object_id)

    def set_object_class(self, object_id: int, cls: str) -> None:
        """Give object ``object_id`` (its catalog id, ``objects()["id"]``) the class ``cls``; its box, tags and
        embedding stay (an object's embedding depends on its image and box only)."""
        object_id = int(object_id)  # a numpy integer from a table is fine
        self._check_object(object_id)
        check_text(cls, "object class")
        self.catalog.labels.set_object_class(object_id, cls)

    def _check_object(self, object_id: int) -> None:
        if not self.catalog.labels.has_object(object_id):
            raise PicsiftError(f"no object with id {object_id!r}")

    def objects(self, image: ImageKey | None = None) -> pd.DataFrame:
        """Objects (of one image, or all): id, image id, class, geometry, points, author, tags."""
        rows = self.catalog.labels.objects(None if image is None else self.image_id(image))
        columns = ["id", "image_id", "class", "geometry", "points", "author", "tags"]
        return pd.DataFrame({name: [r[i] for r in rows] for i, name in enumerate(columns)})

    def object_tag_names(self) -> list[str]:
        """Every object tag name in use."""
        return self.catalog.labels.tag_names(objects=True)

    def authors(self) -> list[str]:
        """Everyone who made an object (labeller logins)."""
        return self.catalog.labels.authors()

    def set_classes(self, classes: Iterable[tuple[str, str, str | None]]) -> None:
        """Declare object classes as ``(name, shape, color)``; shapes are rectangle, polygon or any."""
        classes = list(classes)
        for name, shape, color in classes:
            check_text(name, "class name")
            check_text(shape, f"shape of class {name!r}")
            if color is not None:
                check_text(color, f"color of class {name!r}")
        self.catalog.labels.set_classes(classes)

    def declare(self, classes: Iterable[tuple[str, str]] = (), tag_types: Iterable[tuple[str, str]] = ()) -> None:
        """Declare object classes ``(name, shape)`` and tag value types ``(name, value_type)`` that are not
        declared yet (declared ones keep theirs), as importers do; nothing is written if one is invalid."""
        classes, tag_types = list(classes), list(tag_types)
        for name, shape in classes:
            check_text(name, "class name")
            check_text(shape, f"shape of class {name!r}")
        for name, value_type in tag_types:
            check_text(name, "tag name")
            check_text(value_type, f"value type of tag {name!r}")
        self.catalog.labels.add_classes(classes)
        self.catalog.labels.add_tag_types(tag_types)

    def classes(self) -> list[tuple[str, str, str | None]]:
        """Declared classes, then classes only seen on objects (shape ``any``)."""
        declared = self.catalog.labels.declared_classes()
        known = {r[0] for r in declared}
        return declared + [(c, "any", None) for c in self.catalog.labels.object_classes() if c not in known]

    # -- jobs -------------------------------------------------------------------------------------
    def create_job(self, name: str, images: Iterable[ImageKey] = (), description: str | None = None) -> None:
        """Create labelling job ``name`` (if missing) with these images as pending."""
        check_text(name, "job name")
        ids = self._ids(list(images) if not isinstance(images, (str, os.PathLike)) else images)
        self.catalog.labels.create_job(name, description, ids)

    def set_status(self, job: str, images: ImageKey | Iterable[ImageKey], status: str) -> None:
        """Set the status of images in a job (created if missing); see :data:`JOB_STATUSES`."""
        check_text(job, "job name")
        check_status(status)
        self.catalog.labels.set_status(job, self._ids(images), status)

    def job_status(self, job: str) -> dict[str, str]:
        """Each image's status in ``job``."""
        if not self.catalog.labels.has_job(job):
            raise PicsiftError(f"no labelling job named {job!r}; jobs: {', '.join(self.job_names()) or '(none)'}")
        return self.catalog.labels.job_status(job)

    def job_names(self) -> list[str]:
        return self.catalog.labels.job_names()

    # -- issues -----------------------------------------------------------------------------------
    def open_issue(self, image: ImageKey, text: str, author: str | None = None) -> int:
        """Attach an open issue to an image; returns its id."""
        check_text(text, "issue text")
        check_author(author)
        return self.catalog.labels.open_issue(self.image_id(image), text, author)

    def close_issue(self, issue_id: int) -> None:
        if not self.catalog.labels.close_issue(issue_id):
            raise PicsiftError(f"no issue with id {issue_id!r}")

    def issues(self, image: ImageKey | None = None, status: str | None = None) -> pd.DataFrame:
        """Issues (of one image, with one status, or all): id, image id, text, status, author."""
        if status is not None and status not in ISSUE_STATUSES:
            raise PicsiftError(f"issue status {status!r}; valid choices: {', '.join(ISSUE_STATUSES)}")
        rows = self.catalog.labels.issues(None if image is None else self.image_id(image), status)
        return pd.DataFrame(rows, columns=["id", "image_id", "text", "status", "author"])

    # -- orphans ----------------------------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Ids with labels but no file or dataset item any more (files removed outside picsift).

        They are kept on purpose: a folder moved away and back gets its labels back. See :meth:`prune`.
        """
        return self.catalog.labels.orphans()

    def prune(self) -> int:
        """Delete the labels of :meth:`orphans`; returns how many images lost their labels."""
        with self.catalog.transaction() as db:
            return len(forget_images(db, self.orphans()))

    # -- filters, import, export ------------------------------------------------------------------
    def labelled(self) -> set[str]:
        """Ids of the images with objects or image tags."""
        return self.catalog.labels.labelled_ids()

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
            The project folder (COCO, CVAT, Label Studio: a folder or its one annotation file; ``hf``: a
            folder written by ``datasets``' ``save_to_disk``).
        format
            "supervisely", "coco", "yolo", "voc", "cvat", "labelstudio" or "hf" (see
            :mod:`picsift.labels.formats`).
        target
            Folder under the library root for the images (default: the project folder's name); each
            dataset gets a subfolder. Images already under the library root stay where they are. A
            target or dataset name with an empty, hidden or ``..`` part, or an absolute one, is refused.

        The project folder is untrusted input: only regular files inside it (after resolving links) are
        read, and a malformed or escaping entry raises :class:`~picsift.errors.PicsiftError` naming the
        file and entry before anything is copied (see :mod:`picsift.labels.formats`). Labels go through
        the checks of this API: one it would refuse (a tag value that is a list, a corner that is NaN) is
        skipped with a warning naming the file, the image and the value, and the rest is imported.
        copy
            ``False`` refuses projects whose images are not already under the library root.

        Run ``Library.update()`` afterwards to embed the new images.
        """
        return formats.import_project(self, Path(source), format, target=target, copy=copy)

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
        summaries = self.catalog.summaries
        kind, _, name = field.partition(":")
        if field == "dataset":
            found = summaries.first_dataset()
            missing = "(no dataset)"
        elif field in ("class", "author"):
            found = summaries.most_frequent_object(by_author=field == "author")
            missing = "(no objects)"
        elif field == "issues":
            found = dict.fromkeys(summaries.with_open_issues(), "open issues")
            missing = "(no open issue)"
        elif kind == "tag" and name in self.tag_names():
            found = {}
            for image_id, value in self.catalog.labels.tagged(name):
                found.setdefault(image_id, name if value is None else f"{name}={value}")
            missing = f"(no {name})"
        elif kind == "job" and name in self.job_names():
            found = self.catalog.labels.job_status(name)
            missing = "(not in job)"
        else:
            raise PicsiftError(f"unknown field {field!r}; fields: {', '.join(self.color_fields())}")
        return [found.get(str(i), missing) for i in ids]
