"""The neighbour graph at scale (issue 21, item 5): build, memory, a 1% refresh, near duplicates and label
mistakes from it, on synthetic clustered vectors; and UMAP at ``--umap-n`` from the graph against UMAP's own
neighbour search.

Every step prints its row as soon as it ends, with its wall seconds and the CPU seconds the process used since the
row before (all threads; includes setup such as making the data) (a long run that is stopped still shows what
finished). Times on a shared machine depend on its load, so the run also times a **baseline in the same process**:
plain numpy float32 matrix products (1024 rows x ``reach`` columns, the build's own block shape, no top-k) at the
build's multiply-add count, before and after the build; the build's ratio to it is what carries to a calm machine.

The 1% of new images are half fresh vectors and half near copies of existing images (noise 0.002 per dimension,
cosine about 0.999), so near duplicates have groups to find and a copy must find its original.

    python bench/graph_scale.py --n 1000000 [--classes 20 200] [--umap-n 0]
    python bench/graph_scale.py --n 0 --umap-n 100000 --variants 0:spectral 100:spectral 100:pca
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from common import header, table  # noqa: E402

from picsift.analysis import graph_partitions  # noqa: E402
from picsift.analysis.graph import build, refresh  # noqa: E402
from picsift.analysis.health import signals  # noqa: E402
from picsift.analysis.neighbours import pair_groups  # noqa: E402

ROWS: list[list[object]] = []


def cpu_seconds() -> float:
    """CPU seconds this process has used (all threads): on a shared machine, what the work cost, whatever the
    wait for a core added to the wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


LAST_CPU = [0.0]


def record(step: str, images: int, seconds: float | str, note: str = "") -> None:
    used = cpu_seconds()
    row = [step, images, seconds if isinstance(seconds, str) else round(seconds, 1),
           round(used - LAST_CPU[0], 1), note]
    LAST_CPU[0] = used
    ROWS.append(row)
    print("# " + " | ".join(str(v) for v in row), flush=True)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def gemm_baseline(x: np.ndarray, reach: int, blocks: int = 24, seed: int = 0) -> float:
    """Seconds per 1024-row block of plain float32 products against ``reach`` gathered rows (the build's shape)."""
    rng = np.random.default_rng(seed)
    seconds = 0.0
    for _ in range(blocks):
        rows = np.sort(rng.choice(len(x), 1024, replace=False))
        columns = np.sort(rng.choice(len(x), reach, replace=False))
        start = time.perf_counter()
        x[rows] @ x[columns].T
        seconds += time.perf_counter() - start
    return seconds / blocks


