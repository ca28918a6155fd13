"""Pascal VOC: one XML file per image.

::

    project/
      Annotations/NAME.xml        <annotation><filename>NAME.jpg</filename><size><width/><height/><depth/></size>
                                    <object><name>cat</name><pose/><truncated/><difficult/>
                                      <bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object></annotation>
      JPEGImages/NAME.jpg
      ImageSets/Main/SPLIT.txt    one image stem a line; each SPLIT is a dataset (without them: "default")
      labelmap.txt                "# label:color_rgb:parts:actions" then "NAME:R,G,B::" a class (CVAT's and
                                  Datumaro's declaration of classes beyond VOC's 20; written on export)

Boxes are whole pixels in VOC: picsift writes its coordinates rounded to the nearest pixel, as they are (the
top-left corner of the image is 0, as CVAT and LabelImg write them). A polygon is written as its ``bndbox`` (what
VOC tools read) plus ``<polygon><x1/><y1/><x2/>...</polygon>`` (Roboflow's convention), and read back as a polygon.
``difficult``, ``truncated`` and ``occluded`` set to 1 and a ``pose`` other than ``Unspecified`` become object
tags; other object tags are ``<attributes><attribute><name/><value/></attribute></attributes>`` (CVAT's VOC
convention), and image tags the same element under ``<annotation>``. A split that only repeats the images of
the others (``trainval``) is not imported as a dataset of its own. XML is parsed with entities refused.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ...errors import PicsiftError
from ...safe_paths import check_relative, project_file
from ..checks import TagValue
from . import (
    DatasetRecord,
    ItemRecord,
    ObjectRecord,
    Project,
    copy_image,
    image_size,
    parse_xml,
    reading,
    text_value,
    unique_names,
)

log = logging.getLogger(__name__)

DEFAULT_DATASET = "default"
FLAGS = ("difficult", "truncated", "occluded")
LABELMAP = "labelmap.txt"


def read(source: Path) -> Project:
    annotations = source / "Annotations"
    if not annotations.is_dir():
        raise PicsiftError(f"{source} is not a Pascal VOC project: it has no Annotations/ folder")
    files = {p.stem: p for p in sorted(annotations.glob("*.xml"))}
    if not files:
        raise PicsiftError(f"{source} is not a Pascal VOC project: Annotations/ holds no .xml file")
    project = Project(source.name)
    if os.path.lexists(source / LABELMAP):
        project.meta_file = project_file(source, source / LABELMAP, "VOC label map")
        with reading(project.meta_file):
            for line in project.meta_file.read_text(encoding="utf-8").splitlines():
                name = line.split(":", 1)[0].strip()
                if name and not line.startswith("#") and name != "background":
                    project.classes.setdefault(name, "any")
    items = {stem: _read_file(source, file) for stem, file in files.items()}
    for name, stems in _splits(source, files):
        dataset = DatasetRecord(name)
        for stem in stems:
            if stem not in items:
                raise PicsiftError(f"{source / 'ImageSets' / 'Main' / (name + '.txt')}: image {stem!r} has no "
                                   f"annotation file Annotations/{stem}.xml")
            dataset.items.append(items[stem])
        project.datasets.append(dataset)
    return project


def _splits(source: Path, files: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``(split, stems)`` from ImageSets/Main/SPLIT.txt (not the per-class ``CLASS_SPLIT.txt`` lists); a split
    whose images all belong to smaller ones is left out. Without split files, one dataset of every file."""
    folder = source / "ImageSets" / "Main"
    splits = []
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        file = project_file(source, path, "VOC image set")
        with reading(file):
            lines = file.read_text(encoding="utf-8").splitlines()
            stems = list(dict.fromkeys(line.split()[0] for line in lines if line.split()))
        if "_" in path.stem and all(len(line.split()) == 2 for line in lines if line.strip()):
            continue  # aeroplane_train.txt: "stem 1" or "stem -1", a per-class list
        splits.append((path.stem, stems))
    kept: list[tuple[str, list[str]]] = []
    covered: set[str] = set()
    for name, stems in sorted(splits, key=lambda s: len(s[1])):
        if stems and set(stems) <= covered:
            log.info("%s: image set %r only repeats other sets; not imported as a dataset", folder, name)
            continue
        covered.update(stems)
        kept.append((name, stems))
    if not kept:
        return [(DEFAULT_DATASET, list(files))]
    order = [name for name, _ in splits]
    return sorted(kept, key=lambda s: order.index(s[0]))


def _read_file(source: Path, path: Path) -> ItemRecord:
    file = project_file(source, path, "VOC annotation file")
    root = parse_xml(file)
    if root.tag != "annotation":
        raise PicsiftError(f"{file} is not a VOC annotation: its root element is <{root.tag}>, not <annotation>")
    with reading(file, "filename"):
        name = _text(root, "filename") or ""
        check_relative(name, f"{file}: filename")
        image = _image(source, path.stem, name, file)
    item = ItemRecord(Path(name).name if name else image.name, image, annotations=file)
    size = root.find("size")
    with reading(file, "size"):
        if size is not None and _text(size, "width") and _text(size, "height"):
            item.width, item.height = int(float(_text(size, "width") or 0)), int(float(_text(size, "height") or 0))
        else:
            item.width, item.height = image_size(image)
    item.tags = _attributes(root, file, "annotation")
    for n, obj in enumerate(root.findall("object")):
        with reading(file, f"object {n + 1}"):
            item.objects.append(_object(obj, file, n))
    return item


