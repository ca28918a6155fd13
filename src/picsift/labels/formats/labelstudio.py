"""Label Studio JSON tasks, with rectangle and polygon results.

::

    project/
      tasks.json            [{"id": 1, "data": {"image": "/data/local-files/?d=images/train/a.png",
                                                "dataset": "train"},
                              "annotations": [{"completed_by": ..., "result": [
                                {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                                 "original_width": 64, "original_height": 48,
                                 "value": {"x": 10.0, "y": 5.0, "width": 50.0, "height": 25.0, "rotation": 0,
                                           "rectanglelabels": ["car"]}},
                                {"id": "r1", "type": "textarea", "from_name": "colour", "value": {"text": ["red"]}},
                                {"type": "choices", "from_name": "weather", "value": {"choices": ["rain"]}}]}]}]
      label_config.xml      the labelling interface for these tasks (written on export)
      images/train/a.png

Coordinates are percentages of the image's size, as Label Studio stores them. A task's image is found in the
project folder: a relative path, or the path in a ``/data/local-files/?d=...`` or ``/data/upload/...`` URL, read
relative to the project, else by its last parts (``d=home/me/images/a.png`` finds ``images/a.png``). Images
behind other URLs are refused: download them into the project first. A rotated rectangle becomes a polygon of its
corners; other result types (keypoints, brushes, ...) are skipped with a logged reason.

Tags: a result that shares a region's ``id`` tags that object, others tag the image. ``choices`` give one tag
per choice (``weather=rain``; a choice equal to its control's name, ``outdoor: [outdoor]``, is a tag without a
value), ``textarea`` text and ``number`` numbers. ``data.dataset`` names the dataset (``default`` without it);
``completed_by.email`` is the objects' author.
"""

from __future__ import annotations

import json
import logging
import math
import os
import urllib.parse
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from ...errors import PicsiftError
from ...safe_paths import check_folder_name, check_relative, project_file
from ..checks import TagValue
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, image_size, listed, load_json, reading

log = logging.getLogger(__name__)

FILE = "tasks.json"
CONFIG = "label_config.xml"
DEFAULT_DATASET = "default"
LOCAL_FILES = "/data/local-files/?d="
SHAPES = {"rectanglelabels": "rectangle", "polygonlabels": "polygon"}
TAG_TYPES = ("choices", "textarea", "number")


def read(source: Path) -> Project:
    root = source.parent if source.is_file() else source
    files = [source] if source.is_file() else sorted(source.glob("*.json"))
    if not files:
        raise PicsiftError(f"{source} is not a Label Studio export: it holds no JSON file of tasks")
    project = Project(root.name)
    datasets: dict[str, DatasetRecord] = {}
    for path in files:
        file = project_file(root, path, "Label Studio tasks file")
        tasks = load_json(file)
        if isinstance(tasks, dict):
            tasks = [tasks]  # one task
        if not isinstance(tasks, list):
            raise PicsiftError(f"{file} is not a Label Studio export: expected a list of tasks, got "
                               f"{type(tasks).__name__}")
        for n, task in enumerate(tasks):
            where = f"task {task.get('id', n) if isinstance(task, dict) else n!r} (#{n + 1})"
            with reading(file, where):
                try:
                    name = check_folder_name(task["data"].get("dataset") or DEFAULT_DATASET, "dataset name")
                    dataset = datasets.setdefault(name, DatasetRecord(name))
                    dataset.items.append(_read_task(task, file, root, {i.name for i in dataset.items}))
                except PicsiftError as e:
                    raise PicsiftError(f"{file}, {where}: {e}") from e
    project.datasets = list(datasets.values())
    return project


