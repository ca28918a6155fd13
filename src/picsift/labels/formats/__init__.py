"""Labelled project formats in and out: Supervisely, COCO, YOLO, Pascal VOC, CVAT, Label Studio and Hugging Face
datasets, one module each.

Every format module has ``read(source) -> Project`` and ``write(project, out)``; this module does the
rest for all of them: placing imported images under the library root and recording their annotations
in the catalog (:func:`import_project`), and gathering images with their annotations for export
(:func:`export_project`). A project holds several datasets (Supervisely datasets, COCO instance files,
YOLO splits).

A project folder is untrusted input: readers open only regular files inside it (links are resolved, see
:func:`picsift.safe_paths.project_file`), turn any malformed entry into a :class:`PicsiftError` naming the
file and the entry (:func:`reading`), and :func:`check_project` checks the names and sizes of what they
collected before anything is written. Every path written into the library or an export goes through
:func:`picsift.safe_paths.library_path`.

Labels are recorded through the :class:`~picsift.labels.metadata.Metadata` API, so they pass the checks of
:mod:`picsift.labels.checks` like any other: a tag, object or class the API would refuse is skipped with a
warning naming the file, the image and the value, and the rest of the project is imported.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.catalog import content_id
from ...core.objects import bounding_box, object_id
from ...errors import PicsiftError
from ...safe_paths import check_folder_name, library_path
from ..checks import TagValue, short

if TYPE_CHECKING:
    from ..metadata import Metadata

log = logging.getLogger(__name__)

FORMATS = ("supervisely", "coco", "yolo", "voc", "cvat", "labelstudio", "hf")


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
    annotations: Path | None = None  # the file its tags and objects were read from
    load: Callable[[], bytes] | None = None  # the image's bytes, when they are not a file (a dataset's column)


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
    meta_file: Path | None = None  # the file declaring the classes and tag types, when there is one

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
    source = Path(os.path.abspath(source))  # "." becomes the folder's own name
    if not source.exists():
        raise PicsiftError(f"{format} project {source} does not exist")
    project: Project = module.read(source)
    check_project(project, source)
    folder = check_folder_name(project.name if target is None else target, "import target folder")
    names = [check_folder_name(f"{folder}/{d.name}") for d in project.datasets]  # the project keeps them unique
    seen: dict[str, None] = {}  # classes of the objects recorded, in first-seen order
    for name, dataset in zip(names, project.datasets, strict=True):
        placed = [(item, _place(meta, item, name, copy)) for item in dataset.items]
        meta.add_dataset(name, name, {"format": format, "project": str(source)})
        with meta.catalog.transaction():
            for item, relative in placed:
                image_id = meta.add_to_dataset(name, relative, size=_size(item))
                seen.update(dict.fromkeys(_record_labels(meta, image_id, item, source)))
    declared = project.meta_file or source
    classes = [(c, project.classes.get(c, "any")) for c in {**dict.fromkeys(project.classes), **seen}]
    with meta.catalog.transaction():
        for cls in classes:
            _declare(meta.declare, declared, classes=[cls])
        for tag_type in project.tag_types.items():
            _declare(meta.declare, declared, tag_types=[tag_type])
    return names


def _declare(declare: Any, where: Path, **what: Any) -> None:
    try:
        declare(**what)
    except PicsiftError as e:
        log.warning("%s: %s; skipped it", where, e)


def _record_labels(meta: Metadata, image_id: str, item: ItemRecord, source: Path) -> list[str]:
    """Record an item's tags and objects through the API; what it refuses is skipped with a warning naming
    the file, the image and the value. Returns the classes of the objects recorded."""
    about = f"{item.annotations or source}: image {item.name!r}"
    for tag_name, value in item.tags:
        try:
            meta.add_tag(image_id, tag_name, value)
        except PicsiftError as e:
            log.warning("%s: %s; skipped it", about, e)
    classes = []
    for obj in item.objects:
        try:
            meta._insert_object(image_id, obj.cls, obj.geometry, obj.points, obj.tags, obj.author)
        except PicsiftError as e:
            log.warning("%s: %s; skipped it", about, e)
        else:
            classes.append(obj.cls)
    return classes


def _size(item: ItemRecord) -> tuple[int, int] | None:
    return (item.width, item.height) if item.width and item.height else None


def _place(meta: Metadata, item: ItemRecord, folder: str, copy: bool) -> str:
    """Put an image under the library root (unless it is there already); returns its relative path."""
    source, name = item.source, item.name
    if item.load is not None:
        if not copy:
            raise PicsiftError(f"image {name!r} of {source} is bytes inside the dataset's files, not a file picsift "
                               "can index in place; import with copy=True (each image becomes a file under the "
                               "target folder)")
        return _write_bytes(meta, item.load(), f"{folder}/{name}", source)
    if not source.is_file():
        raise PicsiftError(f"image {source} named by the annotations does not exist")
    relative = meta.relative_path(source.resolve())
    if relative is not None:
        return relative
    if not copy:
        raise PicsiftError(f"{source} is outside the library folder {meta.root}; import with copy=True")
    relative = f"{folder}/{name}"
    target = library_path(meta.root, relative, what="import target")
    if target.exists() and content_id(target.read_bytes()) != content_id(source.read_bytes()):
        raise PicsiftError(f"{target} exists with other content; import into another target folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(source, target)
    return relative


def _write_bytes(meta: Metadata, data: bytes, relative: str, source: Path) -> str:
    target = library_path(meta.root, relative, what="import target")
    if target.exists() and content_id(target.read_bytes()) != content_id(data):
        raise PicsiftError(f"{target} exists with other content than {source}; import into another target folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    return relative


def gather(meta: Metadata, ids: list[str], objects: Collection[str] | None = None) -> Project:
    """The images ``ids`` with their annotations, grouped by the dataset each file belongs to.

    An image in several datasets is exported from the first; images in no dataset come from the
    library's files, in a dataset named ``images``. With ``objects`` (object ids, see
    :func:`picsift.core.objects.object_id`), only those objects are annotated: an object set's export.
    """
    labels = meta.catalog.labels
    workspace = meta.catalog.path.parent  # video frames live there, by absolute path when it is outside the root
    wanted = list(dict.fromkeys(ids))
    wanted_objects = None if objects is None else set(objects)
    datasets: dict[str, DatasetRecord] = {}
    used_names: dict[str, set[str]] = {}
    for image_id in wanted:
        row = labels.first_item(image_id)
        if row is None:
            raise PicsiftError(f"image {image_id} is not in this library's files or datasets")
        dataset_name, path, width, height = row
        source = library_path(meta.root, path, what=f"catalog path of image {image_id}", workspace=workspace)
        dataset_name = check_folder_name(dataset_name).rsplit("/", 1)[-1]  # without the project it came from
        name = source.name
        taken = used_names.setdefault(dataset_name, set())
        if name.casefold() in taken:  # two files of one name from different folders (or differing in case)
            name = f"{image_id[:8]}_{name}"
        taken.add(name.casefold())
        item = ItemRecord(name, source, width, height)
        if not (width and height):
            item.width, item.height = image_size(item.source)
        item.tags = labels.tags(image_id)
        labelled = meta.objects(image_id)
        item.objects = [ObjectRecord(o["class"], o["geometry"], o["points"], list(o["tags"]), o["author"])
                        for o in labelled.to_dict("records")
                        if wanted_objects is None or object_id(image_id, bounding_box(o["points"])) in wanted_objects]
        datasets.setdefault(dataset_name, DatasetRecord(dataset_name)).items.append(item)
    classes = {name: shape for name, shape, _color in labels.declared_classes()}
    return Project("export", list(datasets.values()), classes, labels.tag_types())


def export_project(meta: Metadata, ids: list[str], out: Path, format: str,
                   objects: Collection[str] | None = None) -> Path:
    """Write images with their annotations (with ``objects``: only those, see :func:`gather`) as a project in
    ``format`` at ``out`` (a folder)."""
    module = format_module(format)
    if out.exists() and any(out.iterdir()):
        raise PicsiftError(f"export folder {out} is not empty; choose a new one")
    project = gather(meta, ids, objects)
    project.name = out.name
    out.mkdir(parents=True, exist_ok=True)
    module.write(project, out)
    return out


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: nesting too deep for the parser
        raise PicsiftError(f"cannot read {path}: {type(e).__name__}: {e}") from e


def listed(data: dict[str, Any], key: str, file: Path) -> list[Any]:
    """``data[key]`` when it is a list (missing or null: an empty one), else a PicsiftError naming the field."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PicsiftError(f"{file}: {key!r} must be a list, got {short(value)}")
    return value


