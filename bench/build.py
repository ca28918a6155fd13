"""Index build at N: picsift's own ``ivf`` index and qdrant-edge (uint8) as ``IndexKeeper.sync`` builds them, against
a plain hnswlib ``add_items`` loop and a numpy floor, in one process, with the CPU time of every phase.

What each contender does, on the same N clustered 512-d unit vectors (``bench/query.py``'s data, seeded):

* **ivf** (picsift's inverted lists over the store's score codes): the store's first snapshot builds the score
  codes (every store of 50,000 images keeps them for its histograms, whatever its index), then attaching the index
  builds the lists file (spherical k-means on 32 sampled vectors per list, then every image's list: torch matrix
  products on both cores) and ``calibrate_for_text_queries`` tunes ``nprobe``.

* **numpy floor**: every vector read once and turned into the index's uint8 codes (what any build must at
  least do; it does not search anything).
* **qdrant-edge** (the default): ``add()`` in 10k chunks (the shard's write-ahead log takes batches of
  2,000 points) then ``save()``, whose ``optimize()`` builds the HNSW graph on the engine's own threads
  (one per core); the time of the two phases and the CPU seconds of the whole process are reported, so
  "cores busy" = CPU seconds / wall seconds (2.0 = both cores all the time).
* **hnswlib** (plain loop): ``hnswlib.Index(space="ip")`` with the same M and ef_construction over the float32
  vectors, ``add_items(chunk, num_threads=2)`` per 10k chunk: what the graph costs without picsift or Qdrant.

Then the qdrant-edge index is calibrated as the library does (``calibrate_for_text_queries``, over a float16
store of the same vectors) and held-out image-like and text-like queries run the library's path (150
candidates, rescored exactly from the float16 store): median ms and recall@100 against exact search, so a
faster build is only counted when the previous goals still hold. Bytes per image: store + index (allocated)
+ catalog.

    python bench/build.py --sizes 100000
    nohup nice -n 10 python bench/build.py --sizes 1000000 > /tmp/picsift-build-1m.log 2>&1 &
    python bench/build.py --quick
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
from common import header, median, table, timed
from query import (
    DIM,
    K,
    Rescored,
    build_workspace,
    ground_truth,
    image_queries,
    make_data,
    make_ids,
    recall,
    sizes_of,
    text_like_queries,
)

from picsift.index import open_index
from picsift.index.ivf import IvfIndex
from picsift.index.qdrant_edge import BUILD_BITS, EF_CONSTRUCT, M
from picsift.index.sync import CHUNK, calibrate_for_text_queries


def log(message: str) -> None:
    print(message, flush=True)


def cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread (the engine's build threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of ``work()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = work()
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


def row(name: str, n: int, wall: float, cpu: float, base: float | None = None) -> list:
    return [name, wall, cpu, cpu / wall if wall else 0.0, n / wall if wall else 0.0,
            f"{wall / base:.2f}x" if base else "1.00x"]


def run_size(n: int, args: argparse.Namespace) -> None:
    log(f"\n== N = {n:,} vectors, {DIM}-d, {args.clusters} clusters; m={args.m}, ef_construct={args.ef_construct}, "
        f"qdrant-edge build_bits={args.build_bits:g} ==")
    data, centres, spread = make_data(n, args.clusters, args.seed)
    ids = make_ids(n, args.seed)
    queries = {"image": image_queries(centres, spread, args.queries, args.seed + 1),
               "text-like": text_like_queries(centres, args.queries, args.seed + 2)}
    truth = {} if args.build_only else {kind: ground_truth(data, q, K) for kind, q in queries.items()}
    with tempfile.TemporaryDirectory(prefix="picsift-bench-build-", dir=args.workdir) as tmp:
        root = Path(tmp)
        if args.build_only:
            catalog, store, folder = None, None, root
        else:
            catalog, store = build_workspace(root / "float16", data, ids, "float16")
            folder = store.folder
        rows = []

        edge = open_index("qdrant-edge", DIM, folder / "qdrant-edge", datatype="uint8", m=args.m,
                          ef_construct=args.ef_construct, build_bits=args.build_bits)
        floor_wall, floor_cpu, _ = measured(lambda: [edge._encode(data[s : s + CHUNK])  # type: ignore[attr-defined]
                                                     for s in range(0, n, CHUNK)])
        add_wall, add_cpu, _ = measured(lambda: [edge.add(ids[s : s + CHUNK], data[s : s + CHUNK])
                                                 for s in range(0, n, CHUNK)])
        graph_wall, graph_cpu, _ = measured(edge.save)
        edge_wall, edge_cpu = add_wall + graph_wall, add_cpu + graph_cpu
        log(f"qdrant-edge built {n:,} in {edge_wall:.1f}s (load average now {os.getloadavg()[0]:.1f})")

        hnsw_wall = hnsw_cpu = 0.0
        if not args.no_hnswlib:
            plain = hnswlib.Index(space="ip", dim=DIM)
            plain.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construct)
            labels = np.arange(n)
            hnsw_wall, hnsw_cpu, _ = measured(lambda: [plain.add_items(data[s : s + CHUNK], labels[s : s + CHUNK],
                                                                       num_threads=2) for s in range(0, n, CHUNK)])
            del plain
            gc.collect()
        ivf: IvfIndex | None = None
        if store is not None:
            codes_wall, codes_cpu, snapshot = measured(store.snapshot)  # the score codes: kept by any 50k store
            ivf = IvfIndex(DIM, folder / "ivf")
            lists_wall, lists_cpu, _ = measured(lambda: ivf.attach(snapshot))  # type: ignore[union-attr]
            tune_wall, tune_cpu, _ = measured(lambda: calibrate_for_text_queries(ivf, snapshot))
            ivf.save()  # its nprobe, as the keeper saves it
            ivf_wall, ivf_cpu = lists_wall + tune_wall, lists_cpu + tune_cpu
            log(f"ivf built {n:,} in {ivf_wall:.1f}s: nprobe {ivf.nprobe} of {snapshot.lists.count} lists "  # type: ignore[union-attr]
                f"(load average now {os.getloadavg()[0]:.1f})")
            rows.append(row("ivf, picsift's build (lists + nprobe tuned)", n, ivf_wall, ivf_cpu, edge_wall))
            rows.append(row("  of which the lists: k-means + every image's list", n, lists_wall, lists_cpu, edge_wall))
            rows.append(row("  of which nprobe tuned (100 text-like queries)", n, tune_wall, tune_cpu, edge_wall))
            rows.append(row("  before it: the score codes every 50k store keeps", n, codes_wall, codes_cpu, edge_wall))
        rows.append(row("qdrant-edge, picsift's build (add + save)", n, edge_wall, edge_cpu))
        rows.append(row("  of which add(): codes + upserts (1 thread)", n, add_wall, add_cpu, edge_wall))
        rows.append(row("  of which save(): the HNSW graph (engine threads)", n, graph_wall, graph_cpu, edge_wall))
        if hnsw_wall:
            rows.append(row("hnswlib add_items loop, float32, 2 threads", n, hnsw_wall, hnsw_cpu, edge_wall))
        rows.append(row("numpy floor: every vector to uint8 codes", n, floor_wall, floor_cpu, edge_wall))
        log(f"\nindex build at N={n:,} (m={args.m}, ef_construct={args.ef_construct}), one process:")
        log(table(rows, ["contender", "wall s", "CPU s", "cores busy", "vectors/s", "wall vs qdrant-edge"]))

        if catalog is None or store is None:
            edge.close()
            return
        snapshot = store.snapshot()
        t, _ = timed(lambda: calibrate_for_text_queries(edge, snapshot))
        log(f"\nqdrant-edge calibrated to ef={edge.ef} in {t:.1f}s")  # type: ignore[attr-defined]
        paths = {f"ivf nprobe {ivf.nprobe}": Rescored(ivf, store, snapshot),  # type: ignore[union-attr]
                 f"qdrant-edge ef {edge.ef}": Rescored(edge, store, snapshot)}  # type: ignore[attr-defined]
        results = []
        for kind, q in queries.items():
            for path in paths.values():
                path.search(q[0], K)
            latencies: dict[str, list[float]] = {name: [] for name in paths}
            found: dict[str, list[list[str]]] = {name: [] for name in paths}
            for vector in q:  # each query on each index in turn: load changes hit both alike
                for name, path in paths.items():
                    seconds, (f, _) = timed(lambda vector=vector, path=path: path.search(vector, K))
                    latencies[name].append(seconds)
                    found[name].append(f)
            results += [[name, kind, 1000 * median(latencies[name]), recall(found[name], truth[kind], ids)]
                        for name in paths]
        log(f"top-{K} through the library's path (150 candidates rescored from the float16 store), "
            f"{args.queries} held-out queries of each kind:")
        log(table(results, ["index", "queries", "median ms", "recall@100"]))

        catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        vectors = sizes_of(next(store.folder.glob("vectors-*")))[1]
        codes = sum(sizes_of(p)[1] for p in store.folder.glob("codes-*"))  # the score codes (picsift.core.codes)
        catalog_bytes = sum(sizes_of(p)[0] for p in catalog.path.parent.glob("catalog.sqlite*"))
        for name, index in (("ivf (its lists file)", sum(sizes_of(p)[1] for p in store.folder.glob("lists-*"))
                             + sizes_of(store.folder / "ivf")[1]),
                            ("qdrant-edge", sizes_of(store.folder / "qdrant-edge")[1])):
            log(f"\nbytes per image with {name}: store {vectors / n:,.0f} + score codes {codes / n:,.0f} + index "
                f"{index / n:,.0f} (allocated) + catalog {catalog_bytes / n:,.0f} = "
                f"{(vectors + codes + index + catalog_bytes) / n:,.0f}")
        edge.close()
        catalog.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000", help="comma-separated vector counts")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100, help="held-out queries of each kind")
    parser.add_argument("--m", type=int, default=M, help="graph degree (both graphs; default: qdrant-edge's)")
    parser.add_argument("--ef-construct", type=int, default=EF_CONSTRUCT,
                        help="build-time beam width (both graphs; default: qdrant-edge's)")
    parser.add_argument("--build-bits", type=float, default=BUILD_BITS,
                        help="qdrant-edge: bits per dimension of the graph's codes (8: int8; 0: uint8 vectors)")
    parser.add_argument("--build-only", action="store_true", help="only the builds: no workspace, recall or bytes")
    parser.add_argument("--no-hnswlib", action="store_true", help="skip the plain hnswlib loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="temporary workspaces go here (default: system temp)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.clusters = "20000", 20, 100
    logging.getLogger("picsift").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    header("picsift index build benchmark", sys.argv)
    for n in [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]:
        run_size(n, args)
        gc.collect()
    log(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB; "
        f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
