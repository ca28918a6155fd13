"""Query benchmarks, today's layout against the compact one, on synthetic clustered 512-d unit vectors.

For each ``--sizes`` N (default 100k and 1M), in one process:

* **data**: N unit vectors around ``--clusters`` gaussian centres (per-cluster spread varies), seeded.
  Two sets of held-out queries that are *not* in the index: ``image`` queries drawn like the data,
  and ``text-like`` queries that sit far from every vector (cosine ~0.35 to one centre, like CLIP's
  text-image gap), which are harder for graph indexes.
* **two workspaces** with the same vectors, as ``update()`` leaves them: *float32* (the store format
  before float16, with the ``hnsw`` index: "today") and *float16* (the current store, with the
  ``qdrant-edge`` index in its uint8 mode: "compact").
* **index build**: hnswlib (M=16, ef_construction=200, 2 threads) and qdrant-edge (uint8, m=16,
  ef_construct=128, 2 threads), each filled in 10k chunks as ``IndexKeeper.sync`` does and saved. Above
  ``--hnsw-max`` vectors the 26-minute hnsw build is not repeated: both are then built on the first
  ``--hnsw-max`` vectors for a same-run ratio, and only qdrant-edge on all N.
* **top-100**: each index's ef is calibrated as the library does (``calibrate_for_text_queries``, target
  recall 0.95), then held-out queries run index-only, and through the library's path for each layout
  (hnsw as is; qdrant-edge asked for 150 and rescored exactly from the float16 store), interleaved with
  exact search query by query. Recall@100 against exact float32 ground truth. An ef sweep follows.
* **full score distribution**: ``score_scope`` over the float32 store vs over the float16 store plus
  ``exact_top`` (what a search with ``limit=100`` computes), each + a 50-bin histogram, interleaved.
* **bytes per image**: vectors and score-codes files + index folder + catalog, apparent and allocated (sparse
  files).
* **filtered top-100**: a search ``within`` a random 1/10/30% of the images, from the scope's ids, exactly
  (today's path vs the one before the id index, ``bench/scoped.py``), and pushed down to qdrant-edge.
  ``--only-filtered`` builds only the float16 workspace and times before vs today (add ``--edge`` to build
  qdrant-edge too and time the push-down: at 100k, not 1M).

    python bench/query.py --sizes 100000
    nohup nice -n 10 python bench/query.py --sizes 1000000 > /tmp/picsift-query-1m.log 2>&1 &
    python bench/query.py --quick
    nice -n 10 python bench/query.py --sizes 1000000 --only-filtered
    python bench/query.py --sizes 100000 --only-filtered --edge
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from common import header, median, percentile, table, timed
from scoped import HEADERS, compare, filtered

from picsift.core.catalog import Catalog, FileRow
from picsift.core.store import EmbeddingStore, StoreSnapshot
from picsift.embedding.spec import parse_model_spec, slug
from picsift.index import open_index
from picsift.index.sync import CHUNK, calibrate_for_text_queries, wider_k
from picsift.query.search import exact_top, score_scope

DIM = 512
K = 100
WIDER = wider_k(K)  # what the library asks a compact index for before rescoring
MODEL = "ViT-B-32:random"


def log(message: str) -> None:
    print(message, flush=True)


# -- data -----------------------------------------------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(n: int, clusters: int, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, their centres, per-cluster spreads (noise per dimension: 0.03-0.06, i.e. cosine to the
    centre ~0.6-0.8 and between members of a cluster ~0.35-0.65)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, DIM), dtype=np.float32))
    spread = rng.uniform(0.03, 0.06, clusters).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, clusters, m)
        block = rng.standard_normal((m, DIM), dtype=np.float32)
        block *= spread[which, None]
        block += centres[which]
        out[start : start + m] = unit(block)
    return out, centres, spread


def image_queries(centres: np.ndarray, spread: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), n)
    return unit(centres[which] + rng.standard_normal((n, DIM), dtype=np.float32) * spread[which, None])


def text_like_queries(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), n)
    away = rng.standard_normal((n, DIM), dtype=np.float32)
    away -= (away * centres[which]).sum(axis=1, keepdims=True) * centres[which]  # orthogonal to the centre
    return unit(0.35 * centres[which] + 0.94 * unit(away))


def make_ids(n: int, seed: int) -> list[str]:
    text = np.random.default_rng(seed).bytes(16 * n).hex()
    return [text[32 * i : 32 * i + 32] for i in range(n)]


def ground_truth(data: np.ndarray, queries: np.ndarray, k: int, chunk: int = 16) -> np.ndarray:
    """Positions of the exact top-k for each query, (len(queries), k)."""
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        scores = data @ queries[start : start + chunk].T
        for j in range(scores.shape[1]):
            column = scores[:, j]
            part = np.argpartition(-column, k - 1)[:k]
            out[start + j] = part[np.argsort(-column[part])]
    return out


def recall(found: list[list[str]], truth_positions: np.ndarray, ids: list[str]) -> float:
    return float(np.mean([len(set(f) & {ids[p] for p in t}) / len(t)
                          for f, t in zip(found, truth_positions, strict=True)]))


# -- workspaces -----------------------------------------------------------------------------------
def fake_path(i: int) -> str:
    """~40-character relative paths, like a phone's camera roll sorted by year and event."""
    year, month = 2010 + i % 14, 1 + (i // 14) % 12
    return f"Pictures/{year}/{year}-{month:02d} Trip {i % 97:02d}/IMG_{i:08d}.jpg"


def build_workspace(ws: Path, data: np.ndarray, ids: list[str], precision: str,
                    model: str = MODEL) -> tuple[Catalog, EmbeddingStore]:
    """A picsift workspace holding ``data`` as the embeddings of ``model``: what update() would leave."""
    spec = parse_model_spec(model)
    catalog = Catalog(ws / "catalog.sqlite")
    store = EmbeddingStore(catalog, ws / "models" / slug(spec.identity()), spec.identity(), spec.text,
                           data.shape[1], precision=precision)
    rows = store.write_vectors(data)
    now = time.time_ns()
    with catalog.transaction() as db:
        for start in range(0, len(ids), 100_000):
            chunk = range(start, min(start + 100_000, len(ids)))
            Catalog.upsert_files(db, (FileRow(fake_path(i), 2_000_000 + i, now, ids[i], 4000, 3000, None)
                                      for i in chunk))
        store.commit_rows(db, ids, rows)
    catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return catalog, store


def sizes_of(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of a file or folder: preallocated sparse files use less disk."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


# -- the library's two search paths ---------------------------------------------------------------
class Rescored:
    """What ``Library.search(distribution=False)`` does with a compact index: ask for ``WIDER``, rescore
    those exactly from the store (rows looked up in the catalog), keep the best ``K``."""

    def __init__(self, index: object, store: EmbeddingStore, snapshot: StoreSnapshot):
        self.index, self.store, self.snapshot = index, store, snapshot

    def search(self, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        ids, _ = self.index.search(query, WIDER)  # type: ignore[attr-defined]
        rows = self.store.rows_of(ids)
        ids = [i for i in ids if i in rows]
        scores = self.snapshot.exact_rows(query[None, :], np.array([rows[i] for i in ids]))[:, 0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [ids[i] for i in order], scores[order]


def interleaved_search(indexes: dict, queries: np.ndarray) -> dict[str, tuple[list[float], list[list[str]]]]:
    """Each query on each index in turn (so load changes hit all of them alike): latencies, results."""
    out: dict[str, tuple[list[float], list[list[str]]]] = {name: ([], []) for name in indexes}
    for index in indexes.values():
        index.search(queries[0], K)  # warm-up
    for q in queries:
        for name, index in indexes.items():
            seconds, (found, _) = timed(lambda index=index, q=q: index.search(q, K))
            out[name][0].append(seconds)
            out[name][1].append(found)
    return out


def build(name: str, path: Path, ids: list[str], data: np.ndarray, **options: object) -> tuple[object, float]:
    index = open_index(name, DIM, path, **options)
    started = time.perf_counter()
    for start in range(0, len(ids), CHUNK):
        index.add(ids[start : start + CHUNK], data[start : start + CHUNK])
    index.save()
    return index, time.perf_counter() - started


@contextmanager
def numpy_top() -> Iterator[None]:
    """The search's top-k picked by numpy's argpartition, as before torch's top-k took over large scopes."""
    from picsift.query import search

    fast = search._top
    search._top = lambda scores, limit: np.argpartition(-scores, limit - 1)[:limit]
    try:
        yield
    finally:
        search._top = fast


# -- one size -------------------------------------------------------------------------------------
def run_size(n: int, args: argparse.Namespace) -> dict:
    log(f"\n== N = {n:,} vectors, {DIM}-d, {args.clusters} clusters ==")
    s: dict = {"n": n}
    t, (data, centres, spread) = timed(lambda: make_data(n, args.clusters, args.seed))
    ids = make_ids(n, args.seed)
    queries = {"image": image_queries(centres, spread, args.queries, args.seed + 1),
               "text-like": text_like_queries(centres, args.queries, args.seed + 2)}
    truth = {} if args.only_filtered else {kind: ground_truth(data, q, K) for kind, q in queries.items()}
    log(f"data generated in {t:.1f}s; ground truth for {len(truth) * args.queries} held-out queries computed")
    with tempfile.TemporaryDirectory(prefix="picsift-bench-query-", dir=args.workdir) as tmp:
        root = Path(tmp)
        if args.only_filtered:
            cat16, store16 = build_workspace(root / "float16", data, ids, "float16")
            snap16 = store16.snapshot()
            log(f"\nsearch within a scope, top-{K} from the scope's ids: before the id index vs today, "
                f"{min(20, args.queries)} text-like queries, alternating which runs first:")
            log(table(compare(snap16, queries["text-like"][: min(20, args.queries)], K), HEADERS))
            if args.edge:
                edge, s["edge_build_s"] = build("qdrant-edge", store16.folder / "qdrant-edge", ids, data,
                                                datatype="uint8")
                calibrate_for_text_queries(edge, snap16)
                log(f"qdrant-edge (uint8) built in {s['edge_build_s']:.0f}s, calibrated to ef={edge.ef}")  # type: ignore[attr-defined]
                filtered(edge, snap16, ids, data, queries["text-like"][: min(20, args.queries)], K)
                edge.close()  # type: ignore[attr-defined]
            cat16.close()
            return s
        cat32, store32 = build_workspace(root / "float32", data, ids, "float32")
        cat16, store16 = build_workspace(root / "float16", data, ids, "float16")
        snap32, snap16 = store32.snapshot(), store16.snapshot()

        # -- full score distribution ----------------------------------------------------------------
        qs = queries["text-like"][: min(20, args.queries)]
        score_scope(snap32, None, qs[:1])
        score_scope(snap16, None, qs[:1])
        t32, t16, t16_np = [], [], []
        for q in qs:
            t, sc = timed(lambda q=q: score_scope(snap32, None, q[None, :]))
            t32.append(t + timed(lambda sc=sc: np.histogram(sc, bins=50))[0])

            def compact(q: np.ndarray = q) -> np.ndarray:
                scores = score_scope(snap16, None, q[None, :])
                return exact_top(snap16, None, scores, K, None, None, q[None, :], None, "mean", 0.5)
            for numpy_first in ((False, True) if len(t16) % 2 else (True, False)):  # alternate which runs first
                with numpy_top() if numpy_first else nullcontext():  # numpy's argpartition: before 2026-11-30
                    t, sc = timed(compact)
                (t16_np if numpy_first else t16).append(t + timed(lambda sc=sc: np.histogram(sc, bins=50))[0])
        s["dist32_ms"], s["dist16_ms"] = 1000 * median(t32), 1000 * median(t16)
        s["dist16_numpy_top_ms"] = 1000 * median(t16_np)
        log("\nfull score distribution (every image's score + 50-bin histogram), median of "
            f"{len(qs)} text-like queries, interleaved:")
        log(table([["float32 store: score_scope", s["dist32_ms"], "1.00x"],
                   ["float16 store: score_scope + exact_top(100), top-k by numpy", s["dist16_numpy_top_ms"],
                    f"{s['dist16_numpy_top_ms'] / s['dist32_ms']:.2f}x"],
                   ["float16 store: score_scope + exact_top(100)", s["dist16_ms"],
                    f"{s['dist16_ms'] / s['dist32_ms']:.2f}x"]], ["layout", "median ms", "vs float32"]))
        if args.only_distribution:
            return s

        # -- index builds ---------------------------------------------------------------------------
        m = min(n, args.hnsw_max)
        edge_graph = {"m": args.edge_m, "ef_construct": args.edge_ef_construct}
        graph = f"uint8, m={args.edge_m}, ef_construct={args.edge_ef_construct}"
        hnsw_path = store32.folder / "hnsw"
        edge_path = store16.folder / "qdrant-edge"
        hnsw, s["hnsw_build_s"] = build("hnsw", hnsw_path if m == n else root / "hnsw-small", ids[:m], data[:m])
        log(f"\nhnsw (M=16, ef_construction=200): built {m:,} in {s['hnsw_build_s']:.0f}s "
            f"({m / s['hnsw_build_s']:,.0f} vectors/s)")
        if m < n:
            small, s["edge_small_build_s"] = build("qdrant-edge", root / "edge-small", ids[:m], data[:m],
                                                   datatype="uint8", **edge_graph)
            small.close()  # type: ignore[attr-defined]
            log(f"qdrant-edge ({graph}): built the same {m:,} in {s['edge_small_build_s']:.0f}s: "
                f"{s['hnsw_build_s'] / s['edge_small_build_s']:.1f}x faster than hnsw")
            hnsw.close()  # type: ignore[attr-defined]
            hnsw = None
            gc.collect()
        edge, s["edge_build_s"] = build("qdrant-edge", edge_path, ids, data, datatype="uint8", **edge_graph)
        log(f"qdrant-edge ({graph}): built {n:,} in {s['edge_build_s']:.0f}s "
            f"({n / s['edge_build_s']:,.0f} vectors/s)" + (
                f": {s['hnsw_build_s'] / s['edge_build_s']:.1f}x faster than hnsw" if m == n else ""))
        t, _ = timed(lambda: calibrate_for_text_queries(edge, snap16))
        log(f"qdrant-edge calibrated to ef={edge.ef} in {t:.1f}s")  # type: ignore[attr-defined]
        s["edge_ef"] = edge.ef  # type: ignore[attr-defined]
        contenders: dict = {"exact (float32 numpy)": open_index("exact", DIM, None)}
        contenders["exact (float32 numpy)"].add(ids, data)
        if hnsw is not None:
            t, _ = timed(lambda: calibrate_for_text_queries(hnsw, snap32))
            s["hnsw_ef"] = hnsw.ef  # type: ignore[attr-defined]
            log(f"hnsw calibrated to ef={hnsw.ef} in {t:.1f}s")  # type: ignore[attr-defined]
            contenders["hnsw (today)"] = hnsw
        contenders["qdrant-edge uint8, index only"] = edge
        contenders["qdrant-edge uint8 + exact rescoring (library)"] = Rescored(edge, store16, snap16)

        rows = []
        for kind, q in queries.items():
            measured = interleaved_search(contenders, q)
            base = median(measured["exact (float32 numpy)"][0])
            for name, (lat, found) in measured.items():
                rec = recall(found, truth[kind], ids)
                rows.append([name, kind, 1000 * median(lat), 1000 * percentile(lat, 90), rec,
                             f"{median(lat) / base:.3f}x"])
                s[f"{name}|{kind}"] = (1000 * median(lat), rec)
        log(f"\nsearch(q, {K}) at N={n:,}, {args.queries} held-out queries of each kind, contenders interleaved:")
        log(table(rows, ["contender", "queries", "median ms", "p90 ms", "recall@100", "latency vs exact"]))

        sweep = []
        calibrated = edge.ef  # type: ignore[attr-defined]
        library_path = contenders["qdrant-edge uint8 + exact rescoring (library)"]
        for ef in (100, 150, 200, 300, 400, 800):
            edge.ef = ef  # type: ignore[attr-defined]
            row: list = [ef]
            for kind, q in queries.items():
                lat, found = [], []
                for vector in q:
                    t, (f, _) = timed(lambda vector=vector: library_path.search(vector, K))
                    lat.append(t)
                    found.append(f)
                row += [1000 * median(lat), recall(found, truth[kind], ids)]
            sweep.append(row)
        edge.ef = calibrated  # type: ignore[attr-defined]
        log(f"\nqdrant-edge uint8 + exact rescoring, ef sweep (calibrated ef={calibrated} is in the table above):")
        log(table(sweep, ["ef", "image ms", "image recall@100", "text-like ms", "text-like recall@100"]))

        # -- bytes per image ----------------------------------------------------------------------------
        parts = []
        for label, cat, store, index_path in (("today: float32 + hnsw", cat32, store32, hnsw_path if m == n else None),
                                              ("compact: float16 + qdrant-edge uint8", cat16, store16, edge_path)):
            cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            stored = [sizes_of(p) for p in store.folder.iterdir() if p.name.startswith(("vectors-", "codes-"))]
            vec = (sum(a for a, _ in stored), sum(b for _, b in stored))  # the score codes count (issue 25)
            idx = sizes_of(index_path) if index_path is not None else (0, 0)
            catalog_bytes = sum(sizes_of(p)[0] for p in cat.path.parent.glob("catalog.sqlite*"))
            total = vec[1] + idx[1] + catalog_bytes
            parts.append([label, vec[1] / n, idx[0] / n, idx[1] / n, catalog_bytes / n, total / n])
            s[f"bytes|{label}"] = total / n
        log(f"\nworkspace bytes per image at N={n:,} (index: apparent / allocated; totals use allocated):")
        log(table(parts, ["layout", "vectors + codes", "index (apparent)", "index (allocated)", "catalog", "total"]))
        if m < n:
            log("(hnsw was not built at this size: its folder is ~2,333 bytes/image at any size, see bench/README.md)")
        filtered(edge, snap16, ids, data, queries["text-like"][: min(20, args.queries)], K)
        edge.close()  # type: ignore[attr-defined]
        cat32.close()
        cat16.close()
        contenders.clear()
    return s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100, help="held-out queries of each kind")
    parser.add_argument("--hnsw-max", type=int, default=200_000, help="largest N to build hnsw at (6-26 min at 1M)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="temporary workspaces go here (default: system temp)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--edge-m", type=int, default=16, help="qdrant-edge graph degree")
    parser.add_argument("--edge-ef-construct", type=int, default=128, help="qdrant-edge build-time beam width")
    parser.add_argument("--only-distribution", action="store_true", help="stop after the full-distribution part")
    parser.add_argument("--only-filtered", action="store_true",
                        help="only searches within a scope: before vs today (float16 store, no index)")
    parser.add_argument("--edge", action="store_true", help="with --only-filtered: also qdrant-edge's push-down")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.clusters = "20000", 20, 100
    sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    logging.getLogger("picsift").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    header("picsift query benchmark", sys.argv)
    for n in sizes:
        run_size(n, args)
        gc.collect()
    log(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB; "
        f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
