"""CVAT for images 1.1: one ``annotations.xml``.

::

    project/
      annotations.xml       <annotations><version>1.1</version><meta><task><labels>...</labels></task></meta>
                              <image id="0" name="a.png" width="64" height="48" subset="train">
                                <box label="car" occluded="0" xtl="1.00" ytl="2.00" xbr="30.00" ybr="40.00">
                                  <attribute name="colour">red</attribute></box>
                                <polygon label="wheel" occluded="0" points="1.00,2.00;3.00,4.00;5.00,1.00"/>
                                <tag label="outdoor"/></image></annotations>
      images/SUBSET/a.png   (or images/a.png, or a.png: the image's ``name`` relative to the project)

Each ``subset`` is a dataset (an image's, else the task's ``meta/task/subset``, else ``default``). Boxes and
polygons are imported; other shapes (points, polylines, masks, ellipses, cuboids) are skipped with a logged reason.
``occluded="1"`` becomes the object tag ``occluded``; shape ``<attribute>`` elements become object tags. An image
``<tag label="L">`` becomes image tag ``L``, its value in ``<attribute name="value">``. Attribute values are text,
except those of attributes declared ``<input_type>number</input_type>``, which read back as numbers (the export
declares attributes whose values are all numbers so). XML is parsed with entities refused.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import PicsiftError
from ...safe_paths import check_folder_name, check_relative, project_file
from ..checks import TagValue
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, parse_xml, reading, text_value

log = logging.getLogger(__name__)

FILE = "annotations.xml"
DEFAULT_DATASET = "default"
SHAPES = {"box": "rectangle", "polygon": "polygon"}


def read(source: Path) -> Project:
    path = source if source.is_file() else source / FILE
    root_folder = source.parent if source.is_file() else source
    if not os.path.lexists(path):
        raise PicsiftError(f"{source} is not a CVAT for images project: it has no {FILE}")
    file = project_file(root_folder, path, "CVAT annotation file")
    root = parse_xml(file)
    if root.tag != "annotations":
        raise PicsiftError(f"{file} is not CVAT for images XML: its root element is <{root.tag}>")
    project = Project(root_folder.name, meta_file=file)
    numbers: set[tuple[str, str]] = set()  # (label, attribute) declared as numbers
    for label in root.iter("label"):
        with reading(file, "meta labels"):
            name = label.findtext("name")
            if name and (label.findtext("type") or "") not in ("tag", "skeleton", "points"):
                project.classes.setdefault(name, "any")
            numbers.update((name or "", a.findtext("name") or "") for a in label.iter("attribute")
                           if a.findtext("input_type") == "number")
    datasets: dict[str, DatasetRecord] = {}
    task_subset = (root.findtext("meta/task/subset") or "").strip() or DEFAULT_DATASET
    for n, image in enumerate(root.findall("image")):
        with reading(file, f"image {image.get('name')!r} (#{n + 1})"):
            item = _read_image(image, file, root_folder, numbers)
            subset = check_folder_name(image.get("subset") or task_subset, f"{file}: subset")
            datasets.setdefault(subset, DatasetRecord(subset)).items.append(item)
    if not datasets:
        raise PicsiftError(f"{file} holds no <image> element (CVAT for video XML has <track>s: export it as "
                           "'CVAT for images 1.1')")
    project.datasets = list(datasets.values())
    return project


def _read_image(image: Any, file: Path, root: Path, numbers: set[tuple[str, str]]) -> ItemRecord:
    name = check_relative(image.get("name"), f"{file}: image name")
    subset = image.get("subset") or ""
    candidates = [root / "images" / subset / name, root / "images" / name, root / name]
    found = [c for c in candidates if os.path.lexists(c)]
    if not found:
        raise PicsiftError(f"{file}: image {name!r} not found in {root / 'images'} or {root}")
    item = ItemRecord(Path(name).name, project_file(root, found[0], f"{file}: image"), annotations=file)
    item.width, item.height = int(image.get("width")), int(image.get("height"))
    for tag in image.findall("tag"):
        label = _required(tag, "label")
        values = [a.text for a in tag.findall("attribute") if a.get("name") == "value"]
        item.tags.append((label, _value(values[0], (label, "value") in numbers) if values else None))
    for shape in image:
        if shape.tag in ("tag",):
            continue
        if shape.tag not in SHAPES:
            log.warning("%s: image %r: skipped a <%s> of label %r: only box and polygon are supported",
                        file, name, shape.tag, shape.get("label"))
            continue
        item.objects.append(_read_shape(shape, numbers))
    return item


def _read_shape(shape: Any, numbers: set[tuple[str, str]]) -> ObjectRecord:
    cls = _required(shape, "label")
    if shape.tag == "box":
        x1, y1, x2, y2 = (float(_required(shape, k)) for k in ("xtl", "ytl", "xbr", "ybr"))
        points = [[x1, y1], [x2, y2]]
    else:
        points = [[float(v) for v in pair.split(",", 1)] for pair in _required(shape, "points").split(";")]
    tags: list[tuple[str, TagValue]] = [("occluded", None)] if shape.get("occluded") == "1" else []
    tags += [(_required(a, "name"), _value(a.text, (cls, a.get("name")) in numbers))
             for a in shape.findall("attribute")]
    return ObjectRecord(cls, SHAPES[shape.tag], points, tags, author=None)


def _value(text: str | None, number: bool) -> TagValue:
    if text is None:
        return None
    value = text_value(text) if number else text
    if number and isinstance(value, str):
        raise PicsiftError(f"attribute value {text[:80]!r} is declared a number")
    return value


def _required(element: Any, key: str) -> str:
    value = element.get(key)
    if value is None:
        raise PicsiftError(f"<{element.tag}> has no {key!r} attribute")
    return str(value)


def write(project: Project, out: Path) -> None:
    """One dataset: a task export (``meta/task`` with its ``subset``, images in ``images/``); several: a project
    export (``meta/project`` with a task per dataset, ``subset`` on each image, images in ``images/SUBSET/``),
    as CVAT writes them and Datumaro reads them."""
    single = len(project.datasets) == 1
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    task = _sub(_sub(root, "meta"), "task" if single else "project")
    _sub(task, "name", project.name)
    _sub(task, "size", str(sum(len(d.items) for d in project.datasets)))
    _sub(task, "mode", "annotation")
    _write_labels(_sub(task, "labels"), project)
    if single:
        _sub(task, "subset", project.datasets[0].name)
    else:
        tasks = _sub(task, "tasks")
        for n, dataset in enumerate(project.datasets, start=1):
            entry = _sub(tasks, "task")
            for key, value in (("id", str(n)), ("name", dataset.name), ("size", str(len(dataset.items))),
                               ("mode", "annotation"), ("subset", dataset.name)):
                _sub(entry, key, value)
    number = 0
    for dataset in project.datasets:
        for item in dataset.items:
            copy_image(item, out / "images" if single else out / "images" / dataset.name)
            image = _sub(root, "image", id=str(number), name=item.name, width=str(item.width),
                         height=str(item.height), **({} if single else {"subset": dataset.name}))
            number += 1
            for tag_name, tag_value in item.tags:
                tag = _sub(image, "tag", label=tag_name, source="manual")
                if tag_value is not None:
                    _sub(tag, "attribute", str(tag_value), name="value")
            for obj in item.objects:
                _write_shape(image, obj)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(out / FILE, encoding="utf-8", xml_declaration=True)


def _write_labels(labels: ET.Element, project: Project) -> None:
    """A label per class (its attributes: the object tags seen on it) and per image tag (type ``tag``)."""
    for cls in project.class_names():
        label = _sub(labels, "label")
        _sub(label, "name", cls)
        _sub(label, "type", "any")
        values: dict[str, list[TagValue]] = {}
        for obj in (o for d in project.datasets for i in d.items for o in i.objects if o.cls == cls):
            for name, value in obj.tags:
                if (name, value) != ("occluded", None):
                    values.setdefault(name, []).append(value)
        attributes = _sub(label, "attributes")
        for name, seen in values.items():
            _write_attribute(attributes, name, seen)
    tag_values: dict[str, list[TagValue]] = {}
    for name, value in (t for d in project.datasets for i in d.items for t in i.tags):
        tag_values.setdefault(name, []).append(value)
    for tag_name, seen in tag_values.items():
        label = _sub(labels, "label")
        _sub(label, "name", tag_name)
        _sub(label, "type", "tag")
        given = [v for v in seen if v is not None]
        if given:
            _write_attribute(_sub(label, "attributes"), "value", given)


def _write_attribute(attributes: ET.Element, name: str, seen: Sequence[TagValue]) -> None:
    attribute = _sub(attributes, "attribute")
    _sub(attribute, "name", name)
    _sub(attribute, "mutable", "False")
    _sub(attribute, "input_type", "number" if seen and all(_is_number(v) for v in seen) else "text")
    _sub(attribute, "default_value", "")
    _sub(attribute, "values", "")


def _write_shape(image: ET.Element, obj: ObjectRecord) -> None:
    occluded = "1" if ("occluded", None) in obj.tags else "0"
    common = {"label": obj.cls, "source": "manual", "occluded": occluded, "z_order": "0"}
    if obj.geometry == "rectangle":
        x1, y1, x2, y2 = obj.bbox()
        shape = _sub(image, "box", **common, xtl=_number(x1), ytl=_number(y1), xbr=_number(x2), ybr=_number(y2))
    else:
        shape = _sub(image, "polygon", **common, points=";".join(f"{_number(x)},{_number(y)}" for x, y in obj.points))
    for name, value in obj.tags:
        if (name, value) != ("occluded", None):
            _sub(shape, "attribute", None if value is None else str(value), name=name)


def _is_number(value: TagValue) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: float) -> str:
    """Two decimals, as CVAT writes them (a hundredth of a pixel)."""
    return f"{value:.2f}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attributes)
    child.text = text
    return child