def _read_task(task: dict[str, Any], file: Path, root: Path, taken: set[str]) -> ItemRecord:
    data = task["data"]
    if not isinstance(data, dict):
        raise PicsiftError(f"'data' must be an object, got {type(data).__name__}")
    reference = data.get("image")
    if reference is None:
        reference = next((v for v in data.values() if isinstance(v, str) and Path(v).suffix), None)
    image = _image(reference, root)
    name = image.name if image.name not in taken else f"{task.get('id')}_{image.name}"
    item = ItemRecord(name, image, annotations=file)
    results = [(r, a) for a in listed(task, "annotations", file) if not a.get("was_cancelled")
               for r in listed(a, "result", file)]
    sizes = [(r.get("original_width"), r.get("original_height")) for r, _ in results if r.get("original_width")]
    item.width, item.height = (int(sizes[0][0]), int(sizes[0][1])) if sizes else image_size(image)
    regions: dict[Any, ObjectRecord] = {}
    for result, annotation in results:
        kind = result.get("type")
        if kind in SHAPES:
            obj = _shape(result, kind, item.width, item.height, _author(annotation))
            regions[result.get("id", object())] = obj
            item.objects.append(obj)
    for result, _ in results:
        kind = result.get("type")
        if kind in TAG_TYPES:
            tags = _tags(result, kind)
            owner = regions.get(result.get("id"))
            (owner.tags if owner is not None else item.tags).extend(tags)
        elif kind not in SHAPES:
            log.warning("%s: task %r: skipped a %r result: only rectangles, polygons, choices, text and numbers "
                        "are imported", file, task.get("id"), kind)
    return item


def _image(reference: Any, root: Path) -> Path:
    if not isinstance(reference, str) or not reference:
        raise PicsiftError(f"the task's image {reference!r} is not a path")
    if reference.startswith(LOCAL_FILES):
        reference = urllib.parse.unquote(reference[len(LOCAL_FILES):])
    elif reference.startswith("/data/"):
        reference = urllib.parse.unquote(urllib.parse.urlsplit(reference).path.removeprefix("/data/"))
    elif "://" in reference or reference.startswith("data:"):
        raise PicsiftError(f"image {reference[:100]!r} is a URL; picsift imports images only from the project "
                           "folder: download them into it and write their relative paths")
    parts = check_relative(reference.lstrip("/"), "image path").split("/")
    for start in range(len(parts)):  # the whole path, then shorter and shorter tails of it
        candidate = root.joinpath(*parts[start:])
        if os.path.lexists(candidate):
            return project_file(root, candidate, "image")
    raise PicsiftError(f"image {reference!r} not found in the project folder {root}")


def _author(annotation: dict[str, Any]) -> str | None:
    by = annotation.get("completed_by")
    return by.get("email") if isinstance(by, dict) and isinstance(by.get("email"), str) else None


def _shape(result: dict[str, Any], kind: str, width: int, height: int, author: str | None) -> ObjectRecord:
    value = result["value"]
    labels = value[kind]
    if not isinstance(labels, list) or not labels:
        raise PicsiftError(f"{kind} must be a list of one or more labels, got {labels!r}")
    width, height = int(result.get("original_width") or width), int(result.get("original_height") or height)
    sx, sy = width / 100, height / 100
    if kind == "polygonlabels":
        points = [[_pixel(x, sx), _pixel(y, sy)] for x, y in value["points"]]
        return ObjectRecord(str(labels[0]), "polygon", points, author=author)
    x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    rotation = float(value.get("rotation") or 0)
    if rotation % 360 == 0:
        return ObjectRecord(str(labels[0]), "rectangle", [[_pixel(x, sx), _pixel(y, sy)],
                                                          [_pixel(x + w, sx), _pixel(y + h, sy)]], author=author)
    # Label Studio turns a rectangle about its top-left corner, in pixels
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    x0, y0, pw, ph = x * sx, y * sy, w * sx, h * sy
    corners = [(0, 0), (pw, 0), (pw, ph), (0, ph)]
    points = [[x0 + dx * cos - dy * sin, y0 + dx * sin + dy * cos] for dx, dy in corners]
    return ObjectRecord(str(labels[0]), "polygon", points, author=author)


def _pixel(percent: Any, scale: float) -> float:
    """A percentage as pixels, to a millionth of a pixel (so that 4 comes back as 4.0, not 3.9999999999999996)."""
    return round(float(percent) * scale, 6)


def _tags(result: dict[str, Any], kind: str) -> list[tuple[str, TagValue]]:
    name, value = str(result["from_name"]), result["value"]
    if kind == "choices":
        return [(name, None if choice == name else choice) for choice in value["choices"]]
    if kind == "textarea":
        return [(name, text) for text in value["text"]]
    return [(name, value["number"])]


