"""The neighbour graph above :data:`~picsift.analysis.graph.EXACT_UP_TO` images, without an index: exact matrix
products within nearby partitions (IVF search, as faiss's ``IndexIVFFlat``, turned into a graph build).

Spherical k-means (a few Lloyd iterations on a sample, then every image to its nearest centre) splits the images
into partitions of about :data:`PARTITION` images. Each partition's images are compared with every image of the
partitions whose centres are nearest its own centre, taken in that order until there are ``reach`` candidates: one
float32 matrix product per block of rows (BLAS on every core), each row's ``k`` best by
:func:`~picsift.analysis.neighbours.top_k_rows`. A row costs ``reach x dim`` multiply-adds, so the build is linear
in ``n`` (1M images at reach 8192 are about 8 TFLOP) and needs nothing but the vectors: it does not wait for an hnsw
index to be built, and serves every index backend.

``reach`` is chosen on the data (:func:`choose_reach`): recall@k of :data:`TUNE_SAMPLE` random rows against
their exact neighbours, at reach 4096, 8192, ... until :data:`TARGET_RECALL` (above the graph's rebuild
threshold, so sampling noise does not trigger rebuilds). Data whose neighbours lie within a few partitions
(real CLIP embeddings, or well separated clusters) stops early; diffuse data pays for what it needs.

The partitions are kept with the graph (their centres, each image's partition and the reach: 4 bytes per image
and about 2 MB of centres at 1M), so an update searches only its new images' partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .neighbours import BLOCK_CELLS, GROUP, top_k_rows

#: Images per partition, on average.
PARTITION = 1024
#: The reach (candidates per row) tried first; doubled until the sample's recall reaches TARGET_RECALL.
FIRST_REACH = 4096
#: Recall@k that :func:`choose_reach` asks of its sample.
TARGET_RECALL = 0.97
#: k-means for the partitions: sampled images per partition, and Lloyd iterations.
FIT_PER_PARTITION = 32
LLOYD_ITERATIONS = 8
#: Column group of the top-k selection (:func:`~picsift.analysis.neighbours.top_k_rows`): rows here are a few
#: thousand candidates wide, where 64-wide groups leave half the row to sort; 8 made the search 1.4-1.5x faster
#: (100k synthetic, 10 partitions searched, interleaved runs, same neighbours).
TOP_K_GROUP = 8
#: Rows whose exact neighbours choose the reach.
TUNE_SAMPLE = 256
#: :func:`search` goes a candidate partition at a time for up to this fraction of the images (see there).
FEW_ROWS = 0.05


@dataclass
class Partitions:
    """k-means partitions of a graph's images and how far a search reaches.

    Attributes
    ----------
    centres
        ``(m, dim)`` float32 partition centres.
    of
        ``(n,)`` int32: each image's partition.
    reach
        Candidates compared with each image (whole partitions, nearest centres first, until this many).
    """

    centres: np.ndarray
    of: np.ndarray
    reach: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {"partition_centres": self.centres, "partition_of": self.of,
                "partition_reach": np.array([self.reach], np.int64)}

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], n: int) -> Partitions | None:
        """The partitions kept with a graph of ``n`` images (None when the file has none), checked."""
        names = ("partition_centres", "partition_of", "partition_reach")
        if not any(name in data for name in names):
            return None
        if not all(name in data for name in names):
            raise ValueError(f"neighbour graph partitions: expected all of {list(names)}")
        centres, of, reach = (data[name] for name in names)
        if centres.dtype != np.float32 or centres.ndim != 2 or not 1 <= len(centres) <= max(1, n) \
                or not np.isfinite(centres).all():
            raise ValueError(f"neighbour graph partition_centres: {centres.dtype} {centres.shape}, expected "
                             f"finite float32 (m, dim) with 1 <= m <= {n}")
        if of.dtype != np.int32 or of.shape != (n,) or (n and (of.min() < 0 or of.max() >= len(centres))):
            raise ValueError(f"neighbour graph partition_of: {of.dtype} {of.shape}, expected int32 ({n},) in "
                             f"0..{len(centres) - 1}")
        if reach.shape != (1,) or reach.dtype != np.int64 or not 1 <= int(reach[0]) <= max(1, n):
            raise ValueError(f"neighbour graph partition_reach: {reach!r}, expected one int64 in 1..{n}")
        return cls(centres, of, int(reach[0]))

    def members(self) -> list[np.ndarray]:
        """The rows of each partition, ascending."""
        order = np.argsort(self.of, kind="stable")
        return np.split(order, np.cumsum(np.bincount(self.of, minlength=len(self.centres)))[:-1])

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The partition of each of ``vectors`` (nearest centre)."""
        half_norms = 0.5 * np.einsum("ij,ij->i", self.centres, self.centres)
        out = np.empty(len(vectors), np.int32)
        step = max(1, BLOCK_CELLS // max(1, len(self.centres)))
        for start in range(0, len(vectors), step):
            out[start : start + step] = (vectors[start : start + step] @ self.centres.T - half_norms).argmax(axis=1)
        return out


def partition(vectors: np.ndarray, seed: int = 0) -> Partitions:
    """Spherical k-means partitions of about :data:`PARTITION` images (reach not chosen yet: 0): a few Lloyd
    iterations on a sample of :data:`FIT_PER_PARTITION` images per partition, then every image to its nearest
    centre. (picsift's :func:`~picsift.analysis.clustering.cluster` balances its clusters better, but its
    MiniBatchKMeans took 10 s at 10k x 78 clusters on this machine; partitions only need to be compact.)"""
    n = len(vectors)
    m = max(1, min(n, round(n / PARTITION)))
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, min(n, FIT_PER_PARTITION * m), replace=False))]
    centres = sample[rng.choice(len(sample), m, replace=False)].copy()
    for _ in range(LLOYD_ITERATIONS):
        labels = Partitions(centres, np.zeros(0, np.int32), 0).assign(sample)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, sample) if len(sample) < 4096 else _add_rows(sums, labels, sample)
        empty = ~sums.any(axis=1)
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    parts = Partitions(centres.astype(np.float32), np.zeros(0, np.int32), 0)
    parts.of = parts.assign(vectors)
    return parts