@contextmanager
def reading(file: Path, entry: str = "") -> Iterator[None]:
    """Turn a surprise in an annotation file (a missing field, a value of the wrong type) into a
    :class:`PicsiftError` that names the file and the entry."""
    where = f"{file}{', ' + entry if entry else ''}"
    try:
        yield
    except PicsiftError:
        raise
    except KeyError as e:
        raise PicsiftError(f"{where}: missing field {e.args[0]!r}") from e
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise PicsiftError(f"{where}: malformed entry ({type(e).__name__}: {e})") from e


def parse_xml(path: Path) -> Any:
    """The root element of an XML file, parsed with entity declarations and external references refused
    (no XXE, no billion laughs: :mod:`defusedxml`)."""
    try:
        import defusedxml.ElementTree as safe_xml
        from defusedxml import DefusedXmlException
    except ImportError as e:
        raise ImportError(f'reading {path.name} needs defusedxml: pip install "picsift[formats]"') from e
    try:
        return safe_xml.parse(path).getroot()
    except DefusedXmlException as e:
        raise PicsiftError(f"{path}: refused XML ({type(e).__name__}: {e}); picsift reads no entities or DTDs") from e
    except (OSError, SyntaxError, ValueError, RecursionError) as e:  # ParseError is a SyntaxError
        raise PicsiftError(f"cannot read {path}: {type(e).__name__}: {e}") from e


