"""Object label mistakes with planted flips (``bench/label_mistakes.py --objects N``), through the library.

Data: ``N`` scenes of Tux Paint stamps pasted onto textured backgrounds, three per scene (tests/scenes.py: a
COCO project with the boxes we know), imported and updated with the offline model, so every box's crop is
embedded as ``update`` does it. Flips are set on the objects' classes (a class change keeps the crop's
embedding), uniformly or to the nearest confusable class, at each rate, then restored. Methods, on the same flips:

- ``picsift``: ``lib.label_mistakes("objects", limit=None)`` (the objects' neighbour graph x the class prompts,
  cleanlab's label quality), timed;
- ``picsift-knn`` / ``picsift-prompts``: each of its two signals alone, through the same cleanlab scoring;
- ``datalab``: cleanlab ``Datalab.find_issues(features=...)`` on the crops' features (its own neighbours);
- ``knn-vote``: 1 - the share of the 10 nearest objects (the objects' graph) with the same class;
- ``random``.

Empty boxes: each scene's empty cell cut as a box and given the class of an object of that scene, against the
real boxes: the share of empty boxes flagged and of real boxes flagged by picsift's rule (fit < 0.25, see
:mod:`picsift.analysis.health.objects`) and by "the crop fits its class prompt worse than the background"
with the background the whole image, or the image with its boxes filled with its mean colour.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.scenes builds the scenes


def object_rows(scenes: int, rates: list[float], flip: Any, datalab: Any, log: Any) -> tuple[list[list[object]],
                                                                                             list[list[object]]]:
    """Rows of the flip table (set, noise, rate, method, AUROC, precision@n, seconds, note), and of the
    empty-box table (rule, empty boxes flagged, real boxes flagged)."""
    from sklearn.metrics import roc_auc_score
    from tests.scenes import CLASSES, make_scenes

    from picsift import Library
    from picsift.core.objects import live_objects
    from picsift.demo import fetch_tuxpaint

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        made = make_scenes(Path(tmp), fetch_tuxpaint(), scenes=scenes, flips=0, plant_boxes=False)
        (Path(tmp) / "lib").mkdir()
        with Library(Path(tmp) / "lib", model="picsift-offline", index="exact") as lib:
            lib.labels.import_project(made.project, "coco")
            start = time.perf_counter()
            lib.update(progress=False)
            log(f"# object scenes: {scenes} scenes, update (images and crops) {time.perf_counter() - start:.1f} s")
            store = lib._engine.object_store(create=False)
            assert store is not None
            snapshot = store.snapshot()
            live = live_objects(lib.catalog)
            ids = snapshot.ids.tolist()
            x = snapshot.vectors()
            y = np.array([CLASSES.index(live[i].cls) for i in ids])
            label_ids = [live[i].catalog_id for i in ids]
            graph = lib.object_neighbours.graph()
            near = graph.positions[graph.rows_of(ids), :10]
            name = f"object scenes ({len(ids)} boxes)"
            for kind in ("uniform", "confusable"):
                for rate in rates:
                    noisy, truth = flip(y, x, rate, kind, seed=int(rate * 100))
                    for n in np.flatnonzero(noisy != y):
                        lib.labels.set_object_class(label_ids[n], CLASSES[noisy[n]])
                    start = time.perf_counter()
                    found = lib.label_mistakes("objects", limit=None)
                    seconds = time.perf_counter() - start
                    by_id = dict(zip(found.ids.tolist(), np.asarray(found.result_scores).tolist(), strict=True))
                    scores = {"picsift": (np.array([by_id[i] for i in ids]), seconds)}
                    scores.update(ablation(lib, ids))
                    weight = found.recipe.info["prompt_weight"], found.recipe.info["prompt_temperature"]
                    start = time.perf_counter()
                    scores["datalab"] = (datalab(x, noisy), time.perf_counter() - start)
                    scores["knn-vote"] = (1 - (noisy[np.maximum(near, 0)] == noisy[:, None]).mean(axis=1), 0.0)
                    scores["random"] = (np.random.default_rng(1).random(len(ids)), 0.0)
                    flips = int(truth.sum())
                    for method, (score, took) in scores.items():
                        top = np.argsort(-score, kind="stable")[:flips]
                        note = f"{flips} flips" + (f", w={weight[0]:.1f} T={weight[1]}" if method == "picsift" else "")
                        rows.append([name, kind, f"{rate:.0%}", method, round(roc_auc_score(truth, score), 3),
                                     round(float(truth[top].mean()), 3), round(took, 2), note])
                    for n in np.flatnonzero(noisy != y):
                        lib.labels.set_object_class(label_ids[n], CLASSES[y[n]])
                    log(f"#   objects {kind} {rate:.0%} done")
            empty = empty_box_rows(lib, made, ids, x, y, live)
    return rows, empty


def ablation(lib: Any, ids: list[str]) -> dict[str, tuple[np.ndarray, float]]:
    """Each signal of ``picsift`` alone through the same cleanlab scoring: the objects' neighbours, the prompts."""
    from picsift.analysis.health import signals

    verdict = lib._object_checks.verdict()
    codes, votes, classes = verdict.codes, verdict.votes.probabilities, len(verdict.classes)
    prompts = signals.combine(np.full_like(votes, 1 / classes), verdict.prompt_scores, codes).probabilities
    row_of = {i: n for n, i in enumerate(verdict.labels.ids.tolist())}
    rows = np.array([row_of[i] for i in ids])
    return {"picsift-knn": (signals.cleanlab_issues(codes, votes)[1][rows], 0.0),
            "picsift-prompts": (signals.cleanlab_issues(codes, prompts)[1][rows], 0.0)}


