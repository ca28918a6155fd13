"""Query benchmarks: index-only top-100 latency and recall per backend, the full score distribution,
a text query end to end, and workspace bytes per image, on synthetic clustered 512-d unit vectors.

For each ``--sizes`` N (default 100k and 1M):

* **data**: N unit vectors around ``--clusters`` gaussian centres (per-cluster spread varies), seeded.
  Two sets of held-out queries that are *not* in the index: ``image`` queries drawn like the data,
  and ``text-like`` queries that sit far from every vector (cosine ~0.35 to one centre, like CLIP's
  text-image gap), which are harder for graph indexes.
* **backends** (``picsift.index.open_index``): build time; index-only ``search(q, 100)`` latency
  (median and p90, exact and hnsw measured alternately query by query) and recall@100 against exact
  numpy ground truth. hnsw's ``ef`` is calibrated exactly as ``Library`` does it
  (``calibrate_for_text_queries``: 50 stored vectors as queries, target recall 0.95), and recall is then
  measured on the held-out queries; a small ef sweep shows the trade-off. qdrant local mode is a
  pure-Python brute force whose inserts are quadratic; its build time is extrapolated from a probe
  and it is skipped (with the reason printed) when it would take longer than ``--qdrant-budget``.
* **distribution**: ``picsift.search.score_scope`` over a real ``EmbeddingStore`` snapshot (every
  image's score, what ``Library.search`` computes by default) plus the histogram, versus a plain
  numpy mat-vec over the same vectors in RAM.
* **text query end to end**: ``Library.search(prompt, limit=100)`` on that workspace with the
  ``ViT-B-32:random`` embedder (random weights: same compute as trained ones), and each of its parts.
* **bytes per image**: vectors file + hnsw index folder + catalog SQLite (files and embeddings rows
  with ~40-character paths), divided by N.

    python bench/query.py --sizes 100000
    nohup python bench/query.py --sizes 1000000 > /tmp/picsift-query-1m.log 2>&1 &
    python bench/query.py --quick
"""

from __future__ import annotations

import argparse
import gc
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from common import folder_bytes, header, median, percentile, table, timed

from picsift import Library
from picsift.catalog import Catalog, FileRow
from picsift.embedding import Embedder
from picsift.embedding.spec import parse_model_spec, slug
from picsift.index import open_index
from picsift.index.sync import calibrate_for_text_queries
from picsift.search import Results, score_scope, select
from picsift.store import EmbeddingStore

DIM = 512
K = 100
MODEL = "ViT-B-32:random"
GOAL_HNSW_MS, GOAL_RECALL, GOAL_DISTRIBUTION_MS = 5.0, 0.95, 100.0
PROMPTS = ["a dog on a beach", "a red car", "a rocket in space", "a bowl of soup", "a cat asleep",
           "mountains at sunset", "a birthday cake", "two people hugging", "a yellow flower", "a train"]


def log(message: str) -> None:
    print(message, flush=True)


# -- data -----------------------------------------------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(
    n: int, clusters: int, seed: int, chunk: int = 100_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


