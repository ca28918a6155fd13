"""The detection set of ``bench/objects.py``: Tux Paint stamps pasted onto generated backgrounds, boxes known.

Deterministic (seeded numpy and Pillow only), built once into ``~/.cache/picsift/bench/objects-v1/``:

* ``sources/CLASS/NAME.png``: every stamp of :data:`CLASSES` alone, flattened on white (the isolated images);
* ``coco/``: a COCO project (``annotations/instances_scenes.json``, ``images/scenes/``): each stamp pasted once,
  3-6 per 640x480 scene, at random scales (box 2-25% of the picture) and positions (overlap IoU < 0.1), with
  ``flip_rate`` of the boxes given another class (uniformly, seeded): the planted label mistakes;
* ``small/``: per class ``small_per_class`` 640x480 scenes holding one stamp of it covering 1.5-8% of the picture,
  and ``distractors`` larger stamps (10-25%) of other classes: a small thing beside big ones, as in a photo;
* ``truth.json``: every box's true class, whether it was flipped, and the small scenes' classes and areas.

Backgrounds are generated, not photos (no registry ships photos of empty scenes): a sky-to-ground gradient with a
seeded horizon, soft blobs and noise, so that nothing in them looks like one of the classes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

#: class -> (Tux Paint stamp folder, the prompt searched for it)
CLASSES: dict[str, tuple[str, str]] = {
    "bird": ("animals/birds", "a bird"),
    "mammal": ("animals/mammals", "a mammal"),
    "insect": ("animals/insects", "an insect"),
    "fruit": ("food/fruit", "a fruit"),
    "vegetable": ("food/vegetables", "a vegetable"),
    "flower": ("plants/flowers", "a flower"),
    "house": ("town/houses", "a house"),
    "money": ("symbols/money", "money, a coin or a banknote"),
}
SIZE = (640, 480)
VERSION = "objects-v1"


def cut_out(path: Path) -> Image.Image:
    """A stamp as RGBA, cropped to its opaque pixels."""
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    box = rgba.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    return rgba.crop(box) if box else rgba


def on_white(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def background(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> Image.Image:
    """A generated outdoor-like backdrop: sky gradient, ground from a seeded horizon, soft blobs, noise."""
    width, height = size
    sky_top, sky_low = rng.uniform(90, 230, 3), rng.uniform(150, 250, 3)
    ground_top, ground_low = rng.uniform(40, 200, 3), rng.uniform(20, 160, 3)
    horizon = rng.uniform(0.35, 0.7) * height
    y = np.arange(height)[:, None, None].astype(np.float32)
    t_sky = np.clip(y / max(horizon, 1), 0, 1)
    t_ground = np.clip((y - horizon) / max(height - horizon, 1), 0, 1)
    sky = sky_top + (sky_low - sky_top) * t_sky
    ground = ground_top + (ground_low - ground_top) * t_ground
    picture = np.where(y < horizon, sky, ground) * np.ones((1, width, 1), np.float32)
    layer = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    blobs = Image.new("RGBA", size, (0, 0, 0, 0))
    for _ in range(int(rng.integers(4, 10))):
        radius = float(rng.uniform(20, 120))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        color = (*[int(c) for c in rng.uniform(0, 255, 3)], int(rng.uniform(40, 110)))
        disc = Image.new("RGBA", size, (0, 0, 0, 0))
        disc.paste(color, (int(cx - radius), int(cy - radius), int(cx + radius), int(cy + radius)))
        blobs = Image.alpha_composite(blobs, disc.filter(ImageFilter.GaussianBlur(radius / 2)))
    layer = Image.alpha_composite(layer.convert("RGBA"), blobs).convert("RGB")
    noisy = np.asarray(layer, np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def paste(scene: Image.Image, stamp: Image.Image, area: float, placed: list[list[float]],
          rng: np.random.Generator) -> list[float]:
    """Paste ``stamp`` scaled so its box covers ``area`` of the scene, away from ``placed`` boxes; its box."""
    width, height = scene.size
    scale = np.sqrt(area * width * height / (stamp.width * stamp.height))
    w = max(8, min(width - 2, round(stamp.width * scale)))
    h = max(8, min(height - 2, round(stamp.height * scale)))
    resized = stamp.resize((w, h), Image.LANCZOS)
    box = [0.0, 0.0, float(w), float(h)]
    for _ in range(40):
        box = [float(rng.integers(0, width - w + 1)), float(rng.integers(0, height - h + 1)), float(w), float(h)]
        if all(_iou(box, other) < 0.1 for other in placed):
            break
    scene.paste(resized, (int(box[0]), int(box[1])), mask=resized.getchannel("A"))
    return box


def build(stamps_root: Path, cache: Path, *, small_per_class: int = 15, flip_rate: float = 0.1,
          distractors: int = 2, seed: int = 0) -> Path:
    """Write the set into ``cache / VERSION-...`` (once) and return that folder."""
    out = cache / f"{VERSION}-s{small_per_class}-f{int(flip_rate * 100)}-d{distractors}-seed{seed}"
    if (out / "truth.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)  # a build that was interrupted
    rng = np.random.default_rng(seed)
    sources: list[tuple[str, Path]] = []
    for cls, (folder, _) in CLASSES.items():
        sources += [(cls, p) for p in sorted((stamps_root / folder).rglob("*.png"))]
    stamps = {p: cut_out(p) for _, p in sources}
    source_name = {p: f"{cls}/{n:03d}-{p.stem}.png" for n, (cls, p) in enumerate(sources)}
    for _cls, path in sources:
        target = out / "sources" / source_name[path]
        target.parent.mkdir(parents=True, exist_ok=True)
        on_white(stamps[path]).save(target)

    order = rng.permutation(len(sources))
    groups, start = [], 0
    while start < len(order):
        n = int(rng.integers(3, 7))
        groups.append(order[start : start + n])
        start += n
    names = list(CLASSES)
    images, annotations, boxes = [], [], []
    (out / "coco" / "images" / "scenes").mkdir(parents=True)
    for number, group in enumerate(groups, start=1):
        scene, placed = background(rng), []
        file_name = f"scene-{number:04d}.png"
        for index in group:
            cls, path = sources[index]
            area = float(np.exp(rng.uniform(np.log(0.02), np.log(0.25))))
            box = paste(scene, stamps[path], area, placed, rng)
            placed.append(box)
            flipped = bool(rng.random() < flip_rate)
            given = names[(names.index(cls) + int(rng.integers(1, len(names)))) % len(names)] if flipped else cls
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": names.index(given) + 1,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0, "segmentation": []})
            boxes.append({"file": file_name, "box": box, "class": cls, "given": given, "flipped": flipped,
                          "source": source_name[path], "area": box[2] * box[3] / (SIZE[0] * SIZE[1])})
        scene.save(out / "coco" / "images" / "scenes" / file_name)
        images.append({"id": number, "file_name": file_name, "width": SIZE[0], "height": SIZE[1]})
    categories = [{"id": n + 1, "name": c} for n, c in enumerate(names)]
    (out / "coco" / "annotations").mkdir(parents=True)
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (out / "coco" / "annotations" / "instances_scenes.json").write_text(json.dumps(coco))

    small: list[dict[str, Any]] = []
    (out / "small").mkdir()
    for cls in names:
        pool = [p for c, p in sources if c == cls]
        for k in range(small_per_class):
            path = pool[int(rng.integers(0, len(pool)))]
            scene = background(rng)
            others = [p for c, p in sources if c != cls]
            placed = [paste(scene, stamps[others[int(rng.integers(0, len(others)))]],
                            float(rng.uniform(0.10, 0.25)), [], rng) for _ in range(distractors)]
            box = paste(scene, stamps[path], float(rng.uniform(0.015, 0.08)), placed, rng)
            file_name = f"{cls}-{k:02d}.png"
            scene.save(out / "small" / file_name)
            small.append({"file": file_name, "class": cls, "box": box,
                          "area": box[2] * box[3] / (SIZE[0] * SIZE[1])})
    truth = {"classes": {c: prompt for c, (_, prompt) in CLASSES.items()}, "boxes": boxes, "small": small,
             "sources": [source_name[p] for _, p in sources]}
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return out