# -- export -------------------------------------------------------------------------------------------------------
def write(project: Project, out: Path) -> None:
    tasks: list[dict[str, Any]] = []
    for dataset in project.datasets:
        for item in dataset.items:
            copy_image(item, out / "images" / dataset.name)
            path = f"images/{dataset.name}/{item.name}"
            task: dict[str, Any] = {"id": len(tasks) + 1,
                                    "data": {"image": LOCAL_FILES + urllib.parse.quote(path), "dataset": dataset.name}}
            by_author: dict[str | None, list[dict[str, Any]]] = {}
            for n, obj in enumerate(item.objects):
                by_author.setdefault(obj.author, []).extend(_object_results(obj, f"r{n + 1}", item))
            results = [_tag_result(n, v, None) for n, v in item.tags]
            task["annotations"] = [
                {"id": len(tasks) * 100 + k + 1, "result": (results if k == 0 else []) + found,
                 "was_cancelled": False, "ground_truth": False,
                 **({"completed_by": {"email": author}} if author else {})}
                for k, (author, found) in enumerate(by_author.items() or [(None, [])])
            ]
            tasks.append(task)
    (out / FILE).write_text(json.dumps(tasks, indent=2))
    (out / CONFIG).write_text(label_config(project))


def _object_results(obj: ObjectRecord, region: str, item: ItemRecord) -> list[dict[str, Any]]:
    width, height = item.width or 1, item.height or 1
    common = {"id": region, "to_name": "image", "original_width": width, "original_height": height,
              "image_rotation": 0}
    if obj.geometry == "rectangle":
        x1, y1, x2, y2 = obj.bbox()
        value = {"x": x1 / width * 100, "y": y1 / height * 100, "width": (x2 - x1) / width * 100,
                 "height": (y2 - y1) / height * 100, "rotation": 0, "rectanglelabels": [obj.cls]}
        shape = {**common, "type": "rectanglelabels", "from_name": "label", "value": value}
    else:
        points = [[x / width * 100, y / height * 100] for x, y in obj.points]
        shape = {**common, "type": "polygonlabels", "from_name": "polygon",
                 "value": {"points": points, "closed": True, "polygonlabels": [obj.cls]}}
    return [shape] + [_tag_result(n, v, common) for n, v in obj.tags]


def _tag_result(name: str, value: TagValue, region: dict[str, Any] | None) -> dict[str, Any]:
    base = {**(region or {}), "from_name": name, "to_name": "image"}
    if value is None:
        return {**base, "type": "choices", "value": {"choices": [name]}}
    if isinstance(value, str):
        return {**base, "type": "textarea", "value": {"text": [value]}}
    return {**base, "type": "number", "value": {"number": value}}


def label_config(project: Project) -> str:
    """A labelling interface for the exported tasks: one control per class shape and per tag."""
    classes = project.class_names()
    tags: dict[str, tuple[str, set[str]]] = {}
    for dataset in project.datasets:
        for item in dataset.items:
            region_tags = [(t, True) for o in item.objects for t in o.tags]
            for (name, value), per_region in [(t, False) for t in item.tags] + region_tags:
                kind = _tag_result(name, value, None)["type"]
                seen = tags.setdefault(name, (kind, set()))
                if kind == "choices":
                    seen[1].add(name)
                if per_region:
                    seen[1].add("\0region")
    lines = ['<View>', '  <Image name="image" value="$image"/>',
             '  <RectangleLabels name="label" toName="image">',
             *(f"    <Label value={quoteattr(c)}/>" for c in classes), '  </RectangleLabels>',
             '  <PolygonLabels name="polygon" toName="image">',
             *(f"    <Label value={quoteattr(c)}/>" for c in classes), '  </PolygonLabels>']
    for name, (kind, extra) in tags.items():
        region = ' perRegion="true"' if "\0region" in extra else ""
        control = {"choices": "Choices", "textarea": "TextArea", "number": "Number"}[kind]
        if kind == "choices":
            lines += [f'  <Choices name={quoteattr(name)} toName="image" choice="multiple"{region}>',
                      f"    <Choice value={quoteattr(name)}/>", "  </Choices>"]
        else:
            lines.append(f'  <{control} name={quoteattr(name)} toName="image"{region}/>')
    return "\n".join([*lines, "</View>", ""])
