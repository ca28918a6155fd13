"""Projection benchmarks: UMAP fit, incremental placement of new images vs a refit, and the 1M
fit-on-a-sample path, on synthetic clustered 512-d unit vectors. PCA (the instant fallback) on the same
vectors is the baseline every time is divided by.

    python bench/projection.py                      # 100k: fit, +10k new vs refit, fit on 50k + place 50k
    python bench/projection.py --n 1000000 --large  # 1M: fit on a 50k sample, place the rest; peak memory
    python bench/projection.py --quick

Map quality is the share of points whose nearest neighbour *on the map* is in the same cluster (on
5,000 sampled points; chance is about 1/clusters).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from common import cache_dir, folder_bytes, header, table, timed

from picsift.analysis import projection
from picsift.analysis.projection import map_files, update_map
from picsift.core.store import StoreSnapshot

DIM = 512


def log(message: str) -> None:
    print(message, flush=True)


def make_data(n: int, clusters: int, seed: int, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` gaussian centres (noise per dimension 0.03-0.06, as bench/query.py)
    and their cluster labels; written into ``out`` (e.g. a memmap) chunk by chunk when given."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.03, 0.06, clusters).astype(np.float32)
    out = np.empty((n, DIM), np.float32) if out is None else out
    labels = rng.integers(0, clusters, n)
    for start in range(0, n, 100_000):
        which = labels[start : start + 100_000]
        block = rng.standard_normal((len(which), DIM), dtype=np.float32) * spread[which, None] + centres[which]
        out[start : start + len(which)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, labels


def snapshot(matrix: np.ndarray, n: int, version: int, prefix: str = "") -> StoreSnapshot:
    ids = np.array([f"{prefix}{i:0{32 - len(prefix)}d}" for i in range(n)], dtype="<U32")
    return StoreSnapshot(ids, np.arange(n, dtype=np.int64), matrix, version)


def agreement(coords: np.ndarray, labels: np.ndarray, queries: np.ndarray, reference: np.ndarray) -> float:
    """Share of ``queries`` whose nearest other point among ``reference`` on the map has the same label."""
    from scipy.spatial import cKDTree

    tree = cKDTree(coords[reference])
    _, found = tree.query(coords[queries], k=2)
    nearest = np.where(reference[found[:, 0]] == queries, reference[found[:, 1]], reference[found[:, 0]])
    return float(np.mean(labels[nearest] == labels[queries]))


class Phases:
    """Wall time spent in projection's fit and placement functions (wrapped for the run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        for name in ("_fit", "_place"):
            original = getattr(projection, name)
            setattr(projection, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Any) -> Any:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return timed_call

    def take(self) -> dict[str, float]:
        seconds, self.seconds = self.seconds, {}
        return seconds


def warm_up(seconds: dict[str, float]) -> None:
    """Fit and place once on 4,500 vectors (UMAP's large-data path), so numba's compile time is not timed."""
    data, _ = make_data(5000, 20, 99)
    start = time.perf_counter()
    update_map(None, snapshot(data, 5000, 1), "umap", 3, fit_rows=4500, progress=False)
    seconds["warm-up"] = time.perf_counter() - start
    log(f"warm-up (numba compiles UMAP and pynndescent; not counted below): {seconds['warm-up']:.0f} s")


def best_pca(folder: Path, snap: StoreSnapshot) -> tuple[float, Any]:
    """The faster of two PCA maps (the baseline), each from scratch."""
    runs = [timed(lambda i=i: update_map(folder / f"pca{i}", snap, "pca", 3)) for i in range(2)]
    return min(runs, key=lambda run: run[0])


def sample_of(n: int, size: int = 5000, seed: int = 1) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, min(n, size), replace=False))


