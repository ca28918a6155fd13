"""Every score from one byte per dimension (issue 25, item 1): the full score distribution of a search from the
store's int8 codes against the float16 scan, and the histogram's error against the exact one, for the codes of
today (one centre and scale per dimension, :mod:`picsift.core.codes_format`) and of the previous version (one scale
per row, ``max|x| / 127``, re-implemented below), in the same run.

Timing, in one process, interleaved query by query on the same store (a float16 workspace as ``update()`` leaves
it), wall and CPU ms (every thread), each call after ``--settle`` seconds idle (0.25; a search from the app follows
someone typing, and a contender's BLAS or torch threads spin for milliseconds after it, on the core the next one's
kernels need): what a search with ``limit=100`` computes for its histogram, i.e.
``score_scope`` + ``exact_top`` (the results, the two ends and the scores near the 50 bins' edges rescored exactly)
+ a 50-bin histogram,

* **float16**: the same without codes (the snapshot without its codes: no edges rescored);
* **codes**: from today's codes (numba int8 x int16 kernel, both cores); of it, the bare scan, ``exact_top`` and
  the histogram (picsift's, against ``np.histogram`` of the same scores); and the bare scan of the previous
  version's codes;
* **scope**: ``score_scope`` of a scattered tenth of the store (a ``within`` or filtered search) from the codes,
  each row's codes asked for 8 rows ahead (``codes_kernel.SCAN_AHEAD``), against the same read in order (before);
* **read bound**: numpy reading the codes' bytes once (``bitwise_or.reduce``, one core);
* **float32 product**: the plain way, ``codes.astype(float32) @ q`` a block at a time.

Also the time to build the codes of the whole store from its float16 vectors (what opening a snapshot costs when
they are missing, and what keeping them in memory only would cost each process).

The histogram's error, through the codes (forced below the store's 50,000-row threshold for the real set): the real
offline-model image embeddings (bench/label_mistakes.py's cache: Tux Paint stamps, Noto emoji, OpenClipart,
Fashion-MNIST), and N vectors made from them (each a real embedding plus 0.3 of another plus noise, renormalised,
stored as float16), scored against real prompts and real images; the largest difference of a bin of the codes'
50-bin histogram from the exact one, per 10,000 images, with the exact histogram's edges, and as the app bins them
(``ImageSet.histogram``, the score range widget: 50 bins over the scores' own range, after ``exact_top``) with and
without the scores near the edges rescored.

    nice -n 10 .venv/bin/python bench/score_codes.py [--n 1000000] [--queries 20] [--real-n 1000000] [--settle 0.25]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from common import cpu_timed, header, median, table
from query import build_workspace, image_queries, make_data, make_ids, text_like_queries

from picsift.core import codes as codes_module
from picsift.core import codes_kernel as kernel
from picsift.core import store as store_module
from picsift.core.codes import CodesFile, StoreCodes, near_edges
from picsift.core.codes_format import FLAG, encode, fit, query_max
from picsift.core.codes_kernel import scan_codes
from picsift.core.store import StoreSnapshot
from picsift.query import search as search_module
from picsift.query.imageset import histogram
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
        column = np.empty(len(rows), np.float32)
        scan_codes(self.codes, np.rint(query / step).astype(np.int16), rows, step, 0.0, column)
        column *= self.scales[rows]
        return column


def distribution(snapshot: StoreSnapshot, query: np.ndarray) -> np.ndarray:
    scores = score_scope(snapshot, None, query[None, :])
    scores = exact_top(snapshot, None, scores, 100, None, None, query[None, :], None, "mean", 0.5)
    histogram(scores, 50)  # as the app counts it (ImageSet.histogram, the score range widget)
    return scores


def float32_product(codes: np.ndarray, query: np.ndarray, block: int = 65_536) -> np.ndarray:
    """The plain way: the codes converted to float32 a block at a time, times the query (BLAS)."""
    out = np.empty(len(codes), np.float32)
    for start in range(0, len(codes), block):
        out[start : start + block] = codes[start : start + block].astype(np.float32) @ query
    return out


def timing(n: int, queries: int, settle: float) -> None:
    ahead = kernel.SCAN_AHEAD
    data, centres, spread = make_data(n, 1000, seed=0)
    qs = np.concatenate([image_queries(centres, spread, queries // 2, 1), text_like_queries(centres, queries // 2, 2)])
    with tempfile.TemporaryDirectory(prefix="picsift-bench-codes-") as tmp:
        catalog, store = build_workspace(Path(tmp), data, make_ids(n, 0), "float16")
        del data
        snapshot = store.snapshot()
        assert snapshot.codes is not None
        vectors_file = store._state()[0]
        store.files.remove(store.folder / f"codes-{vectors_file.split('-')[1].split('.')[0]}.i8")
        wall, cpu, _ = cpu_timed(lambda: CodesFile(store.files, store.folder, vectors_file, store.dim).open(
            n, snapshot.rows, lambda rows: store_module._float32_rows(snapshot.matrix, rows)))
        memory_wall, memory_cpu, _ = cpu_timed(lambda: in_memory_codes(snapshot.matrix))  # codes in memory only
        snapshot = dataclasses.replace(store.snapshot())
        assert snapshot.codes is not None
        plain = dataclasses.replace(snapshot, codes=None)
        old = PerRowCodes(store_module._float32_rows(snapshot.matrix, np.arange(n)))
        raw = np.asarray(snapshot.codes.codes)
        words = raw.view(np.uint8)[:, : raw.shape[1] // 8 * 8].view(np.uint64).reshape(-1)
        distribution(snapshot, qs[0]), distribution(plain, qs[0]), old.scan(qs[0], snapshot.rows)
        shown: dict[str, np.ndarray] = {}
        scope = np.sort(np.random.default_rng(3).choice(n, n // 10, replace=False))  # a scope: a tenth, scattered
        work = {"float16": lambda q: distribution(plain, q),
                "codes": lambda q: shown.update(last=distribution(snapshot, q)),
                "bare": lambda q: snapshot.coarse_scan(q[None, :]),
                "top": lambda q: exact_top(snapshot, None, snapshot.coarse_scan(q[None, :])[:, 0], 100, None, None,
                                           q[None, :], None, "mean", 0.5),
                "histogram": lambda q: histogram(shown["last"], 50),
                "np.histogram": lambda q: np.histogram(shown["last"], 50),
                "old": lambda q: old.scan(q, snapshot.rows),
                "scope": lambda q: score_scope(snapshot, scope, q[None, :]),
                "scope, in order": lambda q: in_order(lambda: score_scope(snapshot, scope, q[None, :])),
                "read": lambda q: np.bitwise_or.reduce(words),
                "f32": lambda q: float32_product(raw, q)}
        def in_order(run: Callable[[], object]) -> object:
            kernel.SCAN_AHEAD = 0  # no row asked for ahead (before 2026-12-06 23:30)
            try:
                return run()
            finally:
                kernel.SCAN_AHEAD = ahead

        times: dict[str, list[tuple[float, float]]] = {k: [] for k in work}
        band, near = [], []
        for q in qs:
            for key, run in work.items():
                time.sleep(settle)  # the threads of the contender before (BLAS, torch) stop spinning
                times[key].append(cpu_timed(lambda run=run, q=q: run(q))[:2])
            coarse = score_scope(snapshot, None, q[None, :])
            last = np.sort(coarse)[-100]
            band.append(int((coarse >= last - 2 * snapshot.coarse_error(n)).sum()))
            near.append(int(near_edges(exact_top(snapshot, None, coarse, 100, None, None, q[None, :], None, "mean",
                                                 0.5), 50, snapshot.codes.typical_error(q)).sum()))
        times["top"] = [(t[0] - b[0], t[1] - b[1]) for t, b in zip(times["top"], times["bare"], strict=True)]
        base = median([w for w, _ in times["float16"]])
        names = {"float16": "float16 scan + exact_top(100) + histogram (no codes)",
                 "codes": "codes scan + exact_top(100) + histogram (today)",
                 "bare": "  of which the codes scan alone (numba int8 x int16, both cores)",
                 "top": "  of which exact_top (top 100, ends, scores near the 50 bins' edges)",
                 "histogram": "  of which the 50-bin histogram (picsift's, one compiled pass)",
                 "np.histogram": "numpy's np.histogram of the same scores",
                 "old": "the previous version's codes scan alone (one scale per row)",
                 "scope": "score_scope of a scattered tenth of the store (rows asked for ahead)",
                 "scope, in order": "the same, each row read when reached (before)",
                 "read": "numpy reads the codes once (bitwise_or.reduce, one core)",
                 "f32": "plain codes.astype(float32) @ q, blocks of 65,536 rows (BLAS)"}
        print(table([[names[k], 1000 * median([w for w, _ in v]), 1000 * median([c for _, c in v]),
                      f"{median([w for w, _ in v]) / base:.2f}x"] for k, v in times.items()],
                    [f"N = {n}, {len(qs)} queries", "median ms", "median CPU ms", "vs float16"]))
        flagged = int((snapshot.codes.codes[:, 0] == FLAG).sum())
        print(f"codes error bound {snapshot.coarse_error(n):.4f} (float16 {snapshot.scan_error:.5f}); images rescored "
              f"exactly per query for the top: median {int(np.median(band))}, max {max(band)}; near the bins' edges: "
              f"median {int(np.median(near))} ({100 * np.median(near) / n:.1f}%), max {max(near)}; flagged rows "
              f"{flagged}; load average now {os.getloadavg()[0]:.1f}")
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


def histogram_error(n: int) -> None:
    """On the real embeddings alone (fewer than the store's CODES_FROM rows, below which a search scans the float16
    vectors), the codes are used all the same: what is measured is the codes' error on real embeddings."""
    from picsift.embedding.openclip import Embedder

    real = real_embeddings()
    prompts = Embedder("picsift-offline", device="cpu").embed_text(PROMPTS)
    rng = np.random.default_rng(0)
    rows = []
    for name, data in ((f"real embeddings ({len(real):,})", real.astype(np.float16)),
                       (f"made from real ({n:,})", made_from_real(real, n, rng))):
        snapshot = in_memory_snapshot(data)
        assert snapshot.codes is not None
        exact_vectors = snapshot.vectors()
        old = PerRowCodes(exact_vectors)
        every = np.arange(len(data))
        with patched(CODES_FROM=1):
            rows.extend(codes_histogram(name, snapshot, exact_vectors, old, every, prompts, real, rng))
    print(table(rows, ["vectors", "queries", "per row codes, exact edges", "per dim, exact edges",
                       "per dim, own bins, top+ends exact", "today: + near edges exact", "rescored near edges",
                       "score error std", "bound"]))
    print("bin error per 10,000 images, median / max over the queries; 'exact edges': the exact histogram's edges; "
          "'own bins': as the app bins them (after exact_top, 50 bins over the scores' own range); today: "
          f"exact_top also rescores the scores near an edge (core.codes.near_edges, {codes_module.TARGET_PER_10K} per "
          "10,000 targeted)")


