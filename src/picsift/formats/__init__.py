"""Labelled project formats in and out: Supervisely, COCO and YOLO, one module each.

Every format module has ``read(source) -> Project`` and ``write(project, out)``; this module does the
rest for all of them: placing imported images under the library root and recording their annotations
in the catalog (:func:`import_project`), and gathering images with their annotations for export
(:func:`export_project`). A project holds several datasets (Supervisely datasets, COCO instance files,
YOLO splits).
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import content_id
from ..errors import PicsiftError

if TYPE_CHECKING:
    from ..metadata import Metadata, TagValue

log = logging.getLogger(__name__)

FORMATS = ("supervisely", "coco", "yolo")


@dataclass
class ObjectRecord:
    """One object: class, geometry (rectangle or polygon), pixel points, tags and author."""

    cls: str
    geometry: str
    points: list[list[float]]
    tags: list[tuple[str, TagValue]] = field(default_factory=list)
    author: str | None = None

    def bbox(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class ItemRecord:
    """One image of a dataset: its file, size, tags and objects."""

    name: str  # file name inside the dataset
    source: Path  # where the image file is now
    width: int | None = None
    height: int | None = None
    tags: list[tuple[str, TagValue]] = field(default_factory=list)
    objects: list[ObjectRecord] = field(default_factory=list)


@dataclass
class DatasetRecord:
    name: str
    items: list[ItemRecord] = field(default_factory=list)


@dataclass
class Project:
    """A labelled project: datasets, declared classes ``{name: shape}`` and tag value types ``{name: type}``."""

    name: str
    datasets: list[DatasetRecord] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)
    tag_types: dict[str, str] = field(default_factory=dict)

    def class_names(self) -> list[str]:
        """Declared classes, then any only seen on objects, in first-seen order."""
        names = dict.fromkeys(self.classes)
        for dataset in self.datasets:
            for item in dataset.items:
                names.update(dict.fromkeys(o.cls for o in item.objects))
        return list(names)


def format_module(name: str) -> Any:
    if name not in FORMATS:
        raise PicsiftError(f"unknown format {name!r}; valid choices: {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{name}")


def import_project(meta: Metadata, source: Path, format: str, *, target: str | None = None,
                   copy: bool = True) -> list[str]:
    """Read a project with the format's reader and record it; see :meth:`Metadata.import_project`."""
    module = format_module(format)
    if not source.exists():
        raise PicsiftError(f"{format} project {source} does not exist")
    project: Project = module.read(source)
    folder = target or project.name
    names = []
    for dataset in project.datasets:
        name = dataset_folder = f"{folder}/{dataset.name}"  # the project's name keeps dataset names unique
        placed = [(item, _place(meta, item.source, dataset_folder, item.name, copy)) for item in dataset.items]
        meta.add_dataset(name, dataset_folder, {"format": format, "project": str(source)})
        with meta.catalog.transaction():
            for item, relative in placed:
                image_id = meta.add_to_dataset(name, relative, size=_size(item))
                for tag_name, value in item.tags:
                    meta.catalog.db.execute("INSERT INTO image_tags(image_id, name, value) VALUES (?, ?, ?)",
                                            (image_id, tag_name, value))
                for obj in item.objects:
                    meta._insert_object(image_id, obj.cls, obj.geometry, obj.points, obj.tags, obj.author)
        names.append(name)
    with meta.catalog.transaction() as db:
        db.executemany("INSERT OR IGNORE INTO classes(name, shape) VALUES (?, ?)",
                       [(c, project.classes.get(c, "any")) for c in project.class_names()])
        db.executemany("INSERT OR IGNORE INTO tag_names(name, value_type) VALUES (?, ?)", project.tag_types.items())
    return names


def _size(item: ItemRecord) -> tuple[int, int] | None:
    return (item.width, item.height) if item.width and item.height else None


def _place(meta: Metadata, source: Path, folder: str, name: str, copy: bool) -> str:
    """Put an image under the library root (unless it is there already); returns its relative path."""
    if not source.is_file():
        raise PicsiftError(f"image {source} named by the annotations does not exist")
    relative = meta.relative_path(source.resolve())
    if relative is not None:
        return relative
    if not copy:
        raise PicsiftError(f"{source} is outside the library folder {meta.root}; import with copy=True")
    target = meta.root / folder / name
    if target.exists() and content_id(target.read_bytes()) != content_id(source.read_bytes()):
        raise PicsiftError(f"{target} exists with other content; import into another target folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(source, target)
    return f"{folder}/{name}"


def gather(meta: Metadata, ids: list[str]) -> Project:
    """The images ``ids`` with their annotations, grouped by the dataset each file belongs to.

    An image in several datasets is exported from the first; images in no dataset come from the
    library's files, in a dataset named ``images``.
    """
    db = meta.catalog.db
    wanted = list(dict.fromkeys(ids))
    datasets: dict[str, DatasetRecord] = {}
    used_names: dict[str, set[str]] = {}
    for image_id in wanted:
        row = db.execute(
            "SELECT d.name, i.path, i.width, i.height FROM dataset_items i JOIN datasets d ON d.id = i.dataset"
            " WHERE i.image_id=? ORDER BY d.id, i.path LIMIT 1", (image_id,),
        ).fetchone()
        if row is None:
            row = db.execute("SELECT 'images', MIN(path), width, height FROM files WHERE image_id=?",
                             (image_id,)).fetchone()
        if row is None or row[1] is None:
            raise PicsiftError(f"image {image_id} is not in this library's files or datasets")
        dataset_name, path, width, height = row
        dataset_name = dataset_name.rsplit("/", 1)[-1]  # without the project it was imported from
        name = Path(path).name
        taken = used_names.setdefault(dataset_name, set())
        if name in taken:  # two files of one name from different folders
            name = f"{image_id[:8]}_{name}"
        taken.add(name)
        item = ItemRecord(name, meta.root / path, width, height)
        if not (width and height):
            item.width, item.height = image_size(item.source)
        item.tags = [tuple(r) for r in db.execute(
            "SELECT name, value FROM image_tags WHERE image_id=? ORDER BY id", (image_id,))]
        objects = meta.objects(image_id)
        item.objects = [ObjectRecord(o["class"], o["geometry"], o["points"], list(o["tags"]), o["author"])
                        for o in objects.to_dict("records")]
        datasets.setdefault(dataset_name, DatasetRecord(dataset_name)).items.append(item)
    classes = {r[0]: r[1] for r in db.execute("SELECT name, shape FROM classes ORDER BY rowid")}
    tag_types = dict(db.execute("SELECT name, value_type FROM tag_names").fetchall())
    return Project("export", list(datasets.values()), classes, tag_types)


def export_project(meta: Metadata, ids: list[str], out: Path, format: str) -> Path:
    """Write images with their annotations as a project in ``format`` at ``out`` (a folder)."""
    module = format_module(format)
    if out.exists() and any(out.iterdir()):
        raise PicsiftError(f"export folder {out} is not empty; choose a new one")
    project = gather(meta, ids)
    project.name = out.name
    out.mkdir(parents=True, exist_ok=True)
    module.write(project, out)
    return out


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PicsiftError(f"cannot read {path}: {e}") from e


def copy_image(item: ItemRecord, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(item.source, folder / item.name)


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except OSError as e:
        raise PicsiftError(f"cannot read image {path}: {e}") from e
