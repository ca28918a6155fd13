"""The Supervisely project format.

::

    project/
      meta.json                 {"classes": [{"title", "shape", "color"}], "tags": [{"name", "value_type"}]}
      DATASET/img/NAME.png
      DATASET/ann/NAME.png.json {"size": {"width", "height"}, "tags": [{"name", "value", "labelerLogin"}],
                                 "objects": [{"classTitle", "geometryType", "points": {"exterior": [[x, y]]},
                                              "tags": [...], "labelerLogin"}]}

Rectangles and polygons are imported; other geometries (bitmap, line, point, ...) are skipped with a
logged reason, as are polygon holes (``interior``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import PicsiftError
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, image_size, load_json

log = logging.getLogger(__name__)

_COLORS = ("#E6194B", "#3CB44B", "#4363D8", "#F58231", "#911EB4", "#46F0F0", "#F032E6", "#BCF60C")


def read(source: Path) -> Project:
    meta_file = source / "meta.json"
    if not meta_file.is_file():
        raise PicsiftError(f"{source} is not a Supervisely project: it has no meta.json")
    meta = load_json(meta_file)
    project = Project(source.name)
    project.classes = {c["title"]: c.get("shape", "any") for c in meta.get("classes", [])}
    project.tag_types = {t["name"]: t.get("value_type", "none") for t in meta.get("tags", [])}
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and (p / "img").is_dir()):
        dataset = DatasetRecord(folder.name)
        for image in sorted(p for p in (folder / "img").iterdir() if p.is_file()):
            dataset.items.append(_read_item(image, folder / "ann" / f"{image.name}.json"))
        project.datasets.append(dataset)
    if not project.datasets:
        raise PicsiftError(f"Supervisely project {source} has no dataset folders (DATASET/img/)")
    return project


def _read_item(image: Path, ann_file: Path) -> ItemRecord:
    item = ItemRecord(image.name, image)
    if not ann_file.is_file():
        item.width, item.height = image_size(image)
        return item
    ann = load_json(ann_file)
    size = ann.get("size", {})
    item.width, item.height = size.get("width"), size.get("height")
    item.tags = [(t["name"], t.get("value")) for t in ann.get("tags", [])]
    for obj in ann.get("objects", []):
        geometry = obj.get("geometryType", obj.get("shape"))
        if geometry not in ("rectangle", "polygon"):
            log.warning("%s: skipped a %r object of class %r: only rectangle and polygon are supported",
                        ann_file, geometry, obj.get("classTitle"))
            continue
        points = obj.get("points", {})
        if points.get("interior"):
            log.warning("%s: dropped the holes of a polygon of class %r", ann_file, obj.get("classTitle"))
        item.objects.append(ObjectRecord(
            obj["classTitle"], geometry, [[float(x), float(y)] for x, y in points.get("exterior", [])],
            [(t["name"], t.get("value")) for t in obj.get("tags", [])], obj.get("labelerLogin"),
        ))
    return item


def write(project: Project, out: Path) -> None:
    classes = project.class_names()
    tag_names: dict[str, str] = dict(project.tag_types)
    for dataset in project.datasets:
        for item in dataset.items:
            for name, value in item.tags + [t for o in item.objects for t in o.tags]:
                tag_names.setdefault(name, _value_type(value))
    meta = {
        "classes": [{"title": c, "shape": _shape(project, c), "color": _COLORS[i % len(_COLORS)],
                     "geometry_config": {}} for i, c in enumerate(classes)],
        "tags": [{"name": n, "value_type": t, "color": _COLORS[i % len(_COLORS)]}
                 for i, (n, t) in enumerate(tag_names.items())],
        "projectType": "images",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    for dataset in project.datasets:
        (out / dataset.name / "ann").mkdir(parents=True, exist_ok=True)
        for item in dataset.items:
            copy_image(item, out / dataset.name / "img")
            ann = {
                "description": "",
                "size": {"width": item.width, "height": item.height},
                "tags": [_tag(n, v) for n, v in item.tags],
                "objects": [_object(o) for o in item.objects],
            }
            (out / dataset.name / "ann" / f"{item.name}.json").write_text(json.dumps(ann, indent=2))


def _shape(project: Project, cls: str) -> str:
    shape = project.classes.get(cls, "any")
    if shape == "any":
        shapes = {o.geometry for d in project.datasets for i in d.items for o in i.objects if o.cls == cls}
        shape = shapes.pop() if len(shapes) == 1 else "any_shape"
    return shape


def _value_type(value: Any) -> str:
    if value is None:
        return "none"
    return "any_number" if isinstance(value, (int, float)) else "any_string"


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": value}


def _object(obj: ObjectRecord) -> dict[str, Any]:
    result: dict[str, Any] = {
        "classTitle": obj.cls,
        "geometryType": obj.geometry,
        "tags": [_tag(n, v) for n, v in obj.tags],
        "points": {"exterior": obj.points, "interior": []},
    }
    if obj.author:
        result["labelerLogin"] = obj.author
    return result