def empty_box_rows(lib: Any, made: Any, ids: list[str], x: np.ndarray, y: np.ndarray,
                   live: Any) -> list[list[object]]:
    """Each scene's empty cell as a planted empty box (given the class of the scene's first object) against the
    real boxes, under each rule."""
    from PIL import Image
    from tests.scenes import CELL, CLASSES, SIDE

    from picsift.analysis.health.fields import words
    from picsift.analysis.health.objects import EMPTY_FIT
    from picsift.analysis.health.signals import class_text_vectors
    from picsift.core.objects import crop_region

    text = class_text_vectors([words(c) for c in CLASSES], lib.embedder.embed_text)
    images = lib.images()
    path_of = dict(zip(images["id"], images["path"], strict=True))
    image_of = np.array([live[i].image_id for i in ids])
    pictures = {i: Image.open(path_of[i]).convert("RGB") for i in sorted(set(image_of.tolist()))}
    masked = {}
    empties, empty_labels, empty_images = [], [], []
    for image_id, picture in pictures.items():
        pixels = np.asarray(picture).copy()
        mean = pixels.reshape(-1, 3).mean(axis=0)
        cells = set(range(4))
        first = None
        for n in np.flatnonzero(image_of == image_id):
            bx, by, bw, bh = (round(v) for v in live[ids[n]].box)
            pixels[by : by + bh, bx : bx + bw] = mean
            cells.discard(int(bx + bw / 2) // CELL + 2 * (int(by + bh / 2) // CELL))
            first = y[n] if first is None else first
        masked[image_id] = Image.fromarray(pixels)
        if cells and first is not None:
            cell = min(cells)
            box = (cell % 2 * CELL + 16, cell // 2 * CELL + 16, 72, 72)
            empties.append(lib.embedder.prepare(picture.crop(crop_region(box, SIDE, SIDE))))
            empty_labels.append(first)
            empty_images.append(image_id)
    e = np.asarray(lib.embedder.embed_prepared(empties))
    labels = np.array(empty_labels)
    whole_store = lib.store.snapshot()
    whole = {i: whole_store.vectors(np.array([whole_store.position[i]]))[0] for i in pictures}
    order = list(masked)
    masked_vectors = dict(zip(order, np.asarray(lib.embedder.embed_images([masked[i] for i in order])), strict=True))
    real_fit = (x * text[y]).sum(axis=1)
    empty_fit = (e * text[labels]).sum(axis=1)
    scores = x @ text.T
    own = np.array([scores[y == c, c].mean() for c in range(len(CLASSES))])
    other = np.array([scores[y != c, c].mean() for c in range(len(CLASSES))])
    rows: list[list[object]] = []
    rule_real = (real_fit - other[y]) / (own - other)[y] < EMPTY_FIT
    rule_empty = (empty_fit - other[labels]) / (own - other)[labels] < EMPTY_FIT
    rows.append([f"picsift: fit < {EMPTY_FIT} (0: other classes' boxes, 1: its own)",
                 round(float(rule_empty.mean()), 3), round(float(rule_real.mean()), 3)])
    for name, background in (("whole image", whole), ("image outside the boxes (mean fill)", masked_vectors)):
        real_bg = np.array([background[i] @ text[c] for i, c in zip(image_of, y, strict=True)])
        empty_bg = np.array([background[i] @ text[c] for i, c in zip(empty_images, labels, strict=True)])
        rows.append([f"crop fits worse than the {name}", round(float((empty_fit < empty_bg).mean()), 3),
                     round(float((real_fit < real_bg).mean()), 3)])
    rows.append([f"({len(e)} empty boxes, {len(x)} real boxes)", "", ""])
    return rows