def graph_part(n: int, classes: list[int]) -> None:
    from projection import make_data
    from sklearn.metrics import roc_auc_score

    extra = n // 100
    x, clusters = make_data(n + extra, 200, seed=0)
    rng = np.random.default_rng(1)
    copies = np.arange(n + extra // 2, n + extra)
    originals = rng.choice(n, len(copies), replace=False)
    noisy = x[originals] + rng.normal(0, 0.002, (len(copies), x.shape[1])).astype(np.float32)
    x[copies] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    clusters[copies] = clusters[originals]
    ids = np.array([f"{i:032x}" for i in range(len(x))], dtype=object)
    base = x[:n]

    start = time.perf_counter()
    graph = build(ids[:n], base, k=32, progress=True)
    seconds = time.perf_counter() - start
    parts = graph.partitions
    assert parts is not None
    arrays = graph.positions.nbytes + graph.distances.nbytes
    extra_bytes = parts.of.nbytes + parts.centres.nbytes
    record("graph build, partitions (k = 32)", n, seconds,
           f"{len(parts.centres)} partitions, reach {parts.reach}; recall@32 {graph.recall:.3f} (256 rows, not "
           f"the 256 that chose the reach); arrays {arrays / 1e6:.0f} MB "
           f"(+ partitions {extra_bytes / 1e6:.1f} MB, ids {n * 128 / 1e6:.0f} MB as U32); "
           f"peak RSS so far {peak_rss_gib():.1f} GiB")
    per_block = (gemm_baseline(base, parts.reach) + gemm_baseline(base, parts.reach, seed=1)) / 2
    products = per_block * n / 1024
    exact = per_block * n / 1024 * n / parts.reach
    record("baseline: plain numpy products, same multiply-adds", n, products,
           f"build / baseline = {seconds / products:.2f}x; an exact build (n x n products alone) would take "
           f"about {exact / 60:.0f} min here (build {exact / seconds:.0f}x faster)")

    start = time.perf_counter()
    patched = refresh(graph, ids, x, progress=True)
    record("refresh after 1% new images (half near copies)", len(x), time.perf_counter() - start,
           f"recall@32 {patched.recall:.3f} (256 rows; rebuild below 0.95); of the new images: "
           f"{new_recall(patched, x, np.arange(n, n + extra)):.3f} (256 of them)")
    del graph

    start = time.perf_counter()
    a, b = patched.pairs_at_least(0.99, lambda p: x[p])
    groups = pair_groups(lambda p: x[p], a, b)
    found = sum(1 for members, _ in groups if len(members) >= 2)
    copy_found = np.isin(copies, np.concatenate([members for members, _ in groups])) if groups else np.zeros(0)
    record("near duplicates from the graph (>= 0.99)", len(x), time.perf_counter() - start,
           f"{found} groups; {copy_found.mean():.3f} of the {len(copies)} planted copies found")

    for c in classes:
        labels = (clusters % c).astype(np.int64)
        noisy_labels, truth = flip(labels, 0.1, c, seed=3)
        text = np.stack([x[labels == j][:200].mean(axis=0) for j in range(c)])
        text += np.random.default_rng(5).normal(0, 0.05, text.shape).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        tracemalloc.start()
        start = time.perf_counter()
        prompt_scores = signals.standardised_prompt_scores(x, text, x[:50_000]).astype(np.float32)
        votes = signals.neighbour_probabilities(patched.positions, patched.similarities, np.arange(len(x)),
                                                noisy_labels, c)
        combined = signals.combine(votes.probabilities, prompt_scores, noisy_labels)
        issues, score = signals.cleanlab_issues(noisy_labels, combined.probabilities)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        record(f"label mistakes, {c} classes (votes + prompts + cleanlab)", len(x), seconds,
               f"AUROC {roc_auc_score(truth, score):.3f} at 10% uniform flips ({int(issues.sum())} issues "
               f"flagged), w={combined.weight}; "
               f"peak traced memory {peak / 2**30:.2f} GiB (1 x n x C float32 = {len(x) * c * 4 / 2**30:.2f})")
        del prompt_scores, votes, combined
    record("peak RSS of the whole run", len(x), "-", f"{peak_rss_gib():.1f} GiB (the vectors alone: "
           f"{x.nbytes / 2**30:.1f} GiB)")


def new_recall(graph: object, x: np.ndarray, new: np.ndarray) -> float:
    """recall@k of 256 of the new images against their exact neighbours."""
    rows = np.sort(np.random.default_rng(2).choice(new, min(256, len(new)), replace=False))
    return graph_partitions.recall_at(graph.positions[rows],  # type: ignore[attr-defined]
                                      graph_partitions.exact_few(x, rows, 32))


def flip(labels: np.ndarray, rate: float, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(rate * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    truth = np.zeros(len(labels), bool)
    truth[flipped] = True
    return noisy, truth


def umap_part(n: int, variants: list[str]) -> None:
    from projection import make_data
    from sklearn.manifold import trustworthiness

    from picsift.analysis.projection_umap import fit_reducer

    x = make_data(n, 200, seed=0)[0]
    start = time.perf_counter()
    graph = build(np.arange(n).astype(str), x, k=32)
    record("graph for UMAP (not in the UMAP times)", n, time.perf_counter() - start,
           "exact" if graph.exact else f"partitions, recall {graph.recall:.3f}")
    check = np.random.default_rng(0).choice(n, min(n, 3000), replace=False)
    # numba compiles UMAP's functions here, outside the timings (both paths: its own search, and the graph's)
    fit_reducer(x[:500], 2, seed=0)
    fit_reducer(x[:500], 2, seed=0, knn=build(np.arange(500).astype(str), x[:500], k=32).nearest())
    runs: list[tuple[str, object, int | None, str | None]] = []
    for variant in variants:  # "EPOCHS:INIT", 0 = UMAP's default epochs
        epochs, init = variant.split(":")
        runs.append((f"UMAP from the graph, n_epochs={epochs if int(epochs) else 'default'}, init={init}",
                     graph.nearest(), int(epochs) or None, init))
    runs.append(("UMAP, its own neighbour search", None, None, None))  # last: it is the slowest
    for label, knn, e, init in runs:
        start = time.perf_counter()
        reducer = fit_reducer(x, 2, seed=0, knn=knn, n_epochs=e, init=init)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        trust = trustworthiness(x[check], reducer.embedding_[check], n_neighbors=10, metric="cosine")
        record(label, n, seconds, f"trustworthiness {trust:.4f} (3k points)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="images for the graph part (0: skip)")
    parser.add_argument("--classes", type=int, nargs="*", default=[20, 200], help="classes for label mistakes")
    parser.add_argument("--umap-n", type=int, default=0, help="images for the UMAP comparison (0: skip)")
    parser.add_argument("--variants", nargs="*", default=["0:spectral"],
                        help="UMAP fits from the graph, EPOCHS:INIT each (EPOCHS 0: UMAP's default)")
    parser.add_argument("--partition", type=int, default=graph_partitions.PARTITION, help="images per partition")
    args = parser.parse_args(argv)
    graph_partitions.PARTITION = args.partition
    header("The neighbour graph at scale", argv)
    LAST_CPU[0] = cpu_seconds()
    if args.n:
        graph_part(args.n, args.classes)
    if args.umap_n:
        umap_part(args.umap_n, args.variants)
    print(table(ROWS, ["step", "images", "seconds", "CPU seconds since the row before", "note"]))


if __name__ == "__main__":
    main(sys.argv[1:])
