"""Every score from one byte per dimension (issue 25, item 1): the full score distribution of a search from the
store's int8 codes against the float16 scan, and the histogram's error against the exact one, for the codes of
today (one centre and scale per dimension, :mod:`picsift.core.codes_format`) and of the previous version (one scale
per row, ``max|x| / 127``, re-implemented below), in the same run.

Timing, in one process, interleaved query by query on the same store (a float16 workspace as ``update()`` leaves
it): what a search with ``limit=100`` computes for its histogram, i.e. ``score_scope`` + ``exact_top`` (the results
and the two ends rescored exactly) + a 50-bin histogram,

* **float16**: the scan without codes (the snapshot without its codes);
* **codes**: the scan from today's codes (numba int8 x int16 kernel, both cores); also the bare scans (kernel and
  scaling only) of today's codes and of the previous version's;
* **read bound**: numpy summing the codes' bytes as int64 (one pass over the same memory, one core).

Also the time to build the codes of the whole store from its float16 vectors (what opening a snapshot costs when
they are missing, and what keeping them in memory only would cost each process).

The histogram's error: N vectors made from real offline-model image embeddings (bench/label_mistakes.py's cache:
Tux Paint stamps, Noto emoji, OpenClipart, Fashion-MNIST; each vector a real embedding plus 0.3 of another plus
noise, renormalised, stored as float16) scored against real prompts and real images; the largest difference of a
bin of the codes' 50-bin histogram from the exact one, per 10,000 images, (a) with the exact histogram's edges, and
(b) as the app bins them (``ImageSet.histogram``, the score range widget: 50 bins over the scores' own range, after
``exact_top``).

    nice -n 10 .venv/bin/python bench/score_codes.py [--n 1000000] [--queries 20] [--real-n 1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, median, table, timed
from query import build_workspace, image_queries, make_data, make_ids, text_like_queries

from picsift.core import store as store_module
from picsift.core.codes import CodesFile, StoreCodes
from picsift.core.codes_format import FLAG, encode, fit, query_max
from picsift.core.codes_kernel import dot_codes
from picsift.core.store import StoreSnapshot
from picsift.query.search import exact_top, score_scope

CACHE = Path.home() / ".cache" / "picsift" / "bench"
SETS = ("stamps", "emoji", "clipart-3000", "fmnist-10000")
PROMPTS = ["a bird", "a red bicycle", "a dog on a beach", "a musical instrument", "a house", "a flower", "a shoe",
           "a shirt", "a smiling face", "a car"]


class PerRowCodes:
    """The previous version's codes: per row, int8 ``rint(x / s)`` with ``s = max|x| / 127``, and ``s``."""

    def __init__(self, vectors: np.ndarray):
        blocks = [self._encode(vectors[s : s + 65_536]) for s in range(0, len(vectors), 65_536)]
        self.codes = np.concatenate([b[0] for b in blocks])
        self.scales = np.concatenate([b[1] for b in blocks])

    @staticmethod
    def _encode(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = (np.abs(vectors).max(axis=1) / 127).astype(np.float32)
        return np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8), scale

    def scan(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        step = float(np.abs(query).max()) / query_max(len(query))
        totals = np.empty(len(rows), np.int32)
        dot_codes(self.codes, np.rint(query / step).astype(np.int16), rows, totals)
        column = totals.astype(np.float32)
        column *= self.scales[rows]
        column *= np.float32(step)
        return column


def distribution(snapshot: StoreSnapshot, query: np.ndarray) -> np.ndarray:
    scores = score_scope(snapshot, None, query[None, :])
    scores = exact_top(snapshot, None, scores, 100, None, None, query[None, :], None, "mean", 0.5)
    np.histogram(scores, 50)
    return scores


def timing(n: int, queries: int) -> None:
    data, centres, spread = make_data(n, 1000, seed=0)
    qs = np.concatenate([image_queries(centres, spread, queries // 2, 1), text_like_queries(centres, queries // 2, 2)])
    with tempfile.TemporaryDirectory(prefix="picsift-bench-codes-") as tmp:
        catalog, store = build_workspace(Path(tmp), data, make_ids(n, 0), "float16")
        del data
        snapshot = store.snapshot()
        assert snapshot.codes is not None
        vectors_file = store._state()[0]
        store.files.remove(store.folder / f"codes-{vectors_file.split('-')[1].split('.')[0]}.i8")
        wall, cpu = time.perf_counter(), time.process_time()
        CodesFile(store.files, store.folder, vectors_file, store.dim).open(
            n, snapshot.rows, lambda rows: store_module._float32_rows(snapshot.matrix, rows))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        memory_wall, memory_cpu = time.perf_counter(), time.process_time()
        in_memory_codes(snapshot.matrix)  # option (a): codes kept in memory only, built by each process
        memory_wall, memory_cpu = time.perf_counter() - memory_wall, time.process_time() - memory_cpu
        snapshot = dataclasses.replace(store.snapshot())
        assert snapshot.codes is not None
        plain = dataclasses.replace(snapshot, codes=None)
        old = PerRowCodes(store_module._float32_rows(snapshot.matrix, np.arange(n)))
        raw = np.asarray(snapshot.codes.codes).view(np.uint8)
        distribution(snapshot, qs[0]), distribution(plain, qs[0]), old.scan(qs[0], snapshot.rows)
        times: dict[str, list[float]] = {"float16": [], "codes": [], "bare": [], "old": [], "read": []}
        band = []
        for q in qs:
            times["float16"].append(timed(lambda q=q: distribution(plain, q))[0])
            times["codes"].append(timed(lambda q=q: distribution(snapshot, q))[0])
            times["bare"].append(timed(lambda q=q: snapshot.coarse_scan(q[None, :]))[0])
            times["old"].append(timed(lambda q=q: old.scan(q, snapshot.rows))[0])
            times["read"].append(timed(lambda: raw[:, : raw.shape[1] // 8 * 8].view(np.int64).sum())[0])
            coarse = score_scope(snapshot, None, q[None, :])
            last = np.sort(coarse)[-100]
            band.append(int((coarse >= last - 2 * snapshot.coarse_error(n)).sum()))
        base = median(times["float16"])
        names = {"float16": "float16 scan + exact_top(100) + histogram (no codes)",
                 "codes": "codes scan + exact_top(100) + histogram (today)",
                 "bare": "  of which the codes scan alone (today: centre + scale per dimension)",
                 "old": "the previous version's codes scan alone (one scale per row)",
                 "read": "numpy reads the codes once (one core)"}
        print(table([[names[k], 1000 * median(v), f"{median(v) / base:.2f}x"] for k, v in times.items()],
                    [f"N = {n}, {len(qs)} queries", "median ms", "vs float16"]))
        flagged = int((snapshot.codes.codes[:, 0] == FLAG).sum())
        print(f"codes error bound {snapshot.coarse_error(n):.4f} (float16 {snapshot.scan_error:.5f}); images rescored "
              f"exactly per query: median {int(np.median(band))}, max {max(band)}; flagged rows {flagged}")
        print(f"building the codes of {n:,} rows from the float16 store (fit + encode + write): {wall:.2f} s wall, "
              f"{cpu:.2f} CPU s; in memory only (fit + encode, no file): {memory_wall:.2f} s wall, {memory_cpu:.2f} "
              f"CPU s; codes {raw.nbytes / n:.0f} B per image")
        catalog.close()


def real_embeddings() -> np.ndarray:
    parts = [np.load(CACHE / f"label-mistakes-{name}.npz", allow_pickle=False)["x"] for name in SETS
             if (CACHE / f"label-mistakes-{name}.npz").exists()]
    if not parts:
        raise SystemExit(f"no cached embeddings in {CACHE}: run bench/label_mistakes.py --quick first")
    x = np.concatenate(parts).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def made_from_real(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` vectors as the float16 store holds them (float16 rows; see :func:`real_embeddings`)."""
    made = np.empty((n, real.shape[1]), np.float16)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = real[rng.integers(0, len(real), m)] + 0.3 * real[rng.integers(0, len(real), m)]
        block += 0.02 * rng.standard_normal(block.shape, np.float32)
        made[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return made


def in_memory_codes(matrix: np.ndarray) -> StoreCodes:
    """Today's codes of a float16 ``matrix`` (fit + encode), as the store builds them, without their file."""
    n = len(matrix)

    def vectors_of(rows: np.ndarray) -> np.ndarray:
        return store_module._float32_rows(matrix, rows)

    every = np.arange(n)
    head = fit(vectors_of(np.unique(np.linspace(0, n - 1, min(n, 65_536)).astype(int))), n)
    codes = np.empty(matrix.shape, np.int8)
    for start in range(0, n, 65_536):
        codes[start : start + 65_536] = encode(vectors_of(every[start : start + 65_536]), head)
    return StoreCodes(codes, head, vectors_of)


def in_memory_snapshot(matrix: np.ndarray) -> StoreSnapshot:
    """A snapshot of a float16 ``matrix`` with today's codes, as the store would open it (without its files)."""
    every = np.arange(len(matrix))
    return StoreSnapshot(np.char.mod("%032x", every).astype("<U32"), every, matrix, 0, in_memory_codes(matrix))


def near_edges(snapshot: StoreSnapshot, query: np.ndarray, shown: np.ndarray, k: float) -> tuple[np.ndarray, float]:
    """An option measured, not in the library: ``shown`` with the images within ``k`` typical errors of a 50-bin
    edge rescored exactly (the typical error of a query is known: ``sqrt(sum((q * scale)^2) / 12)``, each code's
    rounding being uniform), and the seconds that took."""
    assert snapshot.codes is not None
    start = time.perf_counter()
    typical = float(np.sqrt(((query * snapshot.codes.header.scale).astype(np.float64) ** 2).sum() / 12))
    edges = np.histogram_bin_edges(shown, 50)
    width = edges[1] - edges[0]
    offset = (shown - edges[0]) / width
    near = np.flatnonzero(np.abs(offset - np.rint(offset)) * width <= k * typical)
    refined = shown.copy()
    refined[near] = snapshot.exact(query[None, :], near)[:, 0]
    return refined, time.perf_counter() - start


def histogram_error(n: int) -> None:
    from picsift.embedding.openclip import Embedder

    real = real_embeddings()
    prompts = Embedder("picsift-offline", device="cpu").embed_text(PROMPTS)
    rng = np.random.default_rng(0)
    rows, edge_rows = [], []
    for name, data in ((f"real embeddings ({len(real):,})", real.astype(np.float16)),
                       (f"made from real ({n:,})", made_from_real(real, n, rng))):
        snapshot = in_memory_snapshot(data)
        assert snapshot.codes is not None
        exact_vectors = snapshot.vectors()
        old = PerRowCodes(exact_vectors)
        every = np.arange(len(data))
        for kind, queries in (("text", prompts), ("image", real[rng.integers(0, len(real), 10)])):
            errors: dict[str, list[float]] = {k: [] for k in ("old", "old own", "new", "new own", "std old", "std",
                                                              "edge 1", "edge 1.5", "ms 1", "ms 1.5")}
            for q in queries:
                exact = exact_vectors @ q
                counts, edges = np.histogram(exact, 50)
                per_10k = 10_000 / len(data)
                for key, coarse in (("old", old.scan(q, every)), ("new", snapshot.coarse_scan(q[None, :])[:, 0])):
                    shown = exact_top(snapshot, None, coarse, 100, None, None, q[None, :], None, "mean", 0.5)
                    errors[key].append(np.abs(np.histogram(coarse, edges)[0] - counts).max() * per_10k)
                    errors[f"{key} own"].append(np.abs(np.histogram(shown, 50)[0] - counts).max() * per_10k)
                    errors["std" if key == "new" else "std old"].append(float((coarse - exact).std()))
                for k in (1, 1.5):
                    refined, seconds = near_edges(snapshot, q, shown, k)
                    errors[f"edge {k}"].append(np.abs(np.histogram(refined, 50)[0] - counts).max() * per_10k)
                    errors[f"ms {k}"].append(1000 * seconds)
                    errors[f"share {k}"] = [*errors.get(f"share {k}", []), float((refined != shown).mean())]
            rows.append([name, kind, *(f"{np.median(errors[k]):.2f} / {max(errors[k]):.2f}"
                                       for k in ("old", "old own", "new", "new own")),
                         f"{np.median(errors['std old']):.1e} / {np.median(errors['std']):.1e}",
                         f"{snapshot.codes.error:.4f}"])
            edge_rows.append([name, kind, *(f"{np.median(errors[f'edge {k}']):.2f} / {max(errors[f'edge {k}']):.2f}, "
                                            f"{100 * np.median(errors[f'share {k}']):.1f}%, "
                                            f"{np.median(errors[f'ms {k}']):.1f} ms" for k in (1, 1.5))])
    print(table(rows, ["vectors", "queries", "per row: edges", "per row: own", "per dim: edges", "per dim: own",
                       "score error std (row / dim)", "bound"]))
    print(table(edge_rows, ["vectors", "queries", "per dim, own, +near edges k=1: error, rescored, time",
                            "k=1.5"]))
    print("bin error per 10,000 images, median / max over the queries; 'edges': the exact histogram's edges; 'own': "
          "as the app bins them (after exact_top, 50 bins over the scores' own range)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--real-n", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    header("score distribution from one-byte codes", sys.argv)
    timing(args.n, args.queries)
    histogram_error(args.real_n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
