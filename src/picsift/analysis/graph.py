"""The neighbour graph: the ``k`` nearest neighbours of every embedded image, the one place neighbours come from.

Near duplicates, outliers, typical sampling, uniqueness, the label checks and UMAP maps all read it
(:class:`~picsift.analysis.graph_service.Neighbours` keeps it in the workspace and fresh). It is plain arrays:
the ids of the images (store order), and for each image the int32 positions of its ``k`` nearest others and
their float16 cosine distances, best first (``-1`` / ``inf`` where there are fewer than ``k`` others): 192 bytes
per image at k = 32, 192 MB at 1M.

**Exact or through partitions.** Up to :data:`EXACT_UP_TO` images the graph is exact (blocked matrix products,
about 30 s at 50k x 512 on 2 cores, growing with ``n^2``); above it, each image is compared exactly with the images
of the k-means partitions nearest its own (:mod:`~picsift.analysis.graph_partitions`: linear in ``n``, recall@k
chosen on a sample to reach 0.97, no index needed). ``build(..., index=...)`` still answers from a vector index's
own graph (hnsw) for callers that pass one; the library no longer does (see bench/README.md, issue 21).

**Kept fresh incrementally.** After an update, :func:`refresh` maps the old graph onto the new ids: removed
images leave every list (the rows that lost a neighbour are searched again), new images get their neighbours and
enter the lists of the images they are near. An exact graph stays exact (new images are scored against every
image, both ways). A graph through partitions searches its new images (and the rows that lost a neighbour) in
their partitions, and can drift (an image a new one should enter is not always in the new one's list): each
refresh measures recall@k on :data:`DRIFT_SAMPLE` random rows against exact neighbours, and
rebuilds from scratch below :data:`MIN_RECALL`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .clustering import unit_distance
from .graph_partitions import Partitions, build_partitioned, exact_few, recall_at, search
from .neighbours import BLOCK_CELLS, GROUP, index_neighbours, nearest_neighbours, top_k_rows

log = logging.getLogger(__name__)

#: Neighbours kept per image.
DEFAULT_K = 32
#: Up to this many images the graph is exact; above it the hnsw index answers (when the library uses hnsw).
EXACT_UP_TO = 50_000
#: Rows checked against exact neighbours after each incremental refresh of a graph from the index.
DRIFT_SAMPLE = 256
#: A graph from the index whose measured recall@k falls below this is rebuilt from scratch.
MIN_RECALL = 0.95
#: How distances are kept (see :class:`NeighbourGraph`), and the most their rounding moves a similarity (at
#: distance 2, float16's relative error 2^-11; less nearer).
DISTANCE_DTYPE = np.float16
SIMILARITY_TOLERANCE = 2.0**-10
#: When more than this fraction of the images changed, rebuilding costs no more than patching.
REBUILD_FRACTION = 0.5


class NeighbourGraph:
    """Each image's ``k`` nearest others.

    Attributes
    ----------
    ids
        ``(n,)`` image ids, in store order.
    positions
        ``(n, k)`` int32 positions into ``ids``, nearest first; ``-1`` where there is no neighbour.
    distances
        ``(n, k)`` float16 cosine distances (``1 - similarity``), matching ``positions``; ``inf`` where there is
        none. float16 keeps the graph at 192 B per image at k = 32 (192 MB at 1M). Kept as distances, not
        similarities, because float16's error is relative: a near neighbour's small distance keeps its precision
        (0.01 +- 5e-6) where the similarity would round to the nearest 0.0005.
    exact
        True when every row is exact (not from an approximate index).
    recall
        recall@k of the rows against exact neighbours, measured on a sample at the last refresh (1 when exact).
    partitions
        The partitions a graph above ``EXACT_UP_TO`` images was built through (None when exact or from an index).
    """

    def __init__(self, ids: np.ndarray, positions: np.ndarray, similarities: np.ndarray | None,
                 exact: bool = True, recall: float = 1.0, *, distances: np.ndarray | None = None,
                 partitions: Partitions | None = None):
        self.ids, self.exact, self.recall, self.partitions = ids, exact, recall, partitions
        self.positions = np.asarray(positions, np.int32)
        if distances is None:
            assert similarities is not None
            distances = 1.0 - np.asarray(similarities, np.float32)
        self.distances = np.asarray(distances, DISTANCE_DTYPE)

    def __repr__(self) -> str:
        return f"NeighbourGraph(n={len(self)}, k={self.k}, exact={self.exact}, recall={self.recall:.3f})"

    @property
    def similarities(self) -> np.ndarray:
        """``(n, k)`` float32 cosine similarities (``-inf`` where no neighbour), made from :attr:`distances` on
        each access: slice with :meth:`nearest` when only the first columns are needed."""
        return 1.0 - self.distances.astype(np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def k(self) -> int:
        return int(self.positions.shape[1])

    def rows_of(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each id (``-1`` for an id the graph does not hold)."""
        return np.asarray(pd.Index(self.ids).get_indexer(np.asarray(ids, dtype=object)), np.int64)

    def nearest(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``k`` columns (all by default): positions and similarities."""
        k = self.k if k is None else k
        if not 1 <= k <= self.k:
            raise ValueError(f"k={k!r}; valid: 1 to {self.k} (the graph keeps {self.k} neighbours per image)")
        return self.positions[:, :k], 1.0 - self.distances[:, :k].astype(np.float32)

    def pairs_at_least(self, threshold: float, vectors_of: Callable[[np.ndarray], np.ndarray],
                       chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """The graph's edges ``(a, b)`` (positions) whose cosine similarity is at least ``threshold``, checked
        against the vectors (``vectors_of(positions)`` gives unit vectors): the stored float16 similarities only
        pick the candidates (within :data:`SIMILARITY_TOLERANCE`), so a pair's rounding never decides."""
        a, column = np.nonzero(self.distances <= np.float16(1.0 - threshold + SIMILARITY_TOLERANCE))
        b = self.positions[a, column].astype(np.int64)
        keep = np.zeros(len(a), bool)
        for start in range(0, len(a), chunk):
            part = slice(start, start + chunk)
            exact = np.einsum("ij,ij->i", vectors_of(a[part]), vectors_of(b[part]))
            keep[part] = exact >= threshold
        return a[keep].astype(np.int64), b[keep]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids.astype("U32"), "positions": self.positions, "distances": self.distances,
                "info": np.array([float(self.exact), self.recall], np.float64),
                **(self.partitions.arrays() if self.partitions is not None else {})}

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> NeighbourGraph:
        """A graph from :meth:`arrays` (or an older file with float32 ``similarities``), checked for shape, dtype
        and range (``ValueError`` naming what is wrong)."""
        old = "distances" not in data and "similarities" in data  # written before 2026-12-06
        key = "similarities" if old else "distances"
        missing = {"ids", "positions", key, "info"} - set(data)
        if missing:
            raise ValueError(f"neighbour graph lacks {sorted(missing)}")
        ids, positions, values, info = (data[name] for name in ("ids", "positions", key, "info"))
        n = len(ids)
        if ids.ndim != 1 or ids.dtype.kind != "U" or not pd.Index(ids).is_unique:
            raise ValueError(f"neighbour graph ids: {ids.dtype} {ids.shape}, expected unique strings (n,)")
        if (positions.dtype != np.int32 or positions.ndim != 2 or len(positions) != n
                or not 1 <= positions.shape[1] <= 1024):
            raise ValueError(f"neighbour graph positions: {positions.dtype} {positions.shape}, expected int32 ({n}, k)")
        dtype = np.float32 if old else DISTANCE_DTYPE
        if values.dtype != dtype or values.shape != positions.shape:
            raise ValueError(f"neighbour graph {key}: {values.dtype} {values.shape}, expected {np.dtype(dtype)} "
                             f"{positions.shape}")
        if info.shape != (2,) or not np.isfinite(info).all() or not 0 <= info[1] <= 1:
            raise ValueError(f"neighbour graph info: {info!r}, expected [exact, recall in 0..1]")
        linked = positions >= 0
        if n and (positions.min() < -1 or positions.max() >= n or (positions == np.arange(n)[:, None]).any()):
            raise ValueError(f"neighbour graph positions out of range: expected -1 or 0..{n - 1}, never the row itself")
        distances = 1.0 - values if old else values
        within = (distances >= -0.01) & (distances <= 2.01)
        if not within[linked].all() or not np.all(distances[~linked] == np.inf):
            raise ValueError(f"neighbour graph {key} out of range: expected similarities -1..1 (distances 0..2), "
                             "and none where there is no neighbour")
        return cls(ids.astype(object), positions, None, bool(info[0]), float(info[1]), distances=distances,
                   partitions=Partitions.from_arrays(data, n))