def _image(source: Path, stem: str, name: str, file: Path) -> Path:
    folder = source / "JPEGImages"
    candidates = [folder / name] if name else []
    candidates += sorted(p for p in folder.glob(f"{stem}.*") if p.suffix.lower() != ".xml") if folder.is_dir() else []
    found = [c for c in candidates if os.path.lexists(c)]
    if not found:
        raise PicsiftError(f"{file}: image {name or stem!r} not found in {folder}")
    return project_file(source, found[0], f"{file}: image")


def _object(obj: Any, file: Path, n: int) -> ObjectRecord:
    cls = _text(obj, "name")
    if not cls:
        raise PicsiftError(f"{file}: object {n + 1} has no <name> (its class)")
    tags: list[tuple[str, TagValue]] = [(flag, None) for flag in FLAGS if (_text(obj, flag) or "0").strip() == "1"]
    pose = _text(obj, "pose")
    if pose and pose != "Unspecified":
        tags.append(("pose", pose))
    tags += _attributes(obj, file, f"object {n + 1}")
    polygon = obj.find("polygon")
    if polygon is not None:
        values = {child.tag: float(child.text or "") for child in polygon}
        points = [[values[f"x{i}"], values[f"y{i}"]] for i in range(1, len(values) // 2 + 1)]
        return ObjectRecord(cls, "polygon", points, tags)
    box = obj.find("bndbox")
    if box is None:
        raise PicsiftError(f"{file}: object {n + 1} ({cls!r}) has neither <bndbox> nor <polygon>")
    x1, y1, x2, y2 = (float(_text(box, k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
    return ObjectRecord(cls, "rectangle", [[x1, y1], [x2, y2]], tags)


def _attributes(element: Any, file: Path, where: str) -> list[tuple[str, TagValue]]:
    found: list[tuple[str, TagValue]] = []
    for attribute in element.findall("attributes/attribute"):
        name = _text(attribute, "name")
        if not name:
            raise PicsiftError(f"{file}: {where}: an <attribute> has no <name>")
        found.append((name, text_value(_text(attribute, "value"))))
    return found


def _text(element: Any, tag: str) -> str | None:
    child = element.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def write(project: Project, out: Path) -> None:
    names = unique_names(project)
    classes = [c for c in project.class_names() if ":" not in c]
    if len(classes) < len(project.class_names()):
        log.warning("classes with a ':' are left out of %s (its field separator)", LABELMAP)
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    lines += [f"{c}:{(37 * n) % 256},{(91 * n) % 256},{(173 * n) % 256}::" for n, c in enumerate(classes, start=1)]
    (out / LABELMAP).write_text("\n".join(lines) + "\n")
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for dataset in project.datasets:
        stems = []
        for item in dataset.items:
            name = names[id(item)]
            stems.append(Path(name).stem)
            copy_image(ItemRecord(name, item.source), out / "JPEGImages")
            tree = ET.ElementTree(_annotation(item, name))
            ET.indent(tree)
            tree.write(out / "Annotations" / f"{Path(name).stem}.xml", encoding="utf-8", xml_declaration=True)
        (out / "ImageSets" / "Main" / f"{dataset.name}.txt").write_text("".join(f"{s}\n" for s in stems))


def _annotation(item: ItemRecord, name: str) -> ET.Element:
    root = ET.Element("annotation")
    _sub(root, "folder", "JPEGImages")
    _sub(root, "filename", name)
    _sub(_sub(root, "source"), "database", "picsift")
    size = _sub(root, "size")
    for key, value in (("width", item.width), ("height", item.height), ("depth", 3)):
        _sub(size, key, str(value))
    _sub(root, "segmented", "0")
    _write_attributes(root, item.tags)
    for obj in item.objects:
        element = _sub(root, "object")
        _sub(element, "name", obj.cls)
        flags = {n for n, v in obj.tags if n in FLAGS and v is None}
        poses = [v for n, v in obj.tags if n == "pose" and isinstance(v, str)]
        _sub(element, "pose", poses[0] if poses else "Unspecified")
        for flag in FLAGS:
            _sub(element, flag, "1" if flag in flags else "0")
        x1, y1, x2, y2 = obj.bbox()
        box = _sub(element, "bndbox")
        for key, corner in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            _sub(box, key, str(round(corner)))
        if obj.geometry == "polygon":
            polygon = _sub(element, "polygon")
            for i, (x, y) in enumerate(obj.points, start=1):
                _sub(polygon, f"x{i}", str(round(x)))
                _sub(polygon, f"y{i}", str(round(y)))
        rest = [(n, v) for n, v in obj.tags if not ((n in FLAGS and v is None) or (n == "pose" and v in poses[:1]))]
        _write_attributes(element, rest)
    return root


def _write_attributes(element: ET.Element, tags: list[tuple[str, TagValue]]) -> None:
    if not tags:
        return
    attributes = _sub(element, "attributes")
    for name, value in tags:
        attribute = _sub(attributes, "attribute")
        _sub(attribute, "name", name)
        if value is not None:
            _sub(attribute, "value", str(value))


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = text
    return child
