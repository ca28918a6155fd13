"""picsift's own index, ``ivf`` (issue 25, items 2, 3 and 5): inverted lists over the store's one-byte score codes,
its candidates rescored exactly from the float16 store, against faiss's IVF over one-byte codes
(``IndexIVFScalarQuantizer``, 8 bits per dimension) and the previous default index (qdrant-edge: uint8 vectors, HNSW
built from int8 codes) in the same run.

Why faiss is the reference and not picsift's index: it is the field's well-kept library for exactly this (inverted
lists of scalar-quantised codes, k-means trained, SIMD kernels over contiguous lists, OpenMP build), and the rival a
user would reach for. picsift builds its own lists instead because every store of 50,000 images already keeps
one-byte codes of every image, in store order, for the histogram under every search: lists over those add 2 bytes
per image, where faiss keeps a second copy of the codes in list order and an 8-byte id (395 B per image at 384-d),
and faiss would be a dependency of the base install. What that costs is measured here: faiss's contiguous lists
scan the same nprobe 1.5-2.5x faster than picsift's lists, whose rows lie apart in the store-ordered codes.
An IVF scans every code of the ``nprobe`` lists whose centroids score highest with the query, so a query far from
every image (a text prompt) costs the same as one among them: no graph walk to get lost on.

Data (``--data``): *synthetic*, N clustered 512-d unit vectors (bench/query.py's) with held-out *image-like* and
*text-like* queries (bench/query.py); or *real*, N vectors made from the offline model's real image embeddings
(bench/score_codes.py's: each a real embedding plus 0.3 of another plus noise), queried by real images' embeddings
and by the offline model's embeddings of real text prompts (a text prompt sits far from every image). Stored as
float16, as the library stores them; recall@100 against the exact top 100 of the float16 vectors (as the library
scores them), after the candidates are rescored exactly, as the library does.

Contenders: faiss's IVF-SQ8; picsift's ``ivf`` (:func:`picsift_ivf`: the inverted lists over the store's own score
codes, so the index adds 2 bytes per image; its calibrated nprobe and the ``--nprobe`` values); with ``--qdrant-edge``
the default index until 2026-12-07.

Printed: build CPU s and wall (train + add), bytes per image of the index (serialised), and per ``nprobe``: median
ms per single query (the index's search of ``--candidates``; + the exact rescoring and top 100) and recall@100 per
query kind (mean, min). With ``--qdrant-edge``, qdrant-edge (uint8) in the same run (build, bytes, ef sweep;
``calibrated``: the ef the library's own calibration chooses for this store, ``calibrate_for_text_queries``).

    nice -n 5 .venv/bin/python bench/ivf.py [--n 1000000] [--queries 60] [--nlist 0] [--nprobe 16,32,64,128]
        [--candidates 150] [--qdrant-edge] [--ef calibrated,300,1200] [--data synthetic|real]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cpu_timed, header, median, table
from query import ground_truth, image_queries, make_data, make_ids, text_like_queries

from picsift.core.code_lists import lists_for
from picsift.core.store import StoreSnapshot, _dots, _float32_rows
from picsift.index.sync import calibrate_for_text_queries

#: Scores this close to the exact 100th count as ties (recall with ties).
TIE = 1e-3


def rescored_top(store: np.ndarray, query: np.ndarray, candidates: np.ndarray,
                 k: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` of ``candidates`` (positions in ``store``) and their scores, as the library rescores an
    index's hits."""
    candidates = np.unique(candidates[candidates >= 0])
    scores = _dots(_float32_rows(store, candidates), query[None, :])[:, 0]
    best = np.argsort(-scores, kind="stable")[:k]
    return candidates[best], scores[best]


