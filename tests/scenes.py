"""A small detection set with boxes we know, built deterministically from real images: Tux Paint stamps (photos
and drawings cut out with their alpha) pasted onto textured backgrounds, three per scene, written as a COCO
project. Used by tests/test_object_health.py and bench/label_mistakes.py ``--objects``.

Each scene is a 2x2 grid of cells; three cells hold one stamp each (a random scale and position inside the cell),
the fourth stays empty (where a planted "empty box" goes). A box is the stamp's opaque pixels' bounding box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("animals", "vehicles", "food", "plants")
SIDE = 224
CELL = SIDE // 2


@dataclass
class Scenes:
    """A COCO project and what was planted in it. Boxes are ``[x, y, w, h]``; annotation ids index ``truth``."""

    project: Path
    truth: dict[int, str]  # annotation id -> the class of what is in the box
    given: dict[int, str]  # annotation id -> the class written in the project
    flipped: list[int] = field(default_factory=list)
    duplicate: int | None = None  # the annotation that copies another's box, shifted by 2 px
    empty: int | None = None  # the annotation whose box holds only background
    boxes: dict[int, list[float]] = field(default_factory=dict)
    files: dict[int, str] = field(default_factory=dict)  # annotation id -> file name


def _background(rng: np.random.Generator) -> Image.Image:
    """A pale two-colour gradient with fine noise: no object, a little texture."""
    a, b = rng.uniform(150, 250, 3), rng.uniform(150, 250, 3)
    t = np.linspace(0, 1, SIDE)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, SIDE)[:, None, None]
    pixels = a * (1 - t) + b * t + rng.normal(0, 6, (SIDE, SIDE, 3))
    return Image.fromarray(np.clip(np.broadcast_to(pixels, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8))


def _stamps(stamps_root: Path, per_class: int) -> dict[str, list[Path]]:
    return {c: sorted((stamps_root / c).rglob("*.png"))[:per_class] for c in CLASSES}


def make_scenes(root: Path, stamps_root: Path, scenes: int = 32, flips: int = 8, seed: int = 0,
                plant_boxes: bool = True) -> Scenes:
    """Write ``scenes`` scenes (3 objects each) as the COCO project ``root/scenes``, ``flips`` of the boxes given
    another class; with ``plant_boxes`` also one duplicate box and one empty box (on two different scenes)."""
    rng = np.random.default_rng(seed)
    sources = _stamps(stamps_root, max(8, scenes))
    project = root / "scenes"
    (project / "images" / "train").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    out = Scenes(project, {}, {})
    used = {c: 0 for c in CLASSES}
    for n in range(scenes):
        picture = _background(rng)
        cells = rng.permutation(4)
        name = f"scene{n:03d}.png"
        for cell in cells[:3]:
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
            stamp = Image.open(sources[cls][used[cls] % len(sources[cls])]).convert("RGBA")
            used[cls] += 1
            size = int(rng.integers(64, CELL - 8))
            stamp.thumbnail((size, size))
            bbox = stamp.getchannel("A").getbbox() or (0, 0, *stamp.size)
            stamp = stamp.crop(bbox)
            x0 = int(cell % 2) * CELL + int(rng.integers(0, CELL - stamp.width + 1))
            y0 = int(cell // 2) * CELL + int(rng.integers(0, CELL - stamp.height + 1))
            picture.paste(stamp, (x0, y0), stamp)
            key = len(annotations) + 1
            out.truth[key] = out.given[key] = cls
            out.boxes[key] = [float(x0), float(y0), float(stamp.width), float(stamp.height)]
            out.files[key] = name
            annotations.append({"id": key, "image_id": n + 1, "bbox": out.boxes[key]})
        picture.save(project / "images" / "train" / name)
        images.append({"id": n + 1, "file_name": name, "width": SIDE, "height": SIDE, "empty_cell": int(cells[3])})
    for key in sorted(rng.choice(len(annotations), flips, replace=False) + 1):
        others = [c for c in CLASSES if c != out.truth[int(key)]]
        out.given[int(key)] = others[int(rng.integers(len(others)))]
        out.flipped.append(int(key))
    if plant_boxes:
        clean = [a for a in annotations if a["id"] not in out.flipped]
        original = clean[0]
        x, y, w, h = original["bbox"]
        key = len(annotations) + 1
        out.duplicate = key
        out.truth[key] = out.given[key] = out.given[original["id"]]
        out.boxes[key] = [x + 2, y + 2, w - 2, h - 2]
        out.files[key] = out.files[original["id"]]
        annotations.append({"id": key, "image_id": original["image_id"], "bbox": out.boxes[key]})
        scene = images[-1]  # the empty cell of the last scene, labelled with one of that scene's classes
        cell = scene["empty_cell"]
        key = len(annotations) + 1
        out.empty = key
        neighbour = next(a for a in annotations if a["image_id"] == scene["id"])
        out.given[key] = out.given[neighbour["id"]]
        out.truth[key] = "background"
        out.boxes[key] = [float(cell % 2 * CELL + 16), float(cell // 2 * CELL + 16), 72.0, 72.0]
        out.files[key] = scene["file_name"]
        annotations.append({"id": key, "image_id": scene["id"], "bbox": out.boxes[key]})
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    coco = {"images": [{k: v for k, v in i.items() if k != "empty_cell"} for i in images],
            "annotations": [{**a, "category_id": CLASSES.index(out.given[a["id"]]) + 1,
                             "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0, "segmentation": []}
                            for a in annotations],
            "categories": categories}
    (project / "annotations").mkdir(exist_ok=True)
    (project / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    return out
