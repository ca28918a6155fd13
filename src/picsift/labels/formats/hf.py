"""Hugging Face datasets saved with ``save_to_disk`` (``pip install "picsift[hf]"``).

::

    dataset/                    a Dataset: state.json, dataset_info.json, data-*.arrow  -> one dataset, "default"
    dataset/dataset_dict.json   a DatasetDict: one folder per split                      -> one dataset per split

Import: the first ``Image`` column gives the images: their bytes are written under the library's target folder
(named after the image's ``path`` when it has one, else ``000012.png``); an image stored only as a path is read
from the dataset folder (a relative path) or from the project folder (an absolute path inside it), never from
elsewhere. A ``ClassLabel`` column becomes the image tag named after the column with the class name as value
(its class names are declared as the tag's value type, so an export gives the same ``ClassLabel`` back); text,
whole and decimal number columns become tags with their value; a bool column is a tag without a value where it
is true; lists of these give one tag per element; None adds nothing. An ``objects`` column in the layout of
Hugging Face's detection datasets (``{"bbox": [x, y, w, h], "category": ClassLabel}`` per object, an optional
``polygon`` of ``[x, y]`` points) gives objects. Other columns are skipped with a logged reason.

Export writes the same layout (a Dataset, or a DatasetDict with a split per dataset): ``image`` (an ``Image``
column with the file's bytes and name, read file by file as ``save_to_disk`` writes its shards), one column per
image tag (``ClassLabel`` where the tag came from one, a bool for tags without a value, a list where an image has
several values), and ``objects``.

The folder is untrusted: before ``datasets`` opens it, every file its ``state.json`` and ``dataset_dict.json``
name must be a plain name of a regular file inside it.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import PicsiftError
from ...safe_paths import check_relative, project_file
from ..checks import TagValue, short
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, image_size, load_json, reading

log = logging.getLogger(__name__)

DEFAULT_DATASET = "default"
#: A tag declared with this value type (then the class names as JSON) came from a ClassLabel column.
CLASS_LABEL = "oneof_string:"
OBJECTS = "objects"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise ImportError('Hugging Face datasets need the datasets package: pip install "picsift[hf]"') from e
    return datasets


def read(source: Path) -> Project:
    if not source.is_dir():
        raise PicsiftError(f"{source} is not a dataset folder written by save_to_disk")
    splits = _checked_layout(source)
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(source))
    except Exception as e:  # datasets raises many kinds (FileNotFoundError, ArrowInvalid, JSONDecodeError...)
        raise PicsiftError(f"cannot read the Hugging Face dataset {source}: {type(e).__name__}: {e}") from e
    parts = [(DEFAULT_DATASET, loaded)] if splits is None else [(name, loaded[name]) for name in splits]
    project = Project(source.name)
    for name, part in parts:
        project.datasets.append(_read_split(source, name, part, project))
    return project


def _checked_layout(source: Path) -> list[str] | None:
    """The split names of a DatasetDict (None for a Dataset), once every file the layout names is checked."""
    if os.path.lexists(source / "dataset_dict.json"):
        listing = load_json(project_file(source, source / "dataset_dict.json", "dataset_dict.json"))
        splits = listing.get("splits") if isinstance(listing, dict) else None
        if not isinstance(splits, list) or not splits:
            raise PicsiftError(f"{source / 'dataset_dict.json'}: 'splits' must be a list of split names, "
                               f"got {short(splits)}")
        for split in splits:
            _check_plain(split, source / "dataset_dict.json", "split")
            _check_split(source, source / split)
        return [str(s) for s in splits]
    _check_split(source, source)
    return None


def _check_split(source: Path, folder: Path) -> None:
    for name in ("state.json", "dataset_info.json"):
        if not os.path.lexists(folder / name):
            raise PicsiftError(f"{folder} is not a dataset written by save_to_disk: it has no {name}")
        project_file(source, folder / name, f"dataset {name}")
    state = load_json(folder / "state.json")
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not files:
        raise PicsiftError(f"{folder / 'state.json'}: '_data_files' must list the dataset's arrow files")
    for n, entry in enumerate(files):
        with reading(folder / "state.json", f"_data_files[{n}]"):
            project_file(source, folder / _check_plain(entry["filename"], folder / "state.json", "file"), "arrow file")


def _check_plain(name: Any, where: Path, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise PicsiftError(f"{where}: {what} name {short(name)} is not a plain file name in its folder")
    return name


def _read_split(source: Path, name: str, part: Any, project: Project) -> DatasetRecord:
    datasets = _datasets()
    features = part.features
    image_columns = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    if not image_columns:
        raise PicsiftError(f"{source}: split {name!r} has no Image column; columns: {', '.join(features)}")
    column = image_columns[0]
    part = part.cast_column(column, datasets.Image(decode=False))
    readers = {}
    for other, feature in features.items():
        if other == column:
            continue
        reader = _tag_reader(other, feature, datasets, project)
        if reader is None:
            log.warning("%s: column %r (%s) is not imported: only ClassLabel, text, number and bool columns "
                        "(or lists of them) and detection objects are", source, other, type(feature).__name__)
        else:
            readers[other] = reader
    dataset = DatasetRecord(name)
    taken: set[str] = set()
    for row_number, row in enumerate(part):
        where = f"split {name!r}, row {row_number}"
        with reading(source, where):
            item = _item(source, row[column], row_number, taken, where)
            if row[column].get("bytes") is not None:  # read again when placed: no dataset held in memory
                item.load = functools.partial(_row_bytes, part, column, row_number)
            for other, reader in readers.items():
                if other == OBJECTS and isinstance(features[other], datasets.List):
                    item.objects = reader(row[other])
                else:
                    item.tags += [(other, v) for v in reader(row[other])]
            dataset.items.append(item)
    return dataset


def _item(source: Path, image: Any, row: int, taken: set[str], where: str) -> ItemRecord:
    data, path = image.get("bytes"), image.get("path")
    name = Path(path).name if isinstance(path, str) and path else ""
    if data is not None:
        file = source  # the bytes are in its arrow files; read again when the image is placed
        width, height, kind = _size_of(data, f"{source}, {where}")
    elif name:
        candidate = Path(path) if os.path.isabs(path) else source / check_relative(path, f"{source}, {where}: image")
        file = project_file(source, candidate, f"{source}, {where}: image")
        width, height = image_size(file)
        kind = "png"
    else:
        raise PicsiftError(f"{source}, {where}: the image has neither bytes nor a path")
    if not name or name.casefold() in taken:
        name = f"{row:06d}{Path(name).suffix or '.' + kind}"
    taken.add(name.casefold())
    return ItemRecord(name, file, width, height)


def _row_bytes(part: Any, column: str, row: int) -> bytes:
    return bytes(part[row][column]["bytes"])


def _size_of(data: bytes, where: str) -> tuple[int, int, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size[0], image.size[1], (image.format or "png").lower()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise PicsiftError(f"{where}: the image bytes are not an image Pillow reads: {e}") from e


def _tag_reader(column: str, feature: Any, datasets: Any, project: Project) -> Callable[[Any], Any] | None:
    """A function from a cell to its tag values (or objects, for a detection ``objects`` column), or None."""
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        project.tag_types[column] = CLASS_LABEL + json.dumps(names)
        return lambda v: [] if v is None or v < 0 else [names[v]]
    if isinstance(feature, datasets.Value):
        if feature.dtype == "bool":
            return lambda v: [None] if v else []
        if feature.dtype.startswith(("int", "uint", "float", "string", "large_string")):
            return lambda v: [] if v is None or (isinstance(v, float) and not math.isfinite(v)) else [v]
        return None
    if isinstance(feature, datasets.List):
        inner = feature.feature
        if column == OBJECTS and isinstance(inner, dict) and "bbox" in inner and "category" in inner:
            return _objects_reader(inner, datasets, project)
        simple = isinstance(inner, datasets.ClassLabel) or (
            isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string"))
        element = _tag_reader(column, inner, datasets, project) if simple else None  # not vectors of numbers
        return None if element is None else (lambda v: [t for e in v or [] for t in element(e)])
    return None


def _objects_reader(inner: dict[str, Any], datasets: Any, project: Project) -> Callable[[Any], list[ObjectRecord]]:
    category = inner["category"]
    names = list(category.names) if isinstance(category, datasets.ClassLabel) else None
    for cls in names or []:
        project.classes.setdefault(cls, "any")

    def objects(cell: Any) -> list[ObjectRecord]:
        found = []
        for obj in cell or []:
            cls = names[obj["category"]] if names is not None else str(obj["category"])
            polygon = obj.get("polygon") or []
            if len(polygon) >= 3:
                found.append(ObjectRecord(cls, "polygon", [[float(x), float(y)] for x, y in polygon]))
                continue
            x, y, w, h = (float(v) for v in obj["bbox"])
            found.append(ObjectRecord(cls, "rectangle", [[x, y], [x + w, y + h]]))
        return found

    return objects


# -- export -------------------------------------------------------------------------------------------------------
def write(project: Project, out: Path) -> None:
    datasets = _datasets()
    parts = {}
    for dataset in project.datasets:
        split = re.sub(r"\W", "_", dataset.name)
        if split != dataset.name:
            log.info("dataset %r is the split %r (Hugging Face split names are letters, digits and _)",
                     dataset.name, split)
        features, columns = _columns(project, dataset, datasets)
        parts[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    result = next(iter(parts.values())) if len(parts) == 1 else datasets.DatasetDict(parts)
    result.save_to_disk(str(out))


def _columns(project: Project, dataset: DatasetRecord, datasets: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    classes = project.class_names()
    features: dict[str, Any] = {"image": datasets.Image()}
    # paths, not bytes: save_to_disk reads each file into its shard as it writes it (bounded memory), keeping
    # the file's name as the image's path
    columns: dict[str, list[Any]] = {"image": [{"bytes": None, "path": str(i.source)} for i in dataset.items]}
    names = list(dict.fromkeys(n for d in project.datasets for i in d.items for n, _ in i.tags))
    for name in names:
        if name in (OBJECTS, "image"):
            log.warning("image tag %r is not exported: its name is a column of the export", name)
            continue
        values = [[v for n, v in item.tags if n == name] for item in dataset.items]
        feature, convert = _tag_feature(name, [v for vs in values for v in vs], project.tag_types.get(name, ""),
                                        datasets)
        if any(len(vs) > 1 for vs in values):
            features[name] = datasets.List(feature)
            columns[name] = [[convert(v) for v in vs] for vs in values]
        elif feature == datasets.Value("bool"):
            features[name], columns[name] = feature, [bool(vs) for vs in values]
        else:
            features[name], columns[name] = feature, [convert(vs[0]) if vs else None for vs in values]
    box = {"bbox": datasets.List(datasets.Value("float64"), length=4),
           "category": datasets.ClassLabel(names=classes) if classes else datasets.Value("string"),
           "polygon": datasets.List(datasets.List(datasets.Value("float64"), length=2))}
    features[OBJECTS] = datasets.List(box)
    columns[OBJECTS] = [[_object(o) for o in item.objects] for item in dataset.items]
    return features, columns


def _tag_feature(name: str, values: list[TagValue], declared: str, datasets: Any) -> tuple[Any, Callable[[Any], Any]]:
    if declared.startswith(CLASS_LABEL):
        try:
            names = [str(n) for n in json.loads(declared[len(CLASS_LABEL):])]
        except ValueError:
            names = []
        names += [str(v) for v in dict.fromkeys(values) if v is not None and str(v) not in names]
        return datasets.ClassLabel(names=names), lambda v: None if v is None else str(v)
    if all(v is None for v in values):
        return datasets.Value("bool"), lambda v: True
    if all(isinstance(v, int) for v in values):
        return datasets.Value("int64"), lambda v: v
    if all(isinstance(v, (int, float)) for v in values):
        return datasets.Value("float64"), lambda v: float(v)
    return datasets.Value("string"), lambda v: "" if v is None else str(v)


def _object(obj: ObjectRecord) -> dict[str, Any]:
    x1, y1, x2, y2 = obj.bbox()
    return {"bbox": [x1, y1, x2 - x1, y2 - y1], "category": obj.cls,
            "polygon": obj.points if obj.geometry == "polygon" else []}