def picsift_ivf(store: np.ndarray, folder: Path) -> tuple[object, object, dict[str, float]]:
    """picsift's ``ivf`` index over a snapshot of ``store`` as the library opens one: the score codes (which every
    store of 50,000 images keeps for its histograms), then the lists file in ``folder`` (k-means on a sample, every
    row's list: :class:`picsift.core.code_lists.ListsFile`), then ``nprobe`` tuned as the library tunes it
    (:func:`calibrate_for_text_queries`). Returns the index, its snapshot and the CPU and wall seconds of each step."""
    from score_codes import in_memory_codes

    from picsift.core.code_lists import ListsFile
    from picsift.index.ivf import IvfIndex
    from picsift.workspace_files import WorkspaceFiles

    n, dim = store.shape
    every = np.arange(n)
    codes_wall, codes_cpu, codes = cpu_timed(lambda: in_memory_codes(store))
    lists_file = ListsFile(WorkspaceFiles(folder), folder, "vectors-0.f16", dim)
    lists_wall, lists_cpu, lists = cpu_timed(lambda: lists_file.open(n, every, lambda rows: _float32_rows(store, rows)))
    snapshot = StoreSnapshot(np.char.mod("%032x", every).astype("<U32"), every, store, 1, codes, lambda: lists)
    index = IvfIndex(dim)
    index.attach(snapshot)
    tune_wall, tune_cpu, _ = cpu_timed(lambda: calibrate_for_text_queries(index, snapshot))
    return index, lists, {"codes cpu": codes_cpu, "codes wall": codes_wall, "lists cpu": lists_cpu,
                          "lists wall": lists_wall, "tune cpu": tune_cpu, "tune wall": tune_wall,
                          "file bytes": float(lists_file.path.stat().st_size)}


def synthetic_data(n: int, queries: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    data, centres, spread = make_data(n, 1000, seed=0)
    return data.astype(np.float16), {"image-like": image_queries(centres, spread, queries, 11),
                                     "text-like": text_like_queries(centres, queries, 12)}


#: Real prompts for the real data: the things in its images (stamps, emoji, clip art, Fashion-MNIST's clothes).
PROMPTS = ["a bird", "a red bicycle", "a dog on a beach", "a musical instrument", "a house", "a flower", "a shoe",
           "a shirt", "a smiling face", "a car", "a cat", "a fish", "a tree", "a boat", "an airplane", "a train",
           "a pizza", "an apple", "a cake", "a cup of coffee", "a rocket", "the moon", "a star", "a planet",
           "a guitar", "a piano", "a drum", "a book", "a clock", "a lamp", "a chair", "a bed", "a sneaker",
           "a sandal", "an ankle boot", "a handbag", "a dress", "a coat", "a pullover", "trousers", "a t-shirt",
           "a crying face", "an angry face", "a heart", "a flag", "a hand waving", "a snowman", "a sun", "rain",
           "a mountain", "a castle", "a bridge", "a horse", "a cow", "a pig", "a frog", "a snake", "a butterfly",
           "a spider", "a robot"]


def real_data(n: int, queries: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from score_codes import made_from_real, real_embeddings

    from picsift.embedding.openclip import Embedder

    real = real_embeddings()
    rng = np.random.default_rng(0)
    store = made_from_real(real, n, rng)
    images = real[rng.choice(len(real), queries, replace=False)]
    prompts = np.asarray(Embedder("picsift-offline", device="cpu").embed_text((PROMPTS * 2)[:queries]), np.float32)
    return store, {"real images": images, "real prompts": prompts}


def build_ivf(store: np.ndarray, nlist: int, iterations: int, per_list: int,
              block: int = 65_536):  # type: ignore[no-untyped-def]
    """k-means on ``per_list * nlist`` sampled vectors (``iterations`` rounds), then every vector added."""
    import faiss

    dim = store.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = iterations
    index.cp.max_points_per_centroid = per_list
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(store), min(len(store), per_list * nlist), replace=False))
    train_wall, train_cpu, _ = cpu_timed(lambda: index.train(_float32_rows(store, sample)))

    def add() -> None:
        for start in range(0, len(store), block):
            index.add(_float32_rows(store, np.arange(start, min(len(store), start + block))))

    add_wall, add_cpu, _ = cpu_timed(add)
    return index, (train_cpu, train_wall, add_cpu, add_wall)


