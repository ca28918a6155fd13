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
import os
from pathlib import Path
from typing import Any

from ...errors import PicsiftError
from ...safe_paths import project_file
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, image_size, load_json, reading

log = logging.getLogger(__name__)

ONEOF = "oneof_string"  # a tag with a fixed list of values; picsift stores them in the value type, after a ':'
_COLORS = ("#E6194B", "#3CB44B", "#4363D8", "#F58231", "#911EB4", "#46F0F0", "#F032E6", "#BCF60C")


def read(source: Path) -> Project:
    meta_file = source / "meta.json"
    if not os.path.lexists(meta_file):
        raise PicsiftError(f"{source} is not a Supervisely project: it has no meta.json")
    meta_file = project_file(source, meta_file, "Supervisely meta.json")
    meta = load_json(meta_file)
    project = Project(source.name, meta_file=meta_file)
    with reading(meta_file):
        project.classes = {c["title"]: c.get("shape", "any") for c in meta.get("classes") or []}
        project.tag_types = {t["name"]: _read_value_type(t) for t in meta.get("tags") or []}
    for folder in sorted(p for p in source.iterdir() if _visible(p) and p.is_dir() and (p / "img").is_dir()):
        dataset = DatasetRecord(folder.name)
        for image in sorted(p for p in (folder / "img").iterdir() if _visible(p) and not p.is_dir()):
            item = ItemRecord(image.name, project_file(source, image, "Supervisely image"))
            ann_file = folder / "ann" / f"{image.name}.json"
            if os.path.lexists(ann_file):
                ann_file = project_file(source, ann_file, "Supervisely annotation file")
                item.annotations = ann_file
                with reading(ann_file):
                    _read_annotation(item, load_json(ann_file), ann_file)
            else:
                item.width, item.height = image_size(item.source)
            dataset.items.append(item)
        project.datasets.append(dataset)
    if not project.datasets:
        raise PicsiftError(f"Supervisely project {source} has no dataset folders (DATASET/img/)")
    return project


def _read_value_type(tag: dict[str, Any]) -> str:
    """A tag's value type; ``oneof_string`` keeps its values (as a ClassLabel column's tag does)."""
    value_type = tag.get("value_type", "none")
    values = tag.get("values")
    if value_type == ONEOF and isinstance(values, list) and all(isinstance(v, str) for v in values):
        return f"{ONEOF}:{json.dumps(values)}"
    return str(value_type)


def _value_type_fields(value_type: str) -> dict[str, Any]:
    if value_type.startswith(f"{ONEOF}:"):
        try:
            return {"value_type": ONEOF, "values": json.loads(value_type[len(ONEOF) + 1:])}
        except ValueError:
            return {"value_type": "any_string"}
    return {"value_type": value_type}


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _read_annotation(item: ItemRecord, ann: Any, ann_file: Path) -> None:
    size = ann.get("size") or {}
    item.width, item.height = size.get("width"), size.get("height")
    item.tags = [(t["name"], t.get("value")) for t in ann.get("tags") or []]
    for obj in ann.get("objects") or []:
        geometry = obj.get("geometryType", obj.get("shape"))
        if geometry not in ("rectangle", "polygon"):
            log.warning("%s: skipped a %r object of class %r: only rectangle and polygon are supported",
                        ann_file, geometry, obj.get("classTitle"))
            continue
        points = obj.get("points") or {}
        if points.get("interior"):
            log.warning("%s: dropped the holes of a polygon of class %r", ann_file, obj.get("classTitle"))
        item.objects.append(ObjectRecord(
            obj["classTitle"], geometry, [[float(x), float(y)] for x, y in points.get("exterior") or []],
            [(t["name"], t.get("value")) for t in obj.get("tags") or []], obj.get("labelerLogin"),
        ))


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
        "tags": [{"name": n, **_value_type_fields(t), "color": _COLORS[i % len(_COLORS)]}
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
