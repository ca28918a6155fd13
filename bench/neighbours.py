"""Outliers and near duplicates at 100k: exact (blocked matrix products) and through an hnsw index, on
synthetic clustered 512-d unit vectors with planted outliers and planted near-copies. The baseline is a
plain numpy pass over every pair (the same blocks of ``data @ data.T``, nothing kept), measured in the
same process: the floor for any exact method.

    python bench/neighbours.py [--n 100000] [--outliers 100] [--copies 500] [--skip-exact] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import header, table, timed
from projection import DIM, make_data

from picsift.analysis import neighbours
from picsift.index import open_index


def log(message: str) -> None:
    print(message, flush=True)


def plant(data: np.ndarray, outliers: int, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overwrite rows with ``outliers`` random directions and ``copies`` near-copies of other rows (turned by
    3 degrees: cosine 0.9986). Returns outlier positions and (copy, source) positions."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(data), outliers + 2 * copies, replace=False)
    odd, copy_at, source = chosen[:outliers], chosen[outliers : outliers + copies], chosen[outliers + copies :]
    random = rng.standard_normal((outliers, DIM), dtype=np.float32)
    data[odd] = random / np.linalg.norm(random, axis=1, keepdims=True)
    away = rng.standard_normal((copies, DIM), dtype=np.float32)
    away -= np.sum(away * data[source], axis=1, keepdims=True) * data[source]
    away /= np.linalg.norm(away, axis=1, keepdims=True)
    data[copy_at] = np.cos(np.radians(3)) * data[source] + np.sin(np.radians(3)) * away
    return odd, copy_at, source


def baseline(data: np.ndarray) -> float:
    """Seconds for every block of ``data @ data.T`` that the exact path computes, without keeping anything."""
    padded = np.zeros((-(-len(data) // neighbours.GROUP) * neighbours.GROUP, DIM), np.float32)
    padded[: len(data)] = data
    rows = max(16, min(len(data), neighbours.BLOCK_CELLS // len(padded)))
    start_time = time.perf_counter()
    for start in range(0, len(data), rows):
        padded[start : start + rows] @ padded.T
    return time.perf_counter() - start_time


def quality(found_outliers: np.ndarray, odd: np.ndarray, groups: list, copy_at: np.ndarray,
            source: np.ndarray) -> tuple[float, float, int]:
    """Planted outliers among the top len(odd); planted pairs grouped together; groups with no planted pair."""
    outlier_recall = len(set(found_outliers[: len(odd)].tolist()) & set(odd.tolist())) / len(odd)
    group_of = {int(p): g for g, (members, _) in enumerate(groups) for p in members}
    pairs = np.mean([group_of.get(int(c), -1) == group_of.get(int(s), -2) for c, s in zip(copy_at, source,
                                                                                      strict=True)])
    planted = set(copy_at.tolist()) | set(source.tolist())
    stray = sum(1 for members, _ in groups if not set(members.tolist()) & planted)
    return outlier_recall, float(pairs), stray


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--outliers", type=int, default=100, help="planted outliers")
    parser.add_argument("--copies", type=int, default=500, help="planted near-copies")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.clusters, args.outliers, args.copies = 10_000, 100, 20, 50
    header("picsift outliers and near-duplicates benchmark", sys.argv)
    data, _ = make_data(args.n, args.clusters, 0)
    odd, copy_at, source = plant(data, args.outliers, args.copies, 1)
    rows = []
    base_s = baseline(data)
    rows.append(["numpy: every block of data @ data.T (baseline)", base_s, 1.0, "-", "-", "-"])
    if not args.skip_exact:
        out_s, (positions, _) = timed(lambda: neighbours.outliers(data, args.k, args.outliers))
        dup_s, groups = timed(lambda: neighbours.near_duplicates(data, args.threshold))
        recall, pairs, stray = quality(positions, odd, groups, copy_at, source)
        rows.append([f"exact outliers (k={args.k})", out_s, out_s / base_s, recall, "-", "-"])
        rows.append([f"exact near duplicates (>= {args.threshold})", dup_s, dup_s / base_s, "-", pairs, stray])
    ids = [f"{i:032x}" for i in range(args.n)]
    index = open_index("hnsw", dim=DIM, path=None)
    build_s, _ = timed(lambda: [index.add(ids[s : s + 50_000], data[s : s + 50_000])
                                for s in range(0, args.n, 50_000)])
    rows.append(["hnsw index build (a library already has it)", build_s, build_s / base_s, "-", "-", "-"])
    out_s, (positions, _) = timed(lambda: neighbours.outliers(data, args.k, args.outliers, index=index, ids=ids))
    dup_s, groups = timed(lambda: neighbours.near_duplicates(data, args.threshold, index=index, ids=ids))
    recall, pairs, stray = quality(positions, odd, groups, copy_at, source)
    rows.append([f"hnsw outliers (k={args.k})", out_s, out_s / base_s, recall, "-", "-"])
    rows.append([f"hnsw near duplicates (>= {args.threshold}, k={args.k})", dup_s, dup_s / base_s, "-", pairs, stray])
    log(f"N={args.n:,} x {DIM}, {args.clusters} clusters, {args.outliers} planted outliers, "
        f"{args.copies} planted near-copies (cosine 0.9986)")
    log(table(rows, ["step", "seconds", "/ baseline", "planted outliers in top", "planted pairs grouped",
                     "groups without a planted pair"]))


if __name__ == "__main__":
    main()