def searched(search, queries: np.ndarray, store: np.ndarray, truth: np.ndarray,
             edges: np.ndarray):  # type: ignore[no-untyped-def]
    """Median ms of the index alone and with the rescoring; each query's recall@100, and its recall counting a hit
    whose exact score is within :data:`TIE` of the exact 100th as found (ann-benchmarks' epsilon recall: where
    hundreds of images score alike, which 100 of them come back is a tie, not a miss)."""
    index_ms, whole_ms, recalls, near = [], [], [], []
    for q, t, edge in zip(queries, truth, edges, strict=True):
        started = time.perf_counter()
        found = search(q)
        middle = time.perf_counter()
        top, scores = rescored_top(store, q, found)
        ended = time.perf_counter()
        index_ms.append(1000 * (middle - started))
        whole_ms.append(1000 * (ended - started))
        recalls.append(len(set(top.tolist()) & set(t.tolist())) / len(t))
        near.append(min(1.0, float((scores >= edge - TIE).sum()) / len(t)))
    return median(index_ms), median(whole_ms), recalls, near


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=60, help="held-out queries of each kind")
    parser.add_argument("--nlist", type=int, default=0,
                        help="faiss's inverted lists (default: as many as picsift's, code_lists.lists_for)")
    parser.add_argument("--iterations", type=int, default=10, help="k-means rounds")
    parser.add_argument("--per-list", type=int, default=32, help="k-means sample: this many vectors per list")
    parser.add_argument("--nprobe", default="16,32,64,128")
    parser.add_argument("--candidates", type=int, default=150, help="hits rescored exactly (the library's 150)")
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--qdrant-edge", action="store_true", help="qdrant-edge (uint8) too, in the same run")
    parser.add_argument("--ef", default="calibrated,300,1200",
                        help="qdrant-edge's ef values; 'calibrated': the one the library's calibration chooses")
    args = parser.parse_args(argv)
    header("picsift's ivf vs faiss IVF-SQ8 and qdrant-edge", sys.argv)
    import faiss

    n = args.n
    store, kinds = real_data(n, args.queries) if args.data == "real" else synthetic_data(n, args.queries)
    exact = np.concatenate([_float32_rows(store, np.arange(s, min(n, s + 100_000))) for s in range(0, n, 100_000)])
    truths = {kind: ground_truth(exact, queries, 100) for kind, queries in kinds.items()}
    edges = {kind: np.array([float(exact[t[-1]] @ q) for q, t in zip(queries, truths[kind], strict=True)])
             for kind, queries in kinds.items()}  # each query's exact 100th score
    del exact
    nlist = args.nlist or lists_for(n)
    index, (train_cpu, train_wall, add_cpu, add_wall) = build_ivf(store, nlist, args.iterations, args.per_list)
    size, dim = len(faiss.serialize_index(index)), store.shape[1]
    print(f"\nfaiss {faiss.__version__} IVF{nlist},SQ8 (inner product), {faiss.omp_get_max_threads()} threads, k-means "
          f"{args.iterations} rounds on {min(n, args.per_list * nlist):,} vectors: train "
          f"{train_cpu:.1f} CPU s ({train_wall:.1f} s wall), add {add_cpu:.1f} CPU s ({add_wall:.1f} s wall); "
          f"index {size / n:.0f} B per image ({dim}-d: codes {dim} + id 8 + centroids {4 * dim * nlist / n:.1f})")
    rows = []
    for nprobe in [int(p) for p in args.nprobe.split(",") if p]:
        index.nprobe = nprobe
        for kind, queries in kinds.items():
            def search(q: np.ndarray) -> np.ndarray:
                return index.search(q[None, :], args.candidates)[1][0]

            index_ms, whole_ms, recalls, near = searched(search, queries, store, truths[kind], edges[kind])
            rows.append([f"IVF-SQ8 nprobe {nprobe} ({100 * nprobe / nlist:.1f}% of the codes)", kind,
                         f"{index_ms:.2f}", f"{whole_ms:.2f}", f"{np.mean(recalls):.3f}", f"{min(recalls):.2f}",
                         f"{np.mean(near):.3f}", f"{min(near):.2f}"])
    with tempfile.TemporaryDirectory(prefix="picsift-bench-ivf-") as tmp:
        ours, lists, spent = picsift_ivf(store, Path(tmp))
        tuned = ours.nprobe  # type: ignore[attr-defined]
        print(f"picsift ivf ({lists.count} lists): score codes {spent['codes cpu']:.1f} CPU s "  # type: ignore[attr-defined]
              f"({spent['codes wall']:.1f} s wall; kept by every store of 50,000 images), lists (k-means + every "
              f"image's list) {spent['lists cpu']:.1f} CPU s ({spent['lists wall']:.1f} s wall), nprobe tuned "
              f"{spent['tune cpu']:.1f} CPU s ({spent['tune wall']:.1f} s wall): nprobe {tuned}; adds "
              f"{spent['file bytes'] / n:.1f} B per image (its list, 2 B, and the centroids) to the score codes "
              f"({dim} B)")
        for nprobe in [tuned] + [int(p) for p in args.nprobe.split(",") if p]:
            for kind, queries in kinds.items():
                def search(q: np.ndarray, nprobe: int = nprobe) -> np.ndarray:
                    found = ours.search(q, args.candidates, nprobe=nprobe)[0]  # type: ignore[attr-defined]
                    return np.array([int(i, 16) for i in found], np.int64)

                index_ms, whole_ms, recalls, near = searched(search, queries, store, truths[kind], edges[kind])
                label = f"picsift ivf nprobe {nprobe}" + (" (calibrated)" if nprobe == tuned else "")
                rows.append([label, kind, f"{index_ms:.2f}", f"{whole_ms:.2f}", f"{np.mean(recalls):.3f}",
                             f"{min(recalls):.2f}", f"{np.mean(near):.3f}", f"{min(near):.2f}"])
    if args.qdrant_edge:
        rows += qdrant_edge_rows(store, kinds, truths, edges, args)
    print(table(rows, ["index", "queries", "index ms", "+ exact rescoring ms", "recall@100", "min",
                       f"with ties ({TIE:g})", "min"]))