def run_small(args: argparse.Namespace, phases: Phases) -> None:
    n, new = args.n, args.new
    data, labels = make_data(n + new, args.clusters, args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before = snapshot(data, n, 1)
        after = StoreSnapshot(np.concatenate([before.ids, snapshot(data, new, 2, "n").ids]),
                              np.arange(n + new, dtype=np.int64), data, 2)
        warm_up({})
        pca_s, pca_map = best_pca(Path(tmp), before)
        phases.take()
        rows.append([f"PCA, {n:,} (baseline)", pca_s, 1.0, "-", "-",
                     agreement(pca_map.coords, labels, sample_of(n), np.arange(n))])

        fit_s, fitted = timed(lambda: update_map(Path(tmp) / "all", before, "umap", 3, fit_rows=n, progress=False))
        phases.take()
        model_mb = folder_bytes(Path(tmp) / "all") / 2**20
        rows.append([f"UMAP fit on all {n:,}", fit_s, fit_s / pca_s, "-", f"{model_mb:.0f} MiB",
                     agreement(fitted.coords, labels, sample_of(n), np.arange(n))])

        inc_s, placed = timed(lambda: update_map(Path(tmp) / "all", after, "umap", 3, refit=False, progress=False))
        assert np.array_equal(placed.coords[:n], fitted.coords) and placed.added == new
        newcomers = np.arange(n, n + new)
        rows.append([f"+{new:,} new: placed with the saved model", inc_s, inc_s / pca_s,
                     f"{1000 * inc_s / new:.2f}", "-", agreement(placed.coords, labels, newcomers, np.arange(n))])
        if not args.skip_refit:
            refit_s, refitted = timed(lambda: update_map(Path(tmp) / "all", after, "umap", 3, refit=True,
                                                         fit_rows=n + new, progress=False))
            rows.append([f"+{new:,} new: refit on all {n + new:,}", refit_s, refit_s / pca_s, "-", "-",
                         agreement(refitted.coords, labels, newcomers, np.arange(n + new))])
            log(f"placing {new:,} new images costs {inc_s / refit_s:.3f}x a refit ({refit_s / inc_s:.0f}x faster)")
        phases.take()

        if args.fit_rows < n:
            sample_s, sampled = timed(lambda: update_map(Path(tmp) / "sample", before, "umap", 3,
                                                         fit_rows=args.fit_rows, progress=False))
            parts = phases.take()
            rows.append([f"UMAP fit on {args.fit_rows:,} + place {n - args.fit_rows:,}", sample_s, sample_s / pca_s,
                         f"fit {parts.get('_fit', 0):.0f} s + place {parts.get('_place', 0):.0f} s", "-",
                         agreement(sampled.coords, labels, sample_of(n), np.arange(n))])
    log(table(rows, ["step", "seconds", "/ PCA", "ms per new image", "saved map", "map NN same cluster"]))


def run_large(args: argparse.Namespace, phases: Phases) -> None:
    n = args.n
    path = cache_dir() / f"projection-{n}x{DIM}-c{args.clusters}-s{args.seed}.f32"
    labels_path = path.with_suffix(".labels.npy")
    if not path.exists() or not labels_path.exists():
        log(f"writing {n:,} vectors to {path} ...")
        matrix = np.memmap(path.with_suffix(".tmp"), dtype=np.float32, mode="w+", shape=(n, DIM))
        _, labels = make_data(n, args.clusters, args.seed, out=matrix)
        matrix.flush()
        del matrix
        np.save(labels_path, labels)
        path.with_suffix(".tmp").rename(path)
    labels = np.load(labels_path)
    matrix = np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM))
    snap = snapshot(matrix, n, 1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    warm_up({})
    with tempfile.TemporaryDirectory() as tmp:
        pca_s, pca_map = best_pca(Path(tmp), snap)
        phases.take()
        umap_s, umap_map = timed(lambda: update_map(Path(tmp), snap, "umap", 3, fit_rows=args.fit_rows))
        parts = phases.take()
        saved_mb = sum(path.stat().st_size for path in map_files(Path(tmp), "umap", 3)) / 2**20
        reopen_s, _ = timed(lambda: update_map(Path(tmp), snap, "umap", 3))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queries = sample_of(n, 5000)
    reference = sample_of(n, 200_000, seed=2)
    rows = [
        [f"PCA, {n:,} (baseline)", pca_s, 1.0, "-", agreement(pca_map.coords, labels, queries, reference)],
        [f"UMAP: fit on {args.fit_rows:,} + place {n - args.fit_rows:,}", umap_s, umap_s / pca_s,
         f"fit {parts.get('_fit', 0):.0f} s, place {parts.get('_place', 0):.0f} s "
         f"({1000 * parts.get('_place', 0) / max(1, n - args.fit_rows):.2f} ms/img)",
         agreement(umap_map.coords, labels, queries, reference)],
        ["reopen: saved map, same store version", reopen_s, reopen_s / pca_s, "-", "-"],
    ]
    log(table(rows, ["step", "seconds", "/ PCA", "parts", "map NN same cluster (5k vs 200k)"]))
    log(f"saved UMAP map (coordinates + model): {saved_mb:.0f} MiB")
    log(f"peak RSS {peak:.2f} GiB (before the maps: {rss_before:.2f} GiB; includes the memory-mapped vectors read)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="images on the map")
    parser.add_argument("--new", type=int, default=10_000, help="images added after the fit")
    parser.add_argument("--fit-rows", type=int, default=projection.UMAP_FIT_ROWS, help="UMAP fit sample size")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-refit", action="store_true", help="do not time the full refit")
    parser.add_argument("--large", action="store_true", help="the 1M path: memory-mapped vectors, sample + place")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.new, args.fit_rows, args.clusters = 6000, 1000, 3000, 50
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    header("picsift projection benchmark", sys.argv)
    phases = Phases()
    (run_large if args.large else run_small)(args, phases)


if __name__ == "__main__":
    main()