# -- workspace ------------------------------------------------------------------------------------
def fake_path(i: int) -> str:
    """~40-character relative paths, like a phone's camera roll sorted by year and event."""
    year, month = 2010 + i % 14, 1 + (i // 14) % 12
    return f"Pictures/{year}/{year}-{month:02d} Trip {i % 97:02d}/IMG_{i:08d}.jpg"


def build_workspace(ws: Path, data: np.ndarray, ids: list[str]) -> tuple[Catalog, EmbeddingStore, dict]:
    """A picsift workspace holding ``data`` as the embeddings of ``MODEL``: what update() would leave."""
    spec = parse_model_spec(MODEL)
    catalog = Catalog(ws / "catalog.sqlite")
    store = EmbeddingStore(catalog, ws / "models" / slug(spec.identity()), spec.identity(), spec.text, DIM)
    t_vectors, rows = timed(lambda: store.write_vectors(data))
    started = time.perf_counter()
    now = time.time_ns()
    with catalog.transaction() as db:
        for start in range(0, len(ids), 100_000):
            chunk = range(start, min(start + 100_000, len(ids)))
            Catalog.upsert_files(db, (FileRow(fake_path(i), 2_000_000 + i, now, ids[i], 4000, 3000, None)
                                      for i in chunk))
        store.commit_rows(db, ids, rows)
        catalog.set_meta("model", spec.text, db)
        catalog.set_meta("index", "exact", db)
    t_catalog = time.perf_counter() - started
    catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return catalog, store, {"write_vectors_s": t_vectors, "catalog_rows_s": t_catalog}


# -- measurements ---------------------------------------------------------------------------------
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


def qdrant_build(data: np.ndarray, ids: list[str], budget: float) -> tuple[object | None, float, str]:
    """Build the qdrant local-mode index, unless its build is estimated to exceed ``budget`` seconds.

    Returns (index or None, build seconds, reason when skipped)."""
    n = len(ids)
    index = open_index("qdrant", dim=DIM, path=None)
    probe = min(n, 5000)
    started = time.perf_counter()
    t1, _ = timed(lambda: index.add(ids[:probe], data[:probe]))
    t2 = 0.0
    if n > probe:
        t2, _ = timed(lambda: index.add(ids[probe : 2 * probe], data[probe : 2 * probe]))
    done = min(n, 2 * probe)
    if n > done:
        # Local mode appends to numpy arrays point by point, so t(m) ~ a*m + b*m^2: fit on the two halves
        # (m=p: t1; m=2p: t1+t2  =>  b = (t2 - t1) / (2 p^2), a = (t1 - b p^2) / p).
        b = max(0.0, (t2 - t1) / (2 * probe * probe))
        a = max(1e-9, (t1 - b * probe * probe) / probe)
        estimate = a * n + b * n * n
        if estimate > budget:
            index.close()
            return None, 0.0, (f"build estimated at {estimate / 60:.0f} min (> --qdrant-budget "
                               f"{budget:.0f}s), from {t1:.1f}s for the first {probe:,} vectors and "
                               f"{t2:.1f}s for the next {probe:,}")
        log(f"qdrant: building, estimated {estimate:.0f}s")
        for start in range(done, n, 50_000):
            index.add(ids[start : start + 50_000], data[start : start + 50_000])
    return index, time.perf_counter() - started, ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100, help="held-out queries of each kind")
    parser.add_argument("--qdrant-queries", type=int, default=20)
    parser.add_argument("--qdrant-budget", type=float, default=300.0, help="seconds qdrant's build may take")
    parser.add_argument("--backends", default="exact,hnsw,qdrant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="temporary workspaces go here (default: system temp)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.qdrant_queries, args.clusters = "20000", 20, 5, 100
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    logging.getLogger("picsift").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)

    header("picsift query benchmark", sys.argv)
    embedder = Embedder(MODEL, device="cpu")
    summary = []
    for n in sizes:
        summary.append(run_size(n, args, backends, embedder))
        gc.collect()

    log("\n== summary ==")
    rows = []
    for s in summary:
        rows.append([f"{s['n']:,}", s.get("hnsw_ef", "-"), s.get("hnsw_ms", float("nan")),
                     s.get("exact_ms", float("nan")), s.get("hnsw_recall", float("nan")),
                     s.get("hnsw_recall_text", float("nan")), s["distribution_ms"], s["text_e2e_ms"],
                     s["bytes_per_image"]])
    log(table(rows, ["N", "hnsw ef", "hnsw top-100 ms", "exact top-100 ms", "hnsw recall@100 (image q)",
                     "hnsw recall@100 (text-like q)", "distribution ms", "text query e2e ms",
                     "workspace bytes/image"]))
    for s in summary:
        if s["n"] < 1_000_000:
            continue
        if "hnsw_ms" in s:
            ok = s["hnsw_ms"] < GOAL_HNSW_MS and s["hnsw_recall"] >= GOAL_RECALL
            log(f"goal at {s['n']:,}: hnsw top-100 < {GOAL_HNSW_MS} ms with recall >= {GOAL_RECALL}: "
                f"{s['hnsw_ms']:.2f} ms, recall {s['hnsw_recall']:.3f} -> {'MET' if ok else 'NOT MET'}")
        ok = s["distribution_ms"] < GOAL_DISTRIBUTION_MS
        log(f"goal at {s['n']:,}: full score distribution < {GOAL_DISTRIBUTION_MS:.0f} ms: "
            f"{s['distribution_ms']:.1f} ms -> {'MET' if ok else 'NOT MET'}")
    log(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


def run_size(n: int, args: argparse.Namespace, backends: list[str], embedder: Embedder) -> dict:
    from tqdm.auto import tqdm

    log(f"\n== N = {n:,} vectors, {DIM}-d, {args.clusters} clusters ==")
    summary: dict = {"n": n}
    t, (data, centres, spread) = timed(lambda: make_data(n, args.clusters, args.seed))
    ids = make_ids(n, args.seed)
    queries = {"image": image_queries(centres, spread, args.queries, args.seed + 1),
               "text-like": text_like_queries(centres, args.queries, args.seed + 2)}
    truth = {kind: ground_truth(data, q, K) for kind, q in queries.items()}
    log(f"data generated in {t:.1f}s; ground truth for {2 * args.queries} held-out queries computed")

    with tempfile.TemporaryDirectory(prefix="picsift-bench-query-", dir=args.workdir) as tmp:
        ws = Path(tmp) / "workspace"
        (Path(tmp) / "root").mkdir()
        catalog, store, build = build_workspace(ws, data, ids)
        log(f"workspace: vectors written in {build['write_vectors_s']:.1f}s, "
            f"{n:,} file + embedding rows committed in {build['catalog_rows_s']:.1f}s")

        # -- the full score distribution ----------------------------------------------------------
        snap_times = []
        for _ in range(3):
            t, snapshot = timed(store.snapshot)
            snap_times.append(t)
        qs = queries["text-like"][: min(20, args.queries)]
        score_scope(snapshot, None, qs[0][None, :])  # fault the memory map in
        t_scope, t_hist, t_raw = [], [], []
        for q in qs:
            t, scores = timed(lambda q=q: score_scope(snapshot, None, q[None, :]))
            t_scope.append(t)
            t, _ = timed(lambda scores=scores: np.histogram(scores, bins=50))
            t_hist.append(t)
            t, _ = timed(lambda q=q: data @ q)
            t_raw.append(t)
        dist_ms = 1000 * (median(t_scope) + median(t_hist))
        summary["distribution_ms"] = dist_ms
        log("\nfull score distribution (every image's score, as Library.search computes by default):")
        log(table([
            ["store.snapshot(), first (SQL rows -> arrays)", 1000 * snap_times[0], "-"],
            ["store.snapshot(), cached (same store version)", 1000 * median(snap_times[1:]), "-"],
            ["score_scope over the snapshot (memmap)", 1000 * median(t_scope),
             f"{median(t_scope) / median(t_raw):.2f}x"],
            ["np.histogram, 50 bins", 1000 * median(t_hist), "-"],
            ["score_scope + histogram", dist_ms, f"{dist_ms / 1000 / median(t_raw):.2f}x"],
            ["baseline: numpy data @ q (in RAM)", 1000 * median(t_raw), "1.00x"],
        ], ["step", "median ms", "vs numpy mat-vec"]))

        # -- text query end to end ------------------------------------------------------------------
        lib = Library(Path(tmp) / "root", workspace=ws, model=MODEL, index="exact")
        lib._embedder = embedder
        names = ["embed_text (tokenise + encode)", "store.snapshot()", "score_scope", "select top 100",
                 "DataFrame with paths", "write temporary collection", "Library.search total"]
        parts: dict[str, list[float]] = {k: [] for k in names}
        lib.search(PROMPTS[0], limit=K)  # warm-up
        for prompt in PROMPTS:
            t, total = timed(lambda prompt=prompt: lib.search(prompt, limit=K))
            parts["Library.search total"].append(t)
            t, vector = timed(lambda prompt=prompt: embedder.embed_text([prompt]))
            parts["embed_text (tokenise + encode)"].append(t)
            t, snap = timed(lib.store.snapshot)
            parts["store.snapshot()"].append(t)
            t, scores = timed(lambda snap=snap, vector=vector: score_scope(snap, None, vector))
            parts["score_scope"].append(t)
            t, picked = timed(lambda scores=scores: select(scores, K, None, None))
            parts["select top 100"].append(t)

            def frame(snap=snap, picked=picked, scores=scores):
                import pandas as pd

                result_ids = snap.ids[picked]
                paths = lib.paths(result_ids.tolist())  # one page of paths, looked up by id
                return pd.DataFrame({
                    "rank": np.arange(1, len(result_ids) + 1), "id": result_ids.astype(str),
                    "path": [str(paths[i]) if i in paths else None for i in result_ids],
                    "score": scores[picked],
                })
            t, df = timed(frame)
            parts["DataFrame with paths"].append(t)
            assert df["id"].tolist() == total.df["id"].tolist()
            t, _ = timed(lambda df=df: lib.catalog.write_collection("_bench", df["id"].tolist(),
                                                                    df["score"].tolist(), {"q": "bench"}))
            parts["write temporary collection"].append(t)
        assert isinstance(total, Results) and len(total) == min(K, n)
        e2e = median(parts["Library.search total"])
        summary["text_e2e_ms"] = 1000 * e2e
        log(f"\ntext query end to end: Library.search(prompt, limit={K}) with {MODEL}, "
            f"median of {len(PROMPTS)} prompts, after a warm-up search:")
        log(table([[k, 1000 * median(v), f"{median(v) / e2e:.0%}"] for k, v in parts.items()],
                  ["part", "median ms", "share of total"]))
        lib.close()
        del snapshot, snap, scores, total
        gc.collect()

        # -- index backends -------------------------------------------------------------------------
        indexes: dict = {}
        rows = []
        if "exact" in backends:
            exact = open_index("exact", dim=DIM, path=None)
            t, _ = timed(lambda: exact.add(ids, data))
            indexes["exact"] = exact
            summary["exact_build_s"] = t
            log(f"\nexact: built in {t:.1f}s")
        hnsw = None
        if "hnsw" in backends:
            hnsw_path = store.folder / "hnsw"  # where Library keeps it
            hnsw = open_index("hnsw", dim=DIM, path=hnsw_path)
            started = time.perf_counter()
            with tqdm(total=n, desc="hnsw build", unit="vec", mininterval=10, file=sys.stdout) as bar:
                for start in range(0, n, 50_000):  # IndexKeeper.sync adds in chunks
                    hnsw.add(ids[start : start + 50_000], data[start : start + 50_000])
                    bar.update(min(50_000, n - start))
            t_build = time.perf_counter() - started
            snapshot = store.snapshot()
            t_cal, _ = timed(lambda: calibrate_for_text_queries(hnsw, snapshot))
            del snapshot
            ef = hnsw.ef
            summary["hnsw_ef"] = ef
            summary["hnsw_build_s"] = t_build
            log(f"hnsw (M={hnsw.M}, ef_construction={hnsw.ef_construction}): built in {t_build:.0f}s "
                f"({n / t_build:,.0f} vectors/s); calibrate_for_text_queries chose ef={ef} in {t_cal:.1f}s")
            indexes["hnsw"] = hnsw

        for kind, q in queries.items():
            measured = interleaved_search(indexes, q)
            base = median(measured["exact"][0]) if "exact" in measured else float("nan")
            for name, (lat, found) in measured.items():
                rec = recall(found, truth[kind], ids)
                rows.append([name, kind, hnsw.ef if name == "hnsw" else "-", 1000 * median(lat),
                             1000 * percentile(lat, 90), rec, f"{median(lat) / base:.3f}x", len(q)])
                suffix = "" if kind == "image" else "_text"
                summary[f"{name}_recall{suffix}"] = rec
                summary[f"{name}_ms{suffix}"] = 1000 * median(lat)

        if hnsw is not None:  # the trade-off around the calibrated ef, on the held-out image queries
            sweep = []
            calibrated = hnsw.ef
            for ef in sorted({50, 100, 200, 400, 800} - {calibrated}):
                hnsw._index.set_ef(ef)
                lat, rec = [], {}
                for kind, q in queries.items():
                    found = []
                    for vector in q:
                        t, (f, _) = timed(lambda vector=vector: hnsw.search(vector, K))
                        lat.append(t)
                        found.append(f)
                    rec[kind] = recall(found, truth[kind], ids)
                sweep.append([ef, 1000 * median(lat), rec["image"], rec["text-like"]])
            hnsw._index.set_ef(calibrated)
            t_save, _ = timed(hnsw.save)
            summary["hnsw_bytes"] = folder_bytes(hnsw_path)
            log(f"hnsw saved in {t_save:.1f}s: {summary['hnsw_bytes'] / 2**20:,.0f} MiB")

        if "qdrant" in backends:
            indexes.pop("exact", None)
            gc.collect()
            qd, t_qd, reason = qdrant_build(data, ids, args.qdrant_budget)
            if qd is None:
                log(f"qdrant (local mode): skipped: {reason}")
                rows.append(["qdrant", "-", "-", float("nan"), float("nan"), float("nan"), "skipped", 0])
            else:
                log(f"qdrant (local mode, :memory:): built in {t_qd:.0f}s")
                for kind, q in queries.items():
                    q = q[: args.qdrant_queries]
                    measured = interleaved_search({"qdrant": qd, **({"hnsw": hnsw} if hnsw else {})}, q)
                    lat, found = measured["qdrant"]
                    base = median(measured["hnsw"][0]) if hnsw else float("nan")
                    rows.append(["qdrant", kind, "-", 1000 * median(lat), 1000 * percentile(lat, 90),
                                 recall(found, truth[kind][: len(q)], ids), f"{median(lat) / base:.0f}x hnsw",
                                 len(q)])
                qd.close()
                del qd
        log(f"\nindex-only search(q, {K}) at N={n:,}, held-out queries; exact and hnsw measured alternately:")
        log(table(rows, ["backend", "queries", "ef", "median ms", "p90 ms", "recall@100", "latency vs exact",
                         "n queries"]))
        if hnsw is not None:
            log(f"\nhnsw ef sweep (calibrated ef={hnsw.ef} is in the table above):")
            log(table(sweep, ["ef", "median ms (all q)", "recall@100 (image q)", "recall@100 (text-like q)"]))

        # -- bytes per image --------------------------------------------------------------------------
        catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        vectors_bytes = folder_bytes(store.folder / "vectors-0.f32")
        catalog_bytes = sum(folder_bytes(p) for p in ws.glob("catalog.sqlite*"))
        hnsw_bytes = summary.get("hnsw_bytes", 0)
        total_bytes = vectors_bytes + catalog_bytes + hnsw_bytes
        summary["bytes_per_image"] = total_bytes / n
        chars = np.mean([len(fake_path(i)) for i in range(99)])
        log(f"\nworkspace bytes per image at N={n:,} (paths ~{chars:.0f} chars):")
        log(table([
            ["embedding store (vectors file)", vectors_bytes / 2**20, vectors_bytes / n],
            ["hnsw index folder", hnsw_bytes / 2**20, hnsw_bytes / n],
            ["catalog.sqlite (files + embeddings rows)", catalog_bytes / 2**20, catalog_bytes / n],
            ["total", total_bytes / 2**20, total_bytes / n],
        ], ["part", "MiB", "bytes/image"]))
        catalog.close()
        indexes.clear()
    return summary


if __name__ == "__main__":
    main()