def qdrant_edge_rows(store: np.ndarray, kinds: dict[str, np.ndarray], truths: dict[str, np.ndarray],
                     edges: dict[str, np.ndarray], args: argparse.Namespace) -> list[list[str]]:
    from picsift.index import open_index

    n = len(store)
    ids = make_ids(n, 0)
    position = {image_id: i for i, image_id in enumerate(ids)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="picsift-bench-ivf-") as tmp:
        def fill() -> object:  # as the library fills it: chunks of 10,000, then saved (the graph is built)
            index = open_index("qdrant-edge", store.shape[1], Path(tmp) / "qe", datatype="uint8")
            for start in range(0, n, 10_000):
                index.add(ids[start : start + 10_000], _float32_rows(store, np.arange(start, min(n, start + 10_000))))
            index.save()
            return index

        add_wall, add_cpu, index = cpu_timed(fill)
        size = sum(p.stat().st_size for p in (Path(tmp) / "qe").rglob("*") if p.is_file())
        print(f"qdrant-edge (uint8): add + graph (save) {add_cpu:.1f} CPU s ({add_wall:.1f} s wall); "
              f"{size / n:.0f} B per image on disk")
        for ef in [e for e in args.ef.split(",") if e]:
            if ef == "calibrated":  # what the library chooses for this store (its text-like sample queries)
                snapshot = StoreSnapshot(np.array(ids, "<U32"), np.arange(n), store, version=1)
                calibrate_for_text_queries(index, snapshot)
                ef = f"{index.ef} (calibrated)"  # type: ignore[attr-defined]
            else:
                index.ef = int(ef)  # type: ignore[attr-defined]
            for kind, queries in kinds.items():
                def search(q: np.ndarray) -> np.ndarray:
                    found = index.search(q, args.candidates)[0]  # type: ignore[attr-defined]
                    return np.array([position[i] for i in found], np.int64)

                index_ms, whole_ms, recalls, near = searched(search, queries, store, truths[kind], edges[kind])
                rows.append([f"qdrant-edge ef {ef}", kind, f"{index_ms:.2f}", f"{whole_ms:.2f}",
                             f"{np.mean(recalls):.3f}", f"{min(recalls):.2f}", f"{np.mean(near):.3f}",
                             f"{min(near):.2f}"])
    return rows


if __name__ == "__main__":
    main()
