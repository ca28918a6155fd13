"""Label mistakes without a trained model, against its rivals in the same run, and the neighbour graph at scale.

Quality: real images embedded with picsift's offline model (Tux Paint stamps by top-level folder, a seeded
subset of Fashion-MNIST's test split, every Noto emoji by its emoji.json category, and a seeded subset of
OpenClipart by top-level folder; emoji and clip art are fetched by training/fetch_data.py into
~/.cache/picsift/training, and since the offline model trained on most of them, their rows are also given for the
images it held out, as "SET, unseen"), labels flipped with a seed at 5 / 10 / 20%, either uniformly or to the
nearest confusable class (the class whose centroid is nearest the true one's: the realistic kind). Methods:

- ``picsift``: what ``lib.label_mistakes`` runs (graph neighbour votes x calibrated prompts, mixed by the
  likelihood of the given labels, cleanlab's label quality); ``picsift-knn`` / ``picsift-prompts``: each signal
  alone through the same cleanlab scoring (the ablation behind the mixing rule); ``picsift+plain``: the fit also
  offered plain zero-shot logits (100 x cosine) beside the calibrated prompts (measured, not adopted);
- ``datalab``: cleanlab ``Datalab.find_issues(features=...)`` on the raw features (its own neighbours);
- ``fiftyone``: FiftyOne Brain's mistakenness formula ``(s * c + 1) / 2`` (``c = exp(-entropy)``, ``s = +1``
  when the prediction disagrees with the label) on zero-shot CLIP probabilities (softmax of 100 x cosine);
- ``knn-vote``: 1 - the share of the 10 nearest neighbours with the same label;
- ``random``.

AUROC (flipped vs not), and precision at n (n = number of flips; recall at n is the same number).

Scale (``--scale N``): synthetic clustered vectors (bench/projection.py's ``make_data``): the graph from an hnsw
index (the index build timed apart: a library already has it), its memory and recall, a refresh after 1% new
images, near duplicates over every image from the graph, label mistakes (neighbour signal) at N, and UMAP at
``--umap-n`` from the graph against UMAP's own neighbour search (time and trustworthiness).

    python bench/label_mistakes.py [--fmnist 3000] [--clipart 3000] [--no-emoji] [--no-stamps]
        [--scale 100000] [--umap-n 20000] [--quick] [--scale-only] [--objects 64] [--objects-only]

Objects (``--objects N``, bench/object_mistakes.py): ``lib.label_mistakes("objects")`` on N scenes of pasted
stamps with planted flips, against Datalab on the crops' features, kNN voting and random; and empty boxes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "training"))

import numpy as np  # noqa: E402
from common import cache_dir, datalab, header, table  # noqa: E402

from picsift.analysis.graph import build, measure_recall, refresh  # noqa: E402
from picsift.analysis.health import signals  # noqa: E402
from picsift.analysis.health.fields import words  # noqa: E402
from picsift.analysis.neighbours import pair_groups  # noqa: E402

FMNIST_CLASSES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                  "ankle boot"]


def log(message: str) -> None:
    print(message, flush=True)


# -- data ---------------------------------------------------------------------------------------------------
def embedder():  # type: ignore[no-untyped-def]
    from picsift.embedding import Embedder
    from picsift.embedding.spec import OFFLINE_MODEL

    return Embedder(OFFLINE_MODEL, device="cpu", batch_size=128)


def stamps(model) -> tuple[np.ndarray, np.ndarray, list[str]]:  # type: ignore[no-untyped-def]
    """Tux Paint stamps of the categories with 30+ images, by top-level folder."""
    path = cache_dir() / "label-mistakes-stamps.npz"
    if path.exists():
        data = np.load(path)
        return data["x"], data["y"], [str(c) for c in data["classes"]]
    from PIL import Image

    from picsift.demo import fetch_tuxpaint

    root = fetch_tuxpaint()
    files = sorted(root.rglob("*.png"))
    category = [f.relative_to(root).parts[0] for f in files]
    classes = sorted(c for c in set(category) if category.count(c) >= 30)
    keep = [i for i, c in enumerate(category) if c in classes]
    images = []
    for i in keep:
        with Image.open(files[i]) as image:
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, "white")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            images.append(flat)
    x = np.concatenate([model.embed_images(images[s : s + 128]) for s in range(0, len(images), 128)])
    y = np.array([classes.index(category[i]) for i in keep])
    np.savez(path, x=x, y=y, classes=np.array(classes))
    return x, y, classes


def fashion_mnist(model, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:  # type: ignore[no-untyped-def]
    path = cache_dir() / f"label-mistakes-fmnist-{n}.npz"
    if path.exists():
        data = np.load(path)
        return data["x"], data["y"], FMNIST_CLASSES
    from PIL import Image
    from training_data import read_idx

    root = Path("/usr/share/datasets/fashion-mnist")
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    pick = np.sort(np.random.default_rng(0).choice(len(labels), min(n, len(labels)), replace=False))
    pils = [Image.fromarray(255 - images[i]).convert("RGB") for i in pick]  # dark object on white
    x = np.concatenate([model.embed_images(pils[s : s + 256]) for s in range(0, len(pils), 256)])
    np.savez(path, x=x, y=labels[pick].astype(np.int64))
    return x, labels[pick].astype(np.int64), FMNIST_CLASSES


def embed(model, images: list) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate([model.embed_images(images[s : s + 128]) for s in range(0, len(images), 128)])


def emoji(model) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:  # type: ignore[no-untyped-def]
    """Noto emoji (emoji-datasource-google, 64 px PNG), label = the category in emoji.json ("Component", the
    skin-tone swatches, left out); every emoji (no subset: about 1.9k). Also whether the image is in the offline
    model's held-out split (the rest it was trained on, with captions naming the category)."""
    path = cache_dir() / "label-mistakes-emoji.npz"
    if path.exists():
        data = np.load(path)
        return data["x"], data["y"], [str(c) for c in data["classes"]], data["held_out"]
    import json

    import training_data as D
    from fetch_data import fetch

    root = fetch("emoji-google")
    meta = [e for e in json.loads((root / "emoji.json").read_text())
            if e.get("category") != "Component" and (root / "img" / e["image"]).is_file()]
    classes = sorted({e["category"] for e in meta})
    images = [D._open_on_white(root / "img" / e["image"]) for e in meta]
    x = embed(model, images)
    y = np.array([classes.index(e["category"]) for e in meta])
    held_out = np.array([D._held_out(f"emoji/{e['unified']}") for e in meta])
    np.savez(path, x=x, y=y, classes=np.array(classes), held_out=held_out)
    return x, y, classes, held_out


