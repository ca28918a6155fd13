"""``bench/ingest.py --objects``: embedding labelled objects' crops with ``update()`` versus the model alone.

Scenes (640x480 JPEGs, generated from Tux Paint stamps with a fixed seed) each hold ``per_scene`` pasted stamps,
labelled as boxes. The images are embedded first (not timed); then, with the same model object, batch size and
torch threads:

* **model-only per crop**: ``encode_image`` + normalise on the crops' tensors, cut (10% margin, 32 px minimum)
  and preprocessed beforehand: the bound no pipeline beats;
* **picsift**: ``lib.update()`` on a copy of that workspace, which embeds every object: read and hash each
  image, decode it once, cut and prepare its crops on two threads, embed, vectors fsynced and rows committed per
  batch.

Bytes per object: the object store's files plus what the catalog grew by, divided by the objects.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import folder_bytes, median, table, timed
from PIL import Image

from picsift import Library
from picsift.core.objects import crop_region
from picsift.embedding import Embedder, decode_image

GOAL = 0.8  # picsift / model-only, objects per second


def make_scenes(folder: Path, stamps: list[Path], n: int, per_scene: int, seed: int = 0) -> list[list[tuple]]:
    """``n`` scenes with ``per_scene`` stamps each; returns each scene's boxes ``(x1, y1, x2, y2)``."""
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(n):
        scene = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(180, 250, 3)))
        placed = []
        for _ in range(per_scene):
            with Image.open(stamps[int(rng.integers(len(stamps)))]) as stamp:
                stamp = stamp.convert("RGBA")
                stamp.thumbnail((int(rng.integers(40, 200)),) * 2)
            x, y = int(rng.integers(0, 640 - stamp.width)), int(rng.integers(0, 480 - stamp.height))
            scene.paste(stamp, (x, y), stamp)
            placed.append((x, y, x + stamp.width, y + stamp.height))
        scene.save(folder / f"scene{i:04d}.jpg", quality=90)
        boxes.append(placed)
    return boxes


def catalog_bytes(workspace: Path) -> int:
    """The catalog's pages in use (its write-ahead log folded in first): what its rows take."""
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count",
                                                                                 "page_size"))
    return int((pages - free) * size)


def run(stamps: list[Path], model: str, batch_size: int, n_scenes: int, per_scene: int, repeats: int,
        tmp: Path) -> None:
    folder = tmp / "scenes"
    folder.mkdir()
    boxes = make_scenes(folder, stamps, n_scenes, per_scene)
    embedder = Embedder(model, device="cpu", batch_size=batch_size)
    base = tmp / "base"
    lib = Library(folder, workspace=base, model=model, index="exact", batch_size=batch_size)
    lib._engine._embedder = embedder
    lib.update(progress=False, objects=False)
    for path, placed in zip(sorted(folder.glob("*.jpg")), boxes, strict=True):
        for box in placed:
            lib.labels.add_object(path, "stamp", bbox=box)
    lib.close()
    n = n_scenes * per_scene
    # the bound: the same crops, preprocessed beforehand
    crops = []
    for path, placed in zip(sorted(folder.glob("*.jpg")), boxes, strict=True):
        picture = decode_image(path.read_bytes()).image
        for x1, y1, x2, y2 in placed:
            crops.append(embedder.preprocess(picture.crop(crop_region((x1, y1, x2 - x1, y2 - y1), *picture.size))))
    batches = [torch.stack(crops[s : s + batch_size]) for s in range(0, n, batch_size)]
    model_ = embedder._model

    def model_only() -> float:
        with torch.inference_mode():
            for batch in batches:
                torch.nn.functional.normalize(model_.encode_image(batch), dim=-1).numpy()
        return 0.0

    model_only()  # warm-up
    rates: dict[str, list[float]] = {"model-only": [], "picsift": []}
    grew = stored = 0
    for r in range(repeats):
        workspace = tmp / f"ws{r}"
        shutil.copytree(base, workspace)
        catalog_before = catalog_bytes(workspace)
        seconds_model, _ = timed(model_only)
        with Library(folder, workspace=workspace, model=model, index="exact", batch_size=batch_size) as run_lib:
            run_lib._engine._embedder = embedder
            seconds, report = timed(lambda: run_lib.update(progress=False))
            assert report.objects == n, f"embedded {report.objects} of {n} objects"
            store = run_lib._engine.object_store(create=False)
            assert store is not None
            stored = folder_bytes(store.folder)
        grew = catalog_bytes(workspace) - catalog_before
        rates["model-only"].append(n / seconds_model)
        rates["picsift"].append(n / seconds)
        print(f"  round {r + 1}/{repeats}: model-only {rates['model-only'][-1]:.1f} obj/s, "
              f"picsift {rates['picsift'][-1]:.1f} obj/s", flush=True)
        shutil.rmtree(workspace, ignore_errors=True)
    best = {k: max(v) for k, v in rates.items()}
    per_round = [p / m for p, m in zip(rates["picsift"], rates["model-only"], strict=True)]
    ratio = best["picsift"] / best["model-only"]
    print(f"\n{n} objects on {n_scenes} scenes (640x480 JPEG), {embedder.label}, batch {batch_size}:")
    print(table([[n, best["model-only"], best["picsift"], f"{ratio:.2f}x (median {median(per_round):.2f}x)",
                  stored / n, max(grew, 0) / n]],
                ["objects", "model-only obj/s", "picsift obj/s", "picsift/model-only", "store bytes/object",
                 "catalog bytes/object"]))
    print(f"\ngoal: picsift/model-only per crop >= {GOAL}x: {ratio:.2f}x {'MET' if ratio >= GOAL else 'NOT MET'}")


def main_objects(args: object, stamps: list[Path]) -> None:
    with tempfile.TemporaryDirectory(prefix="picsift-bench-objects-") as tmp:
        run(stamps, args.model, args.batch_size, args.n_scenes, args.per_scene, args.repeats,  # type: ignore[attr-defined]
            Path(tmp))
