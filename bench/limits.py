"""The machine's bounds the "limits" table in bench/README.md measures picsift against, in one process.

* **memory bandwidth**: the fastest streaming read of a buffer of the store's size that numpy can do here (the
  best of a few whole-buffer reductions, one thread and two threads on halves), i.e. how fast any scan of those
  bytes can possibly be;
* **full score distribution**: picsift's ``score_scope`` over a float16 store of N x 512 (every image's score),
  and numpy's float32 ``vectors @ q`` (BLAS; numpy has no fast float16 product) over the same vectors, each next
  to its bytes / bandwidth.

    python bench/limits.py --n 1000000
"""

from __future__ import annotations

import argparse
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

from picsift.query.search import score_scope


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
        score_scope(snapshot, None, queries[:1])
        picsift_ms = median([1000 * best_of(lambda q=q: score_scope(snapshot, None, q[None, :]), 1) for q in queries])
        numpy_ms = median([1000 * best_of(lambda q=q: data @ q, 1) for q in queries])
        bound_ms, bound32_ms = 1000 * half.nbytes / bandwidth, 1000 * data.nbytes / bandwidth
        print(f"\nmemory bandwidth: {bandwidth / 1e9:.1f} GB/s ({how}); float16 store {half.nbytes / 1e9:.2f} GB "
              f"-> bound {bound_ms:.1f} ms; load average now {os.getloadavg()[0]:.1f}")
        print(table([["picsift score_scope, float16 store", picsift_ms, bound_ms, f"{picsift_ms / bound_ms:.2f}x"],
                     ["numpy float32 vectors @ q", numpy_ms, bound32_ms, f"{numpy_ms / bound32_ms:.2f}x"]],
                    ["full score distribution, N=" + f"{args.n:,}", "median ms", "bandwidth bound ms", "ratio"]))
        catalog.close()


if __name__ == "__main__":
    main()
