"""The library's own path around its index (issue 25, item 5): ``Library.similar/search(..., distribution=False)``
against the index alone, on the same workspace, interleaved query by query.

A workspace of N synthetic clustered 512-d unit vectors (bench/query.py's data) with the library's default index
(built and calibrated by the first search; pass ``--workspace`` to reuse one this script built before). Held-out
queries, never stored: *image-like* and *text-like* (bench/query.py). Contenders:

* **index alone**: ``lib.index.search(q, 100)``;
* **library, held-out vector**: what ``search(prompt, distribution=False)`` does once the prompt is a vector (the
  searcher's ``_run``: index top, rows found, rescored exactly, an ``ImageSet`` built, remembered as the
  temporary collection);
* **library, rows from the catalog (before)**: the same with the index hits' rows looked up in the catalog (one SQL
  query per search), as before issue 25;
* **Library.similar(stored id, distribution=False)**: the public verb for an image of the library.

Recall@100 of the held-out path against exact float32 search of the store's vectors.

With ``--steps N``, each step of ``Library.similar(stored id, distribution=False)`` is timed alone, N times, without
a profiler (the index's own query, its ids, the rows, the rescoring, the temporary collection's write...).

With ``--profile N``, N more ``Library.similar(stored id, distribution=False)`` calls run under cProfile and the
functions with the most own time are printed (what is left around the index, and whether any of it grows with N).

    nice -n 10 .venv/bin/python bench/library_path.py [--n 100000] [--queries 40] [--workspace DIR] [--profile 200]
        [--ef 600,1200] [--nprobe 20,32] [--steps 200]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import header, median, table, timed
from query import build_workspace, image_queries, make_data, make_ids, text_like_queries

from picsift import Library
from picsift.core.store import DEFAULT_PRECISION, StoreSnapshot
from picsift.index.base import top_k
from picsift.index.sync import wider_k
from picsift.query.options import SearchOptions
from picsift.query.search import Searcher, query_vectors
from picsift.query.steps import ImageSearch

MODEL = "ViT-B-32:random"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CatalogRows(Searcher):
    """The searcher before issue 25: the index hits' rows looked up in the catalog."""

    def _index_top(self, snapshot: StoreSnapshot, positives: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._index()
        query = query_vectors(positives, "mean")
        ids, _ = index.search(query[0], wider_k(limit) if index.score_error else limit)
        rows = self._store().rows_of(ids)
        ids = [i for i in ids if i in rows and rows[i] < snapshot.matrix.shape[0]]
        scores = snapshot.exact_rows(query, np.array([rows[i] for i in ids], dtype=np.int64))[:, 0]
        order = top_k(scores, limit)
        return np.array(ids, dtype="<U32")[order], scores[order]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--profile", type=int, default=0, help="then profile this many similar() calls")
    parser.add_argument("--ef", default="",
                        help="comma-separated ef values to search at, each in turn, instead of the calibrated one "
                             "(prices a wider beam on the same warm index)")
    parser.add_argument("--nprobe", default="",
                        help="the ivf index: comma-separated nprobe values to search at, each in turn, instead of the "
                             "calibrated one")
    parser.add_argument("--index", default=None,
                        help="another index backend (exact: the bookkeeping without a graph to build)")
    parser.add_argument("--steps", type=int, default=0, help="time each step of Library.similar alone, N calls")
    args = parser.parse_args(argv)
    header(f"library path vs its index, N={args.n:,}", sys.argv)
    _, centres, spread = data = make_data(args.n, 1000, seed=0)
    with tempfile.TemporaryDirectory(prefix="picsift-bench-path-") as tmp:
        root = args.workspace or Path(tmp)
        if not (root / ".picsift").exists():
            catalog, _ = build_workspace(root / ".picsift", data[0], make_ids(args.n, 0), DEFAULT_PRECISION,
                                         model=MODEL)
            catalog.close()
        del data
        lib = Library(root, model=MODEL, **({"index": args.index} if args.index else {}))
        cpu = cpu_seconds()
        first = timed(lambda: lib.similar(lib.store.snapshot().ids[0], limit=100, distribution=False))[0]
        print(f"index: {lib.index_name}; first search (loads or builds and calibrates the index): {first:.1f} s, "
              f"{cpu_seconds() - cpu:.1f} CPU s; ef {getattr(lib.index, 'ef', '-')}, nprobe "
              f"{getattr(lib.index, 'nprobe', '-')}", flush=True)
        snapshot = lib.store.snapshot()
        vectors = snapshot.vectors()
        searcher = lib.queries.searcher
        before = CatalogRows(lambda: lib.store, lambda: lib.embedder, lambda: lib.index, lib.root, lib._pending,
                             lambda: lib.spec.text, lambda: lib.spec.label())
        options = SearchOptions(limit=100, distribution=False)
        scope = lib.queries.scope(None)
        step = ImageSearch(images=("held-out",))
        half = args.queries // 2
        kinds = {"image-like": image_queries(centres, spread, half, 11),
                 "text-like": text_like_queries(centres, half, 12)}
        stored = snapshot.ids[np.random.default_rng(5).integers(0, len(snapshot), args.queries)]
        truths = {kind: [set(snapshot.ids[top_k(vectors @ q, 100)].tolist()) for q in queries]
                  for kind, queries in kinds.items()}  # before the timings: BLAS's spinning threads would slow them
        settings = [("ef", int(e)) for e in args.ef.split(",") if e] + \
            [("nprobe", int(p)) for p in args.nprobe.split(",") if p]
        for name, value in settings or [("", 0)]:
            if value:
                setattr(lib.index, name, value)
                print(f"\nsearched at {name} {value}")
            times: dict[str, list[float]] = {"index alone": [], "library, held-out vector": [],
                                              "library, rows from the catalog (before)": [],
                                              "Library.similar(stored id)": []}
            recall: dict[str, list[float]] = {kind: [] for kind in kinds}
            for kind, queries in kinds.items():
                for q, image_id, truth in zip(queries, stored, truths[kind], strict=False):
                    times["index alone"].append(timed(lambda q=q: lib.index.search(q, 100))[0])
                    t, found = timed(lambda q=q: lib.remember(searcher._run(q[None], step, options, scope, ())))
                    times["library, held-out vector"].append(t)
                    times["library, rows from the catalog (before)"].append(
                        timed(lambda q=q: lib.remember(before._run(q[None], step, options, scope, ())))[0])
                    times["Library.similar(stored id)"].append(
                        timed(lambda i=image_id: lib.similar(i, limit=100, distribution=False))[0])
                    recall[kind].append(len(truth & set(found.ids.tolist())) / 100)
            base = median(times["index alone"])
            print(table([[name, f"{1000 * median(v):.2f}", f"{median(v) / base:.2f}x"] for name, v in times.items()],
                        ["top-100, distribution=False", "median ms", "vs index alone"]))
            print("recall@100 of the library path: " + ", ".join(f"{k} {np.mean(v):.3f} (min {min(v):.2f})"
                                                                  for k, v in recall.items()))
        if args.steps:
            print(f"\neach step of Library.similar(stored id, distribution=False) alone, median of {args.steps} calls:")
            print(table([[name, f"{ms:.3f}"] for name, ms in steps(lib, snapshot, args.steps).items()],
                        ["step", "median ms"]))
        if args.profile:
            profiler = cProfile.Profile()
            picks = snapshot.ids[np.random.default_rng(6).integers(0, len(snapshot), args.profile)]
            profiler.enable()
            for image_id in picks:
                lib.similar(image_id, limit=100, distribution=False)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            print(f"\n{args.profile} x Library.similar(stored id, distribution=False) under cProfile, by own time:")
            print(out.getvalue())
    return 0


def steps(lib: Library, snapshot: StoreSnapshot, calls: int) -> dict[str, float]:
    """Median ms of each step of ``Library.similar(stored id, distribution=False)``, each timed alone."""
    from picsift.index import qdrant_edge

    def median_ms(run: Callable[[int], object]) -> float:
        return 1000 * median([timed(lambda i=i: run(i))[0] for i in range(calls)])

    rng = np.random.default_rng(7)
    picks = snapshot.ids[rng.integers(0, len(snapshot), calls)]
    vectors = snapshot.vectors(rng.integers(0, len(snapshot), calls))
    searcher, index, wider = lib.queries.searcher, lib.index, wider_k(100)
    options = SearchOptions(limit=100, distribution=False)
    found = [index.search(v, wider)[0] for v in vectors]
    result = lib.similar(picks[0], limit=100, distribution=False)
    out = {}
    if isinstance(index, qdrant_edge.QdrantEdgeIndex):
        with index._open() as shard:
            requests = [index._request(v, wider) for v in vectors]  # as index.search asks the engine
            points = shard.query(requests[0])
            out["the engine's shard.query(150)"] = median_ms(lambda i: shard.query(requests[i]))
            out["its 150 ids (uuid.UUID -> hex)"] = median_ms(lambda i: [qdrant_edge.image_id(p.id) for p in points])
    work: dict[str, Callable[[int], object]] = {
        "index.search(150), the whole": lambda i: index.search(vectors[i], wider),
        "ids to rows (snapshot.positions_of)": lambda i: snapshot.positions_of(np.asarray(found[i], "<U32")),
        "exact rescoring of 150 rows": lambda i: snapshot.exact_rows(vectors[i][None], snapshot.rows[:wider]),
        "searcher._index_top (the 3 above, top 100)": lambda i: searcher._index_top(snapshot, vectors[i][None], 100),
        "the reference's vector": lambda i: searcher.reference_vectors([picks[i]]),
        "is an update running (probe)": lambda i: lib._pending(len(snapshot)),
        "writing the temporary collection (remember)": lambda i: lib.remember(result),
        "queries.similar (pure: no write)": lambda i: lib.queries.similar(picks[i], options, None, False),
        "Library.similar": lambda i: lib.similar(picks[i], limit=100, distribution=False)}
    return out | {name: median_ms(run) for name, run in work.items()}


if __name__ == "__main__":
    raise SystemExit(main())