def _add_rows(sums: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    sums[present] = np.add.reduceat(rows[order], starts, axis=0)


def search(vectors: np.ndarray, rows: np.ndarray, parts: Partitions, k: int, reach: int | None = None,
           progress: bool = False, members: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest others of the images at ``rows`` among the candidates of their partitions: int32
    positions and float32 similarities, best first (``-1`` / ``-inf`` where there are fewer candidates).

    Many rows (a build) are searched a query partition at a time: its rows against all its candidates, one wide
    product. A few rows spread over many partitions (a refresh, :data:`FEW_ROWS`) are searched a candidate
    partition at a time instead (:func:`_search_few`): the same candidates and result, but each partition's
    vectors are gathered once rather than once for every query partition that reaches it."""
    reach = parts.reach if reach is None else reach
    rows = np.asarray(rows, np.int64)
    members = parts.members() if members is None else members
    sizes = np.array([len(m) for m in members])
    nearest_centres = np.argsort(-(parts.centres @ parts.centres.T), axis=1, kind="stable")

    def reached(p: int) -> np.ndarray:  # p itself, then its nearest partitions until ``reach`` candidates
        order = nearest_centres[p][nearest_centres[p] != p]
        taken = np.searchsorted(np.cumsum(sizes[order]), max(0, reach - sizes[p])) + 1
        return np.concatenate([[p], order[:taken]])

    positions = np.full((len(rows), k), -1, np.int32)
    similarities = np.full((len(rows), k), -np.inf, np.float32)
    by_partition = np.argsort(parts.of[rows], kind="stable")
    groups = np.split(by_partition, np.cumsum(np.bincount(parts.of[rows], minlength=len(members)))[:-1])
    if len(rows) <= FEW_ROWS * len(vectors):
        _search_few(vectors, rows, groups, reached, members, k, positions, similarities, progress)
        return positions, similarities
    with tqdm(total=len(rows), desc="Neighbour graph (partitions)", unit="img", disable=not progress) as bar:
        for p, group in enumerate(groups):
            if not len(group):
                continue
            candidates = np.concatenate([members[q] for q in reached(p)])
            _search_block(vectors, rows[group], candidates, k, positions, similarities, group)
            bar.update(len(group))
    return positions, similarities


def _search_few(vectors: np.ndarray, rows: np.ndarray, groups: list[np.ndarray],
                reached: Callable[[int], np.ndarray], members: list[np.ndarray], k: int, positions: np.ndarray,
                similarities: np.ndarray, progress: bool) -> None:
    """:func:`search` a candidate partition at a time: each partition's ``k`` best for every row that reaches it,
    then each row's ``k`` best of those (exact over the same candidates, as the top ``k`` of a union is among
    the top ``k`` of its parts)."""
    query, partition = [], []
    for p, group in enumerate(groups):
        if len(group):
            targets = reached(p)
            query.append(np.repeat(group, len(targets)))
            partition.append(np.tile(targets, len(group)))
    if not query:
        return
    pair_query, pair_partition = np.concatenate(query), np.concatenate(partition)
    order = np.argsort(pair_partition, kind="stable")
    pair_query, pair_partition = pair_query[order], pair_partition[order]
    cuts = np.flatnonzero(np.diff(pair_partition)) + 1
    found_query, found_position, found_value = [], [], []
    for block in tqdm(np.split(np.arange(len(pair_query)), cuts), desc="Neighbour graph (partitions)",
                      unit="partition", disable=not progress):
        candidates, queries = members[pair_partition[block[0]]], pair_query[block]
        if not len(candidates):
            continue
        scores = vectors[rows[queries]] @ vectors[candidates].T
        own = np.minimum(np.searchsorted(candidates, rows[queries]), len(candidates) - 1)  # members ascend
        is_own = candidates[own] == rows[queries]
        scores[np.flatnonzero(is_own), own[is_own]] = -np.inf
        kept = min(k, len(candidates))
        best = np.argpartition(-scores, kept - 1, axis=1)[:, :kept] if kept < len(candidates) else \
            np.broadcast_to(np.arange(kept), scores.shape)
        found_query.append(np.repeat(queries, kept))
        found_position.append(candidates[best].ravel())
        found_value.append(np.take_along_axis(scores, best, axis=1).ravel())
    query_of, position, value = (np.concatenate(a) for a in (found_query, found_position, found_value))
    real = np.isfinite(value)
    query_of, position, value = query_of[real], position[real], value[real]
    order = np.lexsort((position, -value, query_of))  # by row, best first, ties by position
    query_of, position, value = query_of[order], position[order], value[order]
    starts = np.searchsorted(query_of, query_of, side="left")
    rank = np.arange(len(query_of)) - starts
    keep = rank < k
    positions[query_of[keep], rank[keep]] = position[keep]
    similarities[query_of[keep], rank[keep]] = value[keep]


def _search_block(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int, positions: np.ndarray,
                  similarities: np.ndarray, out_rows: np.ndarray) -> None:
    """Exact top ``k`` of ``queries`` among ``candidates`` (both rows of ``vectors``; a query is never its own
    neighbour), written at ``out_rows`` of ``positions`` / ``similarities``."""
    width = -(-len(candidates) // GROUP) * GROUP
    padded = np.zeros((width, vectors.shape[1]), np.float32)
    padded[: len(candidates)] = vectors[candidates]
    kept = min(k, len(candidates) - 1)
    if kept < 1:
        return
    step = max(16, BLOCK_CELLS // width)
    lookup = np.argsort(candidates, kind="stable")
    for start in range(0, len(queries), step):
        block = queries[start : start + step]
        scores = vectors[block] @ padded.T
        scores[:, len(candidates) :] = -np.inf
        own = lookup[np.minimum(np.searchsorted(candidates, block, sorter=lookup), len(candidates) - 1)]
        is_own = candidates[own] == block
        scores[np.flatnonzero(is_own), own[is_own]] = -np.inf
        columns, values = top_k_rows(scores, kept, TOP_K_GROUP)
        where = out_rows[start : start + len(block)]
        positions[where, :kept] = candidates[columns]
        similarities[where, :kept] = values


def exact_few(vectors: np.ndarray, rows: np.ndarray, k: int, step: int = 65_536) -> np.ndarray:
    """Exact ``k`` nearest others of a few ``rows`` among all ``vectors``, without copying them: positions."""
    queries = vectors[rows]
    best_p = np.full((len(rows), k), -1, np.int64)
    best_s = np.full((len(rows), k), -np.inf, np.float32)
    for start in range(0, len(vectors), step):
        scores = queries @ vectors[start : start + step].T
        own = (rows >= start) & (rows < start + scores.shape[1])
        scores[np.flatnonzero(own), rows[own] - start] = -np.inf
        width = scores.shape[1]
        if width % GROUP == 0 and width >= k * GROUP:  # only the chunk's k best meet the running best
            columns, values = top_k_rows(scores, k)
        else:
            columns = np.argpartition(-scores, k - 1, axis=1)[:, :k] if width > k else \
                np.broadcast_to(np.arange(width), scores.shape)
            values = np.take_along_axis(scores, columns, axis=1)
        p = np.concatenate([best_p, columns + start], axis=1)
        s = np.concatenate([best_s, values], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_p, best_s = np.take_along_axis(p, top, axis=1), np.take_along_axis(s, top, axis=1)
    best_p[~np.isfinite(best_s)] = -1
    return best_p


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (``truth`` rows, -1 = none) that ``found`` holds."""
    hits = sum(len(np.intersect1d(t[t >= 0], f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return float(hits / max(1, int((truth >= 0).sum())))


def choose_reach(vectors: np.ndarray, parts: Partitions, k: int, seed: int = 0,
                 members: list[np.ndarray] | None = None) -> tuple[int, float]:
    """The smallest reach (:data:`FIRST_REACH`, doubled) whose recall@k on :data:`TUNE_SAMPLE` random rows
    reaches :data:`TARGET_RECALL` (every image, at most), and that recall."""
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed + 1).choice(n, min(TUNE_SAMPLE, n), replace=False))
    truth = exact_few(vectors, rows, min(k, n - 1))
    reach = min(FIRST_REACH, n)
    while True:
        found, _ = search(vectors, rows, parts, k, reach, members=members)
        recall = recall_at(found, truth)
        if recall >= TARGET_RECALL or reach >= n:
            return reach, recall
        reach = min(2 * reach, n)


def build_partitioned(vectors: np.ndarray, k: int, progress: bool = False, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, Partitions]:
    """Every image's ``k`` nearest others through partitions: positions, similarities, the partitions."""
    parts = partition(vectors, seed)
    members = parts.members()
    parts.reach, _ = choose_reach(vectors, parts, k, seed, members)
    positions, similarities = search(vectors, np.arange(len(vectors)), parts, k, progress=progress, members=members)
    return positions, similarities, parts