def graph_typicality(similarities: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """TypiClust's typicality from the neighbour graph's similarities: minus the mean distance (between unit
    vectors) to the ``neighbours`` nearest images; missing neighbours count as the farthest (distance 2)."""
    nearest = similarities[:, :neighbours].astype(np.float32)
    distance = np.where(np.isfinite(nearest), unit_distance(np.where(np.isfinite(nearest), nearest, 0)), 2.0)
    return -distance.mean(axis=1)


def exact_rows(vectors: np.ndarray, rows: np.ndarray, k: int, progress: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest others of the vectors at ``rows`` among all ``vectors``: int32 positions, similarities."""
    n = len(vectors)
    positions = np.full((len(rows), k), -1, np.int32)
    similarities = np.full((len(rows), k), -np.inf, np.float32)
    kept = min(k, n - 1)
    if kept < 1 or not len(rows):
        return positions, similarities
    padded = np.zeros((-(-n // GROUP) * GROUP, vectors.shape[1]), np.float32)
    padded[:n] = vectors
    step = max(16, BLOCK_CELLS // len(padded))
    with tqdm(total=len(rows), desc="Exact neighbours", unit="img", disable=not progress) as bar:
        for start in range(0, len(rows), step):
            block = rows[start : start + step]
            scores = padded[block] @ padded.T
            scores[:, n:] = -np.inf
            scores[np.arange(len(block)), block] = -np.inf
            columns, values = top_k_rows(scores, kept)
            positions[start : start + len(block), :kept] = columns
            similarities[start : start + len(block), :kept] = values
            bar.update(len(block))
    return positions, similarities


def build(ids: np.ndarray, vectors: np.ndarray, k: int = DEFAULT_K, *, index: Any = None,
          progress: bool = False) -> NeighbourGraph:
    """A graph from scratch: exact up to :data:`EXACT_UP_TO` images; above, from ``index`` when given, else
    through partitions (:mod:`picsift.analysis.graph_partitions`)."""
    ids = np.asarray(ids, dtype=object)
    if len(ids) <= EXACT_UP_TO:
        positions, similarities = nearest_neighbours(vectors, k, progress=progress)
        return NeighbourGraph(ids, positions.astype(np.int32), similarities, True, 1.0)
    parts = None
    if index is not None:
        positions, similarities = index_neighbours(vectors, np.arange(len(ids)), k, index, ids.tolist(), progress)
    else:
        positions, similarities, parts = build_partitioned(vectors, k, progress)
    graph = NeighbourGraph(ids, positions, similarities, False, 1.0, partitions=parts)
    graph.recall = measure_recall(graph, vectors)
    return graph


def measure_recall(graph: NeighbourGraph, vectors: np.ndarray, sample: int = DRIFT_SAMPLE, seed: int = 0) -> float:
    """recall@k of ``sample`` random rows of ``graph`` against their exact neighbours among ``vectors``."""
    if len(graph) < 2:
        return 1.0
    rows = np.sort(np.random.default_rng(seed).choice(len(graph), min(sample, len(graph)), replace=False))
    return recall_at(graph.positions[rows], exact_few(vectors, rows, min(graph.k, len(graph) - 1)))


def _merge(positions: np.ndarray, similarities: np.ndarray, more_positions: np.ndarray, more: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best of both candidate lists, best first, each neighbour once."""
    p = np.concatenate([positions, more_positions], axis=1)
    s = np.concatenate([similarities, more], axis=1)
    s = np.where(p < 0, -np.inf, s)
    by_position = np.lexsort((-s, p), axis=1)
    p, s = np.take_along_axis(p, by_position, axis=1), np.take_along_axis(s, by_position, axis=1)
    repeated = np.zeros_like(p, dtype=bool)
    repeated[:, 1:] = (p[:, 1:] == p[:, :-1]) & (p[:, 1:] >= 0)
    s[repeated] = -np.inf
    order = np.lexsort((p, -s), axis=1)[:, :k]
    p, s = np.take_along_axis(p, order, axis=1), np.take_along_axis(s, order, axis=1)
    p[~np.isfinite(s)] = -1
    return p.astype(np.int32), s.astype(np.float32)


def refresh(old: NeighbourGraph, ids: np.ndarray, vectors: np.ndarray, *, index: Any = None,
            progress: bool = False) -> NeighbourGraph:
    """``old`` brought in line with the images ``ids`` (vectors ``vectors``, store order): see the module docs.

    Up to :data:`EXACT_UP_TO` images the result is exact; above, rows are searched through ``index`` when given,
    else through ``old``'s partitions (a graph without them is rebuilt).
    """
    ids = np.asarray(ids, dtype=object)
    n, k = len(ids), old.k
    new_of_old = np.asarray(pd.Index(ids).get_indexer(old.ids.astype(object)), np.int64)
    kept = new_of_old >= 0
    added = np.setdiff1d(np.arange(n), new_of_old[kept])
    exact = n <= EXACT_UP_TO
    changed = len(added) + int((~kept).sum())
    if (changed > REBUILD_FRACTION * max(n, 1) or (exact and not old.exact)
            or (not exact and index is None and old.partitions is None)):
        return build(ids, vectors, k, index=None if exact else index, progress=progress)
    parts = None
    if not exact and index is None:
        assert old.partitions is not None
        parts = Partitions(old.partitions.centres, np.empty(n, np.int32), old.partitions.reach)
        parts.of[new_of_old[kept]] = old.partitions.of[kept]
        parts.of[added] = parts.assign(vectors[added])
    positions = np.full((n, k), -1, np.int32)
    similarities = np.full((n, k), -np.inf, np.float32)
    mapped = np.where(old.positions >= 0, new_of_old[np.maximum(old.positions, 0)], -1)
    positions[new_of_old[kept]] = mapped[kept]
    similarities[new_of_old[kept]] = np.where(mapped[kept] >= 0, old.similarities[kept], -np.inf)
    # a row that lost a neighbour is searched again; so, when not exact, is one short of k while images came
    lost = ((old.positions[kept] >= 0) & (mapped[kept] < 0)).any(axis=1)
    if len(added) and not exact:
        lost |= (old.positions[kept] < 0).any(axis=1)
    rows = np.union1d(new_of_old[kept][lost], added)
    if exact:
        found_p, found_s = exact_rows(vectors, rows, k, progress)
    elif parts is not None:
        found_p, found_s = search(vectors, rows, parts, k, progress=progress)
    else:
        found_p, found_s = index_neighbours(vectors[rows], rows, k, index, ids.tolist(), progress)
        found_p = found_p.astype(np.int32)
    positions[rows], similarities[rows] = found_p, found_s
    if len(added):
        positions, similarities = _enter_lists(positions, similarities, vectors, added, found_p, found_s, rows,
                                               exact)
    graph = NeighbourGraph(ids, positions, similarities, exact, 1.0, partitions=parts)
    if not exact:
        graph.recall = measure_recall(graph, vectors)
        if graph.recall < MIN_RECALL:
            log.info("neighbour graph recall %.3f < %.2f after the update: rebuilding it", graph.recall, MIN_RECALL)
            return build(ids, vectors, k, index=index, progress=progress)
    return graph


def _enter_lists(positions: np.ndarray, similarities: np.ndarray, vectors: np.ndarray, added: np.ndarray,
                 found_p: np.ndarray, found_s: np.ndarray, search: np.ndarray, exact: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """New images enter the lists of the images they are near. Exact: every image's best among the new ones
    (one product of the new vectors with all); else the images in the new ones' own lists."""
    k = positions.shape[1]
    if exact:
        step = max(16, BLOCK_CELLS // max(1, len(added)))
        take = min(k, len(added))
        new = vectors[added]
        for start in range(0, len(vectors), step):
            scores = vectors[start : start + step] @ new.T  # (rows, added)
            rows = np.arange(start, min(start + step, len(vectors)))
            scores[rows[:, None] == added[None, :]] = -np.inf
            best = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < len(added) else \
                np.broadcast_to(np.arange(len(added)), scores.shape)
            values = np.take_along_axis(scores, best, axis=1)
            positions[rows], similarities[rows] = _merge(positions[rows], similarities[rows],
                                                         added[best].astype(np.int32), values, k)
        return positions, similarities
    in_search = np.searchsorted(search, added)
    source = np.repeat(added, k)
    target, value = found_p[in_search].ravel(), found_s[in_search].ravel()
    keep = target >= 0
    source, target, value = source[keep], target[keep], value[keep]
    order = np.lexsort((-value, target))
    source, target, value = source[order], target[order], value[order]
    rows, starts = np.unique(target, return_index=True)
    rank = np.arange(len(target)) - np.repeat(starts, np.diff(np.append(starts, len(target))))
    keep = rank < k
    more_p = np.full((len(rows), k), -1, np.int32)
    more_s = np.full((len(rows), k), -np.inf, np.float32)
    slot = np.searchsorted(rows, target[keep])
    more_p[slot, rank[keep]], more_s[slot, rank[keep]] = source[keep], value[keep]
    positions[rows], similarities[rows] = _merge(positions[rows], similarities[rows], more_p, more_s, k)
    return positions, similarities
