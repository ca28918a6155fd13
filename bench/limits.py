"""The machine's bounds the "limits" table in bench/README.md measures picsift against, in one process.

* **memory bandwidth**: the fastest streaming read of a buffer of the store's size that numpy can do here (the
  best of a few whole-buffer reductions, one thread and two threads on halves), i.e. how fast any scan of those
  bytes can possibly be;
* **full score distribution**: picsift's ``score_scope`` over a store of N x 512 (every image's score) from the
  store's one-byte codes (what a search at >= 50,000 images scans) and from its float16 vectors, each next to its
  bytes / bandwidth; the same from codes followed by ``exact_top`` (the top 100, both ends and the scores near the
  histogram's 50 edges rescored exactly) and the 50-bin histogram, i.e. all a search computes for its histogram;
  and numpy's float32 ``vectors @ q`` (BLAS; numpy has no fast float16 product) over the same vectors.

    python bench/limits.py --n 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import header, median, table
from query import build_workspace, make_data, make_ids, text_like_queries

from picsift.query.imageset import histogram
from picsift.query.search import exact_top, score_scope


def best_of(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def read_bandwidth(buffer: np.ndarray, repeats: int) -> tuple[float, str]:
    """Bytes per second of the fastest whole-buffer read found, and how it was read."""
    words = buffer.reshape(-1).view(np.uint64)
    halves = np.array_split(words, 2)

    def two_threads(op: Callable[[np.ndarray], object]) -> None:
        threads = [threading.Thread(target=op, args=(half,)) for half in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    ways = {"np.max (1 thread)": lambda: np.max(words), "np.bitwise_or.reduce (1 thread)":
            lambda: np.bitwise_or.reduce(words), "np.max on halves (2 threads)": lambda: two_threads(np.max),
            "np.bitwise_or.reduce on halves (2 threads)": lambda: two_threads(np.bitwise_or.reduce)}
    seconds = {name: best_of(way, repeats) for name, way in ways.items()}
    fastest = min(seconds, key=lambda name: seconds[name])
    return buffer.nbytes / seconds[fastest], fastest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    header("picsift limits: memory bandwidth and scans", sys.argv)
    data, centres, _ = make_data(args.n, 1000, 0)
    queries = text_like_queries(centres, args.queries, 2)
    with tempfile.TemporaryDirectory(prefix="picsift-bench-limits-") as tmp:
        catalog, store = build_workspace(Path(tmp) / "float16", data, make_ids(args.n, 0), "float16")
        snapshot = store.snapshot()
        half = np.ascontiguousarray(data.astype(np.float16))
        bandwidth, how = read_bandwidth(half, args.repeats)
        if snapshot.codes is None:
            raise SystemExit(f"no score codes at --n {args.n}: a store has them from 50,000 images on")
        plain = dataclasses.replace(snapshot, codes=None)
        codes_bytes = snapshot.codes.codes.nbytes

        def distribution(q: np.ndarray) -> None:
            scores = score_scope(snapshot, None, q[None, :])
            histogram(exact_top(snapshot, None, scores, 100, None, None, q[None, :], None, "mean", 0.5), 50)

        work: dict[str, Callable[[np.ndarray], object]] = {"codes": lambda q: score_scope(snapshot, None, q[None, :]),
                "float16": lambda q: score_scope(plain, None, q[None, :]),
                "distribution": distribution, "numpy": lambda q: data @ q}
        for run in work.values():
            run(queries[0])
        ms = {k: median([1000 * best_of(functools.partial(run, q), 1) for q in queries]) for k, run in work.items()}
        bound_ms, bound32_ms = 1000 * half.nbytes / bandwidth, 1000 * data.nbytes / bandwidth
        codes_ms = 1000 * codes_bytes / bandwidth
        print(f"\nmemory bandwidth: {bandwidth / 1e9:.1f} GB/s ({how}); float16 store {half.nbytes / 1e9:.2f} GB "
              f"-> bound {bound_ms:.1f} ms; codes {codes_bytes / 1e9:.2f} GB -> bound {codes_ms:.1f} ms; load average "
              f"now {os.getloadavg()[0]:.1f}")
        print(table([["picsift score_scope, one-byte codes", ms["codes"], codes_ms, f"{ms['codes'] / codes_ms:.2f}x"],
                     ["picsift score_scope + exact_top + histogram, codes", ms["distribution"], codes_ms,
                      f"{ms['distribution'] / codes_ms:.2f}x"],
                     ["picsift score_scope, float16 vectors", ms["float16"], bound_ms,
                      f"{ms['float16'] / bound_ms:.2f}x"],
                     ["numpy float32 vectors @ q", ms["numpy"], bound32_ms, f"{ms['numpy'] / bound32_ms:.2f}x"]],
                    ["full score distribution, N=" + f"{args.n:,}", "median ms", "bandwidth bound ms", "ratio"]))
        catalog.close()


if __name__ == "__main__":
    main()