def unique_names(project: Project) -> dict[int, str]:
    """A file name per item (by ``id``), unique across the whole project by stem, case-insensitively (formats
    with one flat folder of annotation files name them after the image's stem)."""
    taken: set[str] = set()
    names = {}
    for dataset in project.datasets:
        for item in dataset.items:
            names[id(item)] = free_stem(item.name, taken)
    return names


def free_stem(name: str, taken: set[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``... when another file took its stem (compared case-insensitively,
    as on some file systems); the stem returned is added to ``taken``."""
    stem, suffix = Path(name).stem, Path(name).suffix
    free, n = name, 1
    while Path(free).stem.casefold() in taken:
        n += 1
        free = f"{stem}_{n}{suffix}"
    taken.add(Path(free).stem.casefold())
    return free


def text_value(text: str | None) -> TagValue:
    """A tag value read from text: a whole or decimal number when it reads as one, else the text."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def copy_image(item: ItemRecord, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(item.source, folder / item.name)


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise PicsiftError(f"cannot read image {path}: {e}") from e


# -- what a reader collected, checked before anything is written --------------------------------------------------
_MAX_SIDE = 2**31 - 1


def check_project(project: Project, where: Path) -> None:
    """Raise a :class:`PicsiftError` naming the entry when a dataset or file name, or an image size, that a
    reader collected is not one the library can hold (labels are checked as they are recorded)."""
    for dataset in project.datasets:
        check_folder_name(dataset.name, f"dataset name in {where}")
        for item in dataset.items:
            check_folder_name(item.name, f"image file name in {where}")
            if "/" in item.name:
                raise PicsiftError(f"image file name {item.name!r} in {where} is not a plain file name")
            for side in (item.width, item.height):
                if side is not None and (type(side) is not int or not 0 < side <= _MAX_SIDE):
                    raise PicsiftError(f"{item.annotations or where}: image {item.name!r}: width and height must "
                                       f"be positive whole numbers, got {item.width!r} x {item.height!r}")