def clipart(model, n: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:  # type: ignore[no-untyped-def]
    """OpenClipart PNGs (openclipart-png), label = the top-level folder, read as the offline model's training
    does (at most 150 per folder, blank art dropped); top-level folders with 30+ images; a seeded subset of
    ``n``. Also whether each image is in the model's held-out split."""
    path = cache_dir() / f"label-mistakes-clipart-{n}.npz"
    if path.exists():
        data = np.load(path)
        return data["x"], data["y"], [str(c) for c in data["classes"]], data["held_out"]
    import training_data as D
    from fetch_data import fetch

    root = fetch("openclipart")
    files = [p for p in sorted(root.rglob("*.png"))
             if not any(part in D._CLIPART_SKIP_DIRS for part in p.relative_to(root).parts[:-1])]
    by_dir: dict[Path, list[Path]] = {}
    for p in files:
        by_dir.setdefault(p.parent, []).append(p)
    rng = np.random.default_rng(0)
    kept: list[Path] = []
    for _folder, inside in sorted(by_dir.items()):
        if len(inside) > D.CLIPART_MAX_PER_DIR:
            inside = [inside[i] for i in sorted(rng.choice(len(inside), D.CLIPART_MAX_PER_DIR, replace=False))]
        kept += inside
    category = [p.relative_to(root).parts[0] for p in kept]
    classes = sorted(c for c in set(category) if category.count(c) >= 30)
    pool = [i for i, c in enumerate(category) if c in classes]
    pick = np.sort(np.random.default_rng(0).choice(len(pool), min(n, len(pool)), replace=False))
    images, labels, held_out = [], [], []
    for i in (pool[j] for j in pick):
        try:
            image = D._open_on_white(kept[i])
        except Exception:  # a few files do not open
            continue
        if np.asarray(image.convert("L").resize((32, 32))).min() > 245:  # blank (white art on transparency)
            continue
        image.thumbnail((256, 256))  # some are thousands of pixels wide: thousands of them would not fit in memory
        images.append(image)
        labels.append(category[i])
        held_out.append(D._held_out(f"openclipart/{kept[i].relative_to(root)}"))
    classes = sorted(c for c in set(labels) if labels.count(c) >= 30)
    keep = [j for j, c in enumerate(labels) if c in classes]
    x = embed(model, [images[j] for j in keep])
    y = np.array([classes.index(labels[j]) for j in keep])
    held = np.array([held_out[j] for j in keep])
    np.savez(path, x=x, y=y, classes=np.array(classes), held_out=held)
    return x, y, classes, held


def flip(y: np.ndarray, x: np.ndarray, rate: float, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``rate`` of them flipped (uniformly, or to the class whose centroid is nearest the true one's)."""
    rng = np.random.default_rng(seed)
    classes = int(y.max()) + 1
    flipped = np.sort(rng.choice(len(y), round(rate * len(y)), replace=False))
    noisy = y.copy()
    if kind == "uniform":
        noisy[flipped] = (y[flipped] + rng.integers(1, classes, len(flipped))) % classes
    else:
        centroids = np.stack([x[y == c].mean(axis=0) for c in range(classes)])
        closeness = centroids @ centroids.T
        np.fill_diagonal(closeness, -np.inf)
        noisy[flipped] = closeness.argmax(axis=1)[y[flipped]]
    truth = np.zeros(len(y), bool)
    truth[flipped] = True
    return noisy, truth


# -- methods ------------------------------------------------------------------------------------------------
def methods(x: np.ndarray, noisy: np.ndarray, prompt_scores: np.ndarray, zero_shot: np.ndarray,
            graph_positions: np.ndarray, graph_similarities: np.ndarray, plain_scores: np.ndarray | None = None
            ) -> dict[str, tuple[np.ndarray, float]]:
    """Each method's score per image (higher = more likely wrong) and its time in seconds."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    classes, rows = int(noisy.max()) + 1, np.arange(len(noisy))
    start = time.perf_counter()
    votes = signals.neighbour_probabilities(graph_positions, graph_similarities, rows, noisy, classes)
    combined = signals.combine(votes.probabilities, prompt_scores, noisy)
    out["picsift"] = (signals.cleanlab_issues(noisy, combined.probabilities)[1], time.perf_counter() - start)
    if plain_scores is not None:  # the fit also choosing plain zero-shot logits (not what the library runs)
        with_plain = signals.combine(votes.probabilities, prompt_scores, noisy, plain_scores=plain_scores)
        out["picsift+plain"] = (signals.cleanlab_issues(noisy, with_plain.probabilities)[1], 0.0)
    out["picsift-knn"] = (signals.cleanlab_issues(noisy, votes.probabilities)[1], 0.0)
    prompts_only = signals.combine(np.full_like(votes.probabilities, 1 / classes), prompt_scores, noisy)
    out["picsift-prompts"] = (signals.cleanlab_issues(noisy, prompts_only.probabilities)[1], 0.0)
    out["_weight"] = (np.array([combined.weight, combined.temperature]), 0.0)
    start = time.perf_counter()
    out["datalab"] = (datalab(x, noisy), time.perf_counter() - start)
    entropy = -(zero_shot * np.log(np.maximum(zero_shot, 1e-12))).sum(axis=1)
    sign = np.where(zero_shot.argmax(axis=1) != noisy, 1.0, -1.0)
    out["fiftyone"] = ((sign * np.exp(-entropy) + 1) / 2, 0.0)
    near = graph_positions[:, :10]
    out["knn-vote"] = (1 - (noisy[near] == noisy[:, None]).mean(axis=1), 0.0)
    out["random"] = (np.random.default_rng(1).random(len(noisy)), 0.0)
    return out


def quality(name: str, x: np.ndarray, y: np.ndarray, classes: list[str], model, rates: list[float],  # type: ignore[no-untyped-def]
            rows: list[list[object]], held_out: np.ndarray | None = None) -> None:
    """Every method on every flip kind and rate; with ``held_out`` (images the offline model never trained on),
    the same scores also evaluated on those images alone (set name + ", unseen")."""
    from sklearn.metrics import roc_auc_score

    graph = build(np.arange(len(x)).astype(str), x, k=32)
    text = signals.class_text_vectors([words(c) for c in classes], lambda p: model.embed_text(p))
    prompt_scores = signals.standardised_prompt_scores(x, text, x)
    zero_shot = signals.softmax(100.0 * (x @ text.T))
    for kind in ("uniform", "confusable"):
        for rate in rates:
            noisy, truth = flip(y, x, rate, kind, seed=int(rate * 100))
            found = methods(x, noisy, prompt_scores, zero_shot, graph.positions, graph.similarities,
                            signals.PLAIN_SCALE * (x @ text.T))
            weight, temperature = found.pop("_weight")[0]
            parts = [(name, np.ones(len(y), bool))]
            if held_out is not None:
                parts.append((f"{name}, unseen", held_out))
            for label, mask in parts:
                n = int(truth[mask].sum())
                for method, (score, seconds) in found.items():
                    top = np.argsort(-score[mask], kind="stable")[:n]
                    rows.append([label, kind, f"{rate:.0%}", method, round(roc_auc_score(truth[mask], score[mask]), 3),
                                 round(float(truth[mask][top].mean()), 3), round(seconds, 2),
                                 f"w={weight:.1f} T={temperature}" if method == "picsift" else ""])
            log(f"#   {name} {kind} {rate:.0%} done")


# -- scale --------------------------------------------------------------------------------------------------
def record(rows: list[list[object]], row: list[object]) -> None:
    """Keep a row and print it at once, so a long run that is stopped still shows what finished."""
    rows.append(row)
    log("# " + " | ".join(str(v) for v in row))


def scale(n: int, umap_n: int) -> list[list[object]]:
    from projection import make_data
    from sklearn.metrics import roc_auc_score

    from picsift.index import open_index

    rows: list[list[object]] = []
    if n == 0:  # the UMAP comparison alone (--scale-only --scale 0 --umap-n N), on the same kind of data
        return umap_rows(make_data(umap_n, 200, seed=0)[0], umap_n) if umap_n else rows
    x, clusters = make_data(n + n // 100, 200, seed=0)
    ids = np.array([f"{i:032x}" for i in range(len(x))], dtype=object)
    base, new = slice(0, n), slice(n, len(x))
    index = open_index("hnsw", dim=x.shape[1], path=None)
    start = time.perf_counter()
    index.add(ids[base].tolist(), x[base])
    record(rows, ["hnsw index build (exists in a library)", n, round(time.perf_counter() - start, 1), ""])
    import picsift.analysis.graph as graph_module

    start = time.perf_counter()
    graph = build(ids[base], x[base], k=32, index=index)
    seconds = time.perf_counter() - start
    megabytes = (graph.positions.nbytes + graph.similarities.nbytes) / 2**20
    record(rows, ["graph build from the index", n, round(seconds, 1),
                 f"recall@32 {graph.recall:.3f}, arrays {megabytes:.0f} MB"])
    index.add(ids[new].tolist(), x[new])
    start = time.perf_counter()
    patched = refresh(graph, ids, x, index=index)
    record(rows, ["refresh after 1% new images", len(x), round(time.perf_counter() - start, 1),
                 f"recall@32 {measure_recall(patched, x, 512):.3f} (rebuild below {graph_module.MIN_RECALL})"])
    start = time.perf_counter()
    a, column = np.nonzero(patched.similarities >= 0.95)
    groups = pair_groups(lambda p: x[p], a, patched.positions[a, column])
    record(rows, ["near duplicates from the graph (0.95)", len(x), round(time.perf_counter() - start, 1),
                 f"{len(groups)} groups"])
    noisy, truth = flip(clusters, x, 0.1, "uniform", seed=3)
    start = time.perf_counter()
    votes = signals.neighbour_probabilities(patched.positions, patched.similarities, np.arange(len(x)), noisy,
                                            int(noisy.max()) + 1)
    score = signals.cleanlab_issues(noisy, signals.combine(votes.probabilities, None, noisy).probabilities)[1]
    record(rows, ["label mistakes (graph votes + cleanlab)", len(x), round(time.perf_counter() - start, 1),
                 f"AUROC {roc_auc_score(truth, score):.3f} at 10% uniform flips"])
    if umap_n:
        rows += umap_rows(x[:umap_n], umap_n)
    return rows


def stand_in(n: int, classes: int = 200) -> list[list[object]]:
    """Near duplicates and label mistakes at ``n`` on an exact graph built cluster by cluster (``--stand-in N``):
    for when the hnsw index at that size takes longer than there is time. The synthetic clusters are far apart
    (random centres in 512 dimensions), so each image's 32 nearest neighbours all lie in its own cluster and the
    per-cluster exact graph is the exact graph; its build time is not the library's and is reported apart."""
    from projection import make_data
    from sklearn.metrics import roc_auc_score

    from picsift.analysis.graph import exact_rows

    rows: list[list[object]] = []
    x, clusters = make_data(n, 200, seed=0)
    positions = np.full((n, 32), -1, np.int32)
    similarities = np.full((n, 32), -np.inf, np.float32)
    start = time.perf_counter()
    for c in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == c)
        p, sim = exact_rows(x[members], np.arange(len(members)), 32)
        positions[members], similarities[members] = members[p], sim
    megabytes = (positions.nbytes + similarities.nbytes) / 2**20
    record(rows, ["stand-in exact graph, cluster by cluster (not the library's path)", n,
                  round(time.perf_counter() - start, 1), f"arrays {megabytes:.0f} MB"])
    start = time.perf_counter()
    a, column = np.nonzero(similarities >= 0.95)
    groups = pair_groups(lambda q: x[q], a, positions[a, column])
    record(rows, ["near duplicates from the graph (0.95)", n, round(time.perf_counter() - start, 1),
                  f"{len(groups)} groups"])
    noisy, truth = flip(clusters % classes, x, 0.1, "uniform", seed=3)  # classes = clusters merged, mod
    start = time.perf_counter()
    votes = signals.neighbour_probabilities(positions, similarities, np.arange(n), noisy, int(noisy.max()) + 1)
    score = signals.cleanlab_issues(noisy, signals.combine(votes.probabilities, None, noisy).probabilities)[1]
    record(rows, ["label mistakes (graph votes + cleanlab)", n, round(time.perf_counter() - start, 1),
                  f"AUROC {roc_auc_score(truth, score):.3f} at 10% uniform flips, {classes} classes"])
    return rows


def umap_rows(x: np.ndarray, n: int) -> list[list[object]]:
    from sklearn.manifold import trustworthiness

    from picsift.analysis.projection_umap import fit_reducer

    graph = build(np.arange(n).astype(str), x, k=32)
    check = np.random.default_rng(0).choice(n, min(n, 3000), replace=False)
    fit_reducer(x[:500], 2, seed=0)  # numba compiles UMAP's functions here, outside the timings
    out = []
    for label, knn in (("UMAP, its own neighbour search", None), ("UMAP from the graph", graph.nearest())):
        start = time.perf_counter()
        reducer = fit_reducer(x, 2, seed=0, knn=knn)
        seconds = time.perf_counter() - start
        trust = trustworthiness(x[check], reducer.embedding_[check], n_neighbors=10, metric="cosine")
        record(out, [label, n, round(seconds, 1), f"trustworthiness {trust:.4f} (3k points)"])
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", type=int, default=3000, help="Fashion-MNIST test images (0: skip)")
    parser.add_argument("--no-emoji", dest="emoji", action="store_false", help="skip the Noto emoji")
    parser.add_argument("--clipart", type=int, default=3000, help="OpenClipart images, seeded subset (0: skip)")
    parser.add_argument("--stamps", action=argparse.BooleanOptionalAction, default=True, help="the Tux Paint stamps")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic images for the scale part (0: skip)")
    parser.add_argument("--umap-n", type=int, default=20_000, help="images for the UMAP comparison (0: skip)")
    parser.add_argument("--quick", action="store_true", help="10% uniform and confusable only; scale 20k")
    parser.add_argument("--stand-in", type=int, default=0,
                        help="only near duplicates and label mistakes at N on a per-cluster exact graph")
    parser.add_argument("--stand-in-classes", type=int, default=200,
                        help="classes for --stand-in's label mistakes (the 200 clusters merged modulo this)")
    parser.add_argument("--scale-only", action="store_true", help="only the scale part")
    parser.add_argument("--objects", type=int, default=64, help="scenes for the object checks (0: skip)")
    parser.add_argument("--objects-only", action="store_true", help="only the object checks")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.umap_n = min(args.scale, 20_000), min(args.umap_n, 5_000)
    header("Label mistakes without a trained model, and the neighbour graph at scale", argv)
    rates = [0.1] if args.quick else [0.05, 0.1, 0.2]
    if args.stand_in:
        print(table(stand_in(args.stand_in, args.stand_in_classes), ["step", "images", "seconds", "note"]))
        return
    if args.objects_only or (args.objects and not args.scale_only):
        from object_mistakes import object_rows

        flips, empty = object_rows(args.objects or 64, rates, flip, datalab, log)
        print(table(flips, ["set", "noise", "rate", "method", "AUROC", "precision@n", "seconds", "note"]))
        print(table(empty, ["empty-box rule", "empty boxes flagged", "real boxes flagged"]))
        if args.objects_only:
            return
    if args.scale_only:
        print(table(scale(args.scale, args.umap_n), ["step", "images", "seconds", "note"]))
        return
    model = embedder()
    rows: list[list[object]] = []
    if args.stamps:
        x, y, classes = stamps(model)
        log(f"# stamps: {len(x)} images, {len(classes)} classes")
        quality("stamps", x, y, classes, model, rates, rows)
    if args.fmnist:
        if Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file():
            x, y, classes = fashion_mnist(model, args.fmnist)
            log(f"# fashion-mnist: {len(x)} test images")
            quality("fashion-mnist", x, y, classes, model, rates, rows)
        else:
            log("# fashion-mnist skipped: apt-get install dataset-fashion-mnist")
    if args.emoji:
        x, y, classes, held_out = emoji(model)
        log(f"# emoji: {len(x)} images, {len(classes)} classes, {int(held_out.sum())} unseen by the model")
        quality("emoji", x, y, classes, model, rates, rows, held_out)
    if args.clipart:
        x, y, classes, held_out = clipart(model, args.clipart)
        log(f"# openclipart: {len(x)} images, {len(classes)} classes, {int(held_out.sum())} unseen by the model")
        quality("openclipart", x, y, classes, model, rates, rows, held_out)
    print(table(rows, ["set", "noise", "rate", "method", "AUROC", "precision@n", "seconds", "note"]))
    if args.scale:
        print(table(scale(args.scale, args.umap_n), ["step", "images", "seconds", "note"]))


if __name__ == "__main__":
    main(sys.argv[1:])
