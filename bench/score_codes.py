"""Every score from one byte per dimension (issue 25, item 1): the full score distribution of a search from the
store's int8 codes against the float16 scan it replaced, and the histogram's error against the exact one.

In one process, interleaved query by query on the same store (a float16 workspace as ``update()`` leaves it,
with its codes file): what a search with ``limit=100`` computes for its histogram, i.e. ``score_scope`` +
``exact_top`` (the results rescored exactly) + a 50-bin histogram,

* **float16**: the scan before codes (the snapshot without its codes);
* **codes**: the scan from the codes (numba int8 x int16 kernel, both cores);
* **read bound**: numpy summing the codes file's bytes as int64 (one pass over the same memory, one core).

The histogram's error: N vectors made from real offline-model image embeddings (bench/label_mistakes.py's cache:
Tux Paint stamps, Noto emoji, OpenClipart, Fashion-MNIST; each vector a real embedding plus 0.3 of another plus
noise, renormalised) scored against real prompts and real images; the largest difference of a bin of the
codes' histogram from the exact histogram's (same edges), per 10,000 images; also on the real embeddings alone.

    nice -n 10 .venv/bin/python bench/score_codes.py [--n 1000000] [--queries 20] [--real-n 1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import header, median, table, timed
from query import build_workspace, image_queries, make_data, make_ids, text_like_queries

from picsift.core.codes import StoreCodes, encode
from picsift.query.search import exact_top, score_scope

CACHE = Path.home() / ".cache" / "picsift" / "bench"
SETS = ("stamps", "emoji", "clipart-3000", "fmnist-10000")
PROMPTS = ["a bird", "a red bicycle", "a dog on a beach", "a musical instrument", "a house", "a flower", "a shoe",
           "a shirt", "a smiling face", "a car"]


def distribution(snapshot, query: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
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
        plain = dataclasses.replace(snapshot, codes=None)
        raw = snapshot.codes.raw
        distribution(snapshot, qs[0]), distribution(plain, qs[0])
        times: dict[str, list[float]] = {"float16": [], "codes": [], "read": []}
        band = []
        for q in qs:
            times["float16"].append(timed(lambda q=q: distribution(plain, q))[0])
            times["codes"].append(timed(lambda q=q: distribution(snapshot, q))[0])
            times["read"].append(timed(lambda: raw.view(np.int64).sum())[0])
            coarse = score_scope(snapshot, None, q[None, :])
            last = np.sort(coarse)[-100]
            band.append(int((coarse >= last - 2 * snapshot.coarse_error(n)).sum()))
        base = median(times["float16"])
        print(table([["float16 scan + exact_top(100) + histogram (before)", 1000 * base, "1.00x"],
                     ["codes scan + exact_top(100) + histogram", 1000 * median(times["codes"]),
                      f"{median(times['codes']) / base:.2f}x"],
                     ["numpy reads the codes once (one core)", 1000 * median(times["read"]),
                      f"{median(times['read']) / base:.2f}x"]],
                    [f"N = {n}, {len(qs)} queries", "median ms", "vs float16"]))
        print(f"codes error bound {snapshot.coarse_error(n):.4f} (float16 {snapshot.scan_error:.5f}); images rescored "
              f"exactly per query: median {int(np.median(band))}, max {max(band)}")
        catalog.close()


def real_embeddings() -> np.ndarray:
    parts = [np.load(CACHE / f"label-mistakes-{name}.npz", allow_pickle=False)["x"] for name in SETS
             if (CACHE / f"label-mistakes-{name}.npz").exists()]
    if not parts:
        raise SystemExit(f"no cached embeddings in {CACHE}: run bench/label_mistakes.py --quick first")
    x = np.concatenate(parts).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def histogram_error(n: int) -> None:
    from picsift.embedding.openclip import Embedder

    real = real_embeddings()
    prompts = Embedder("picsift-offline", device="cpu").embed_text(PROMPTS)
    rng = np.random.default_rng(0)
    made = np.empty((n, real.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = real[rng.integers(0, len(real), m)] + 0.3 * real[rng.integers(0, len(real), m)]
        block += 0.02 * rng.standard_normal(block.shape, np.float32)
        made[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    rows = []
    for name, data in ((f"real embeddings ({len(real):,})", real), (f"made from real ({n:,})", made)):
        codes = StoreCodes(np.concatenate([encode(data[s : s + 65_536]) for s in range(0, len(data), 65_536)]),
                           data.shape[1])
        every = np.arange(len(data))
        for kind, queries in (("text", prompts), ("image", real[rng.integers(0, len(real), 10)])):
            worst, errors = [], []
            for q in queries:
                exact = data @ q
                coarse = codes.scan(q[None, :], every)[:, 0]
                counts, edges = np.histogram(exact, 50)
                worst.append(np.abs(np.histogram(coarse, edges)[0] - counts).max() * 10_000 / len(data))
                errors.append(np.abs(coarse - exact).std())
            rows.append([name, kind, f"{np.median(worst):.2f}", f"{max(worst):.2f}", f"{np.median(errors):.1e}",
                         f"{codes.error:.4f}"])
    print(table(rows, ["vectors", "queries", "bin error /10k median", "max", "score error std", "bound"]))


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
