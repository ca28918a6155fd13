"""Graph settings of the default index (qdrant-edge, uint8) swept at N: build CPU per phase and recall@100 at several
query-time ``ef``, without a workspace.

For each setting ``m,ef_construct,build_bits`` (build_bits: 8 int8 codes, the default; 4 TurboQuant; 1, 1.5, 2 binary
codes; 0 the uint8 vectors): ``add()`` of N clustered 512-d unit vectors (``bench/query.py``'s
data, seeded) in 10k chunks, then ``save()`` (the engine's ``optimize()`` builds the HNSW graph on its own
threads); CPU seconds of the whole process per phase. Then held-out image-like and text-like queries
(``bench/query.py``), 60 of each, ask for the 150 candidates the library rescores: recall@100 = the share of the
exact top 100 among them (what exact rescoring keeps), and the median ms of the index search, at each ef.
A plateau of recall as ef grows means parts of the graph are unreachable, not a beam too narrow.

    nice -n 10 python bench/build_sweep.py --n 100000 --settings 16,128,2/16,64,2 --efs 150,300
    nice -n 10 python bench/build_sweep.py --n 1000000 --settings 16,64,2 --efs 150,200,300,400,600
    nice -n 10 python bench/build_sweep.py --n 1000000 --settings 16,128,8 --efs 150,200,300,600
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, median, table
from query import ground_truth, image_queries, make_data, make_ids, text_like_queries

from picsift.index.qdrant_edge import LOST, QdrantEdgeIndex
from picsift.index.sync import CHUNK, wider_k

K = 100


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--settings", default="16,128,8", help="m,ef_construct,build_bits; several split by /")
    parser.add_argument("--efs", default="150,300", help="query-time ef values")
    parser.add_argument("--queries", type=int, default=60, help="held-out queries of each kind")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    header(f"qdrant-edge graph settings at N={args.n:,}", sys.argv)
    data, centres, spread = make_data(args.n, 1000, 0)
    ids = make_ids(args.n, 0)
    queries = {"image-like": image_queries(centres, spread, args.queries, 1),
               "text-like": text_like_queries(centres, args.queries, 2)}
    truth = {kind: [set(row.tolist()) for row in ground_truth(data, q, K)] for kind, q in queries.items()}
    position = {image_id: i for i, image_id in enumerate(ids)}
    builds, recalls = [], []
    for setting in args.settings.split("/"):
        m, ef_construct, bits = (float(x) for x in setting.split(","))
        with tempfile.TemporaryDirectory(prefix="picsift-bench-sweep-", dir=args.workdir) as tmp:
            index = QdrantEdgeIndex(data.shape[1], Path(tmp) / "shard", datatype="uint8", m=int(m),
                                    ef_construct=int(ef_construct), build_bits=bits)
            wall, cpu = time.perf_counter(), cpu_seconds()
            for start in range(0, args.n, CHUNK):
                index.add(ids[start : start + CHUNK], data[start : start + CHUNK])
            add_wall, add_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            wall, cpu = time.perf_counter(), cpu_seconds()
            index.save()
            graph_wall, graph_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            name = f"m={int(m)}, ef_construct={int(ef_construct)}, {bits:g}-bit"
            builds.append([name, add_cpu, graph_cpu, add_cpu + graph_cpu, add_wall + graph_wall])
            print(f"{name}: add {add_cpu:.1f} CPU s, graph {graph_cpu:.1f} CPU s", flush=True)
            for ef in (int(x) for x in args.efs.split(",")):
                index.ef = ef
                cells: list[object] = [name, ef]
                for kind, q in queries.items():
                    found, seconds = [], []
                    for vector, exact in zip(q, truth[kind], strict=True):
                        start = time.perf_counter()
                        hits = index.search(vector, wider_k(K))[0]
                        seconds.append(time.perf_counter() - start)
                        found.append(len({position[h] for h in hits} & exact) / K)
                    cells += [float(np.mean(found)), sum(f < LOST for f in found), 1000 * median(seconds)]
                recalls.append(cells)
            index.close()
    print(f"\nbuild at N={args.n:,}:")
    print(table(builds, ["setting", "add() CPU s", "graph CPU s", "total CPU s", "wall s"]))
    print(f"\nrecall@100 among the {wider_k(K)} candidates, {args.queries} held-out queries of each kind:")
    print(f"(lost: queries with recall < {LOST}, the beam never reached their images)")
    print(table(recalls, ["setting", "ef", "image-like recall", "lost", "image-like ms", "text-like recall", "lost",
                          "text-like ms"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
