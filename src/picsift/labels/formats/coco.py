"""COCO instances JSON.

A project is a folder with ``annotations/instances_DATASET.json`` (one per dataset) and the images
in ``images/DATASET/``, ``DATASET/`` or ``images/``; or a single instances JSON file, its images
next to it or in an ``images/`` folder beside it.

Boxes (``bbox``, ``[x, y, width, height]``) become rectangles; a single-polygon ``segmentation`` becomes
a polygon. Masks in RLE and multi-part polygons keep only their box (logged). COCO has no tags or
authors: picsift writes image tags as ``"tags": [{"name", "value"}]`` on images and object tags as the
``"attributes"`` mapping of annotations (CVAT's convention), keys other COCO tools ignore.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import PicsiftError
from ...safe_paths import check_relative, project_file
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, listed, load_json, reading

log = logging.getLogger(__name__)

PREFIX = "instances_"


def read(source: Path) -> Project:
    if source.is_file():
        project = Project(source.parent.name)
        name = source.stem.removeprefix(PREFIX) or source.stem
        folders = [source.parent, source.parent / "images"]
        project.datasets.append(_read_file(source, name, folders, project, source.parent))
        return project
    files = sorted((source / "annotations").glob("*.json")) or sorted(source.glob("*.json"))
    if not files:
        raise PicsiftError(f"{source} is not a COCO project: no annotations/instances_*.json")
    project = Project(source.name)
    for file in files:
        name = file.stem.removeprefix(PREFIX) or file.stem
        folders = [source / "images" / name, source / name, source / "images", source]
        project.datasets.append(_read_file(file, name, folders, project, source))
    return project


def _read_file(file: Path, name: str, folders: list[Path], project: Project, root: Path) -> DatasetRecord:
    data = load_json(project_file(root, file, "COCO annotation file"))
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise PicsiftError(f"{file} is not a COCO instances file: it has no 'images' list")
    categories: dict[Any, str] = {}
    for n, category in enumerate(listed(data, "categories", file)):
        with reading(file, f"categories[{n}]"):
            categories[category["id"]] = category["name"]
            project.classes.setdefault(category["name"], "any")
    dataset = DatasetRecord(name)
    items: dict[Any, ItemRecord] = {}
    for n, image in enumerate(data["images"]):
        with reading(file, f"images[{n}]"):
            file_name = check_relative(image["file_name"], f"{file}, images[{n}]: file_name")
            candidates = [f / file_name for f in folders if os.path.lexists(f / file_name)]
            if not candidates:
                raise PicsiftError(f"{file}: image {file_name!r} not found in "
                                   f"{', '.join(str(f) for f in folders)}")
            path = project_file(root, candidates[0], f"{file}, images[{n}]: image")
            item = ItemRecord(Path(file_name).name, path, image.get("width"), image.get("height"),
                              [(t["name"], t.get("value")) for t in image.get("tags") or []], annotations=file)
            items[image["id"]] = item
            dataset.items.append(item)
    for n, ann in enumerate(listed(data, "annotations", file)):
        with reading(file, f"annotations[{n}]"):
            _read_annotation(ann, file, categories, items)
    return dataset


def _read_annotation(ann: dict[str, Any], file: Path, categories: dict[Any, str],
                     items: dict[Any, ItemRecord]) -> None:
    if ann.get("image_id") not in items:
        log.warning("%s: skipped annotation %s of unknown image %r", file, ann.get("id"), ann.get("image_id"))
        return
    if ann.get("category_id") not in categories:
        raise PicsiftError(f"{file}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}; "
                           f"categories: {sorted(map(str, categories))}")
    tags = list((ann.get("attributes") or {}).items())
    cls = categories[ann["category_id"]]
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and len(segmentation) == 1 and len(segmentation[0]) >= 6:
        flat = segmentation[0]
        points = [[float(flat[i]), float(flat[i + 1])] for i in range(0, len(flat) - 1, 2)]
        obj = ObjectRecord(cls, "polygon", points, tags)
    else:
        if segmentation:
            log.warning("%s: annotation %s keeps only its box (its segmentation is RLE or in several parts)",
                        file, ann.get("id"))
        x, y, w, h = (float(v) for v in ann["bbox"])
        obj = ObjectRecord(cls, "rectangle", [[x, y], [x + w, y + h]], tags)
    items[ann["image_id"]].objects.append(obj)


def write(project: Project, out: Path) -> None:
    classes = project.class_names()
    category_ids = {c: i for i, c in enumerate(classes, start=1)}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for dataset in project.datasets:
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_number, item in enumerate(dataset.items, start=1):
            copy_image(item, out / "images" / dataset.name)
            image: dict[str, Any] = {"id": image_number, "file_name": item.name, "width": item.width,
                                     "height": item.height}
            if item.tags:
                image["tags"] = [{"name": n, "value": v} for n, v in item.tags]
            images.append(image)
            for obj in item.objects:
                x1, y1, x2, y2 = obj.bbox()
                annotation: dict[str, Any] = {
                    "id": len(annotations) + 1, "image_id": image_number, "category_id": category_ids[obj.cls],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                    "segmentation": [[c for p in obj.points for c in p]] if obj.geometry == "polygon" else [],
                }
                if obj.tags:
                    annotation["attributes"] = dict(obj.tags)
                annotations.append(annotation)
        data = {
            "info": {"description": f"exported by picsift from {project.name}"},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": c, "supercategory": ""} for c, i in category_ids.items()],
        }
        (out / "annotations" / f"{PREFIX}{dataset.name}.json").write_text(json.dumps(data, indent=2))