def codes_histogram(name: str, snapshot: StoreSnapshot, exact_vectors: np.ndarray, old: PerRowCodes,
                    every: np.ndarray, prompts: np.ndarray, real: np.ndarray,
                    rng: np.random.Generator) -> list[list[str]]:
    rows = []
    for kind, queries in (("text", prompts), ("image", real[rng.integers(0, len(real), 10)])):
        errors: dict[str, list[float]] = {k: [] for k in ("old", "scan", "ends", "today", "std", "share")}
        for q in queries:
            exact = exact_vectors @ q
            counts, edges = np.histogram(exact, 50)
            per_10k = 10_000 / len(every)
            coarse = snapshot.coarse_scan(q[None, :])[:, 0]
            errors["old"].append(np.abs(np.histogram(old.scan(q, every), edges)[0] - counts).max() * per_10k)
            errors["scan"].append(np.abs(np.histogram(coarse, edges)[0] - counts).max() * per_10k)
            with patched(TARGET_PER_10K=np.inf):  # the top and the ends exact, as before the edges were rescored
                ends = exact_top(snapshot, None, coarse, 100, None, None, q[None, :], None, "mean", 0.5)
            shown = exact_top(snapshot, None, coarse, 100, None, None, q[None, :], None, "mean", 0.5)
            errors["ends"].append(np.abs(np.histogram(ends, 50)[0] - counts).max() * per_10k)
            errors["today"].append(np.abs(np.histogram(shown, 50)[0] - counts).max() * per_10k)
            errors["std"].append(float((coarse - exact).std()))
            errors["share"].append(float((shown != ends).mean()))
        rows.append([name, kind, *(f"{np.median(errors[k]):.2f} / {max(errors[k]):.2f}"
                                   for k in ("old", "scan", "ends", "today")),
                     f"{100 * np.median(errors['share']):.1f}%", f"{np.median(errors['std']):.1e}",
                     f"{snapshot.codes.error:.4f}"])
    return rows


@contextlib.contextmanager
def patched(**values: float) -> Iterator[None]:
    """The search, store and codes modules' constants set to ``values`` for a while."""
    modules = (search_module, store_module, codes_module)
    saved = [(m, k, getattr(m, k)) for m in modules for k in values if hasattr(m, k)]
    for m, k, _ in saved:
        setattr(m, k, values[k])
    try:
        yield
    finally:
        for m, k, v in saved:
            setattr(m, k, v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--real-n", type=int, default=1_000_000)
    parser.add_argument("--settle", type=float, default=0.25,
                        help="seconds idle before each timed call, as a search from the app starts (0: back to back)")
    args = parser.parse_args(argv)
    header("score distribution from one-byte codes", sys.argv)
    timing(args.n, args.queries, args.settle)
    if args.real_n:  # 0: the timing only
        histogram_error(args.real_n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
