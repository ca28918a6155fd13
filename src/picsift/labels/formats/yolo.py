"""YOLO (Ultralytics / Darknet) labels.

::

    project/
      data.yaml                 names: [cat, dog]  (or a {0: cat} mapping; or classes.txt, one name a line)
      images/SPLIT/NAME.png     one dataset per SPLIT; images/NAME.png alone makes one dataset, "default"
      labels/SPLIT/NAME.txt     "class cx cy w h" per box, normalised to [0, 1];
                                "class x1 y1 x2 y2 x3 y3 ..." per polygon (YOLO segmentation)

YOLO has no tags or authors; exports carry classes and geometry only.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path

from ...core.catalog import scan
from ...errors import PicsiftError
from ...safe_paths import project_file
from . import DatasetRecord, ItemRecord, ObjectRecord, Project, copy_image, free_stem, image_size, reading

log = logging.getLogger(__name__)

DEFAULT_DATASET = "default"


def read(source: Path) -> Project:
    if not (source / "images").is_dir():
        raise PicsiftError(f"{source} is not a YOLO project: it has no images/ folder")
    names = _class_names(source)
    project = Project(source.name, classes=dict.fromkeys(names, "any"))
    splits = sorted(p for p in (source / "images").iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = [(p.name, p, source / "labels" / p.name) for p in splits] or [
        (DEFAULT_DATASET, source / "images", source / "labels")
    ]
    for name, images, labels in folders:
        dataset = DatasetRecord(name)
        for relative in scan(images).files:
            image = project_file(source, images / relative, "YOLO image")
            item = ItemRecord(Path(relative).name, image)
            item.width, item.height = image_size(image)
            label_file = labels / Path(relative).with_suffix(".txt")
            if os.path.lexists(label_file):
                label_file = project_file(source, label_file, "YOLO label file")
                item.annotations = label_file
                with reading(label_file):
                    item.objects = _read_labels(label_file, names, item.width, item.height)
            dataset.items.append(item)
        project.datasets.append(dataset)
    return project


def _read_labels(file: Path, names: list[str], width: int, height: int) -> list[ObjectRecord]:
    objects = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            index, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError as e:
            raise PicsiftError(f"{file}:{number}: expected 'class cx cy w h', got {line[:80]!r}") from e
        if not 0 <= index < len(names):
            raise PicsiftError(f"{file}:{number}: class {index} is not among the {len(names)} names {names[:20]}")
        if not all(math.isfinite(v) for v in values):
            raise PicsiftError(f"{file}:{number}: coordinates must be finite numbers, got {line[:80]!r}")
        if len(values) == 4:
            cx, cy, w, h = values
            points = [[(cx - w / 2) * width, (cy - h / 2) * height], [(cx + w / 2) * width, (cy + h / 2) * height]]
            objects.append(ObjectRecord(names[index], "rectangle", points))
        elif len(values) >= 6 and len(values) % 2 == 0:
            points = [[values[i] * width, values[i + 1] * height] for i in range(0, len(values), 2)]
            objects.append(ObjectRecord(names[index], "polygon", points))
        else:
            raise PicsiftError(f"{file}:{number}: expected 4 box values or an even number >= 6 of polygon "
                               f"coordinates after the class, got {len(values)}")
    return objects


def _class_names(source: Path) -> list[str]:
    for name in ("data.yaml", "data.yml", "dataset.yaml", "classes.txt"):
        if not os.path.lexists(source / name):
            continue
        file = project_file(source, source / name, "YOLO class names file")
        with reading(file):
            text = file.read_text(encoding="utf-8")
            if name == "classes.txt":
                return [line.strip() for line in text.splitlines() if line.strip()]
            return parse_names(text, file)
    raise PicsiftError(f"YOLO project {source} has no class names: add data.yaml (names: [...]) or classes.txt")


def parse_names(text: str, where: Path) -> list[str]:
    """The ``names`` of a data.yaml: a flow list, a block list or an index mapping (no YAML library needed)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        rest = line.split(":", 1)[1].split(" #")[0].strip()
        if rest:
            try:
                value = ast.literal_eval(rest) if rest.startswith(("[", "{")) else None
            except (ValueError, SyntaxError):
                value = [v.strip().strip("'\"") for v in rest.strip("[]").split(",") if v.strip()]
            if isinstance(value, dict):
                return [str(value[k]) for k in sorted(value)]
            if isinstance(value, list):
                return [str(v) for v in value]
            break
        names: dict[int, str] = {}
        for entry in lines[number + 1 :]:
            if entry.strip() and not entry.startswith((" ", "\t", "-")):
                break
            item = entry.split(" #")[0].strip()
            if item.startswith("-"):
                names[len(names)] = item[1:].strip().strip("'\"")
            elif ":" in item:
                key, value = item.split(":", 1)
                names[int(key)] = value.strip().strip("'\"")
        return [names[k] for k in sorted(names)]
    raise PicsiftError(f"{where} has no 'names:' list of classes")


def write(project: Project, out: Path) -> None:
    classes = project.class_names()
    index = {c: i for i, c in enumerate(classes)}
    lines = ["path: .", *(f"{d.name}: images/{d.name}" for d in project.datasets), "names:"]
    lines += [f"  {i}: {json.dumps(c)}" for i, c in enumerate(classes)]
    (out / "data.yaml").write_text("\n".join(lines) + "\n")
    for dataset in project.datasets:
        labels = out / "labels" / dataset.name
        labels.mkdir(parents=True, exist_ok=True)
        stems: set[str] = set()
        for item in dataset.items:
            item = _with_free_stem(item, stems)
            copy_image(item, out / "images" / dataset.name)
            if not (item.width and item.height):
                raise PicsiftError(f"{item.source}: image size unknown, cannot normalise its labels")
            rows = [_label(index[o.cls], o, item.width, item.height) for o in item.objects]
            (labels / Path(item.name).with_suffix(".txt")).write_text("".join(f"{r}\n" for r in rows))
            if item.tags or any(o.tags for o in item.objects):
                log.info("%s: YOLO has no tags; its tags are not exported", item.name)


def _with_free_stem(item: ItemRecord, stems: set[str]) -> ItemRecord:
    """``item``, renamed when another image of its dataset has its stem (``a.png`` and ``a.jpg`` would share
    ``labels/a.txt``); stems compare case-insensitively, as on some file systems."""
    name = free_stem(item.name, stems)
    if name != item.name:
        log.info("%s exported as %s: another image of the dataset has its stem", item.name, name)
    return replace(item, name=name)


def _label(index: int, obj: ObjectRecord, width: int, height: int) -> str:
    if obj.geometry == "rectangle":
        x1, y1, x2, y2 = obj.bbox()
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
    else:
        values = [v for x, y in obj.points for v in (x / width, y / height)]
    return " ".join([str(index), *(f"{v:.6f}" for v in values)])
