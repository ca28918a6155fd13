"""Outliers and near duplicates from the nearest-neighbour graph of unit vectors (cosine similarity).

Pure numpy. The exact path scores blocks of rows against every vector (one matrix product per block)
and keeps only what it needs per row, so memory stays bounded; it costs ``O(n^2 d)`` and suits up
to ~100k vectors (about two minutes at 100k on 2 cores). Larger sets pass a vector index (see
:mod:`picsift.index`) that holds the same ids: its k nearest neighbours replace the exact ones. The
hnsw backend is queried in batches; any other backend one vector at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ..index.base import VectorIndex

#: Scores of one block of rows against every vector use at most about this many float32 cells.
BLOCK_CELLS = 1 << 25
#: Columns are scanned in groups of this many: a group whose best score is too low is skipped.
GROUP = 64


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must have shape (n, dim), got {vectors.shape}")
    return vectors


def _score_blocks(vectors: np.ndarray, progress: bool, desc: str) -> Iterator[tuple[int, np.ndarray]]:
    """(start, scores) per block of rows: scores ``(rows, n_padded)`` against every vector, with each
    row's own column and the padding set to -inf; ``n_padded`` is a multiple of :data:`GROUP`."""
    n, dim = vectors.shape
    padded = np.zeros((-(-n // GROUP) * GROUP, dim), np.float32)
    padded[:n] = vectors
    rows = max(16, min(n, BLOCK_CELLS // len(padded)))
    with tqdm(total=n, desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, n, rows):
            block = padded[start : min(start + rows, n)] @ padded.T
            block[:, n:] = -np.inf
            block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
            yield start, block
            bar.update(len(block))


def top_k_rows(scores: np.ndarray, k: int, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of each row's ``k`` largest scores, best first (the width must be a
    multiple of ``group``; pad with -inf).

    Only the ``k`` column groups with the highest maxima can hold a row's top ``k`` (each of those
    groups has a value at least as high as anything in a group outside them), so the full sort runs
    over ``k * group`` candidates instead of every column. (A narrow row, a few thousand columns, gains
    from a smaller ``group``: with 64 its 32 best groups are half of it.)
    """
    rows, width = scores.shape
    maxima = scores.reshape(rows, width // group, group).max(axis=2)
    groups = min(k, maxima.shape[1])
    best = np.argpartition(-maxima, groups - 1, axis=1)[:, :groups]
    columns = (best[:, :, None] * group + np.arange(group)).reshape(rows, -1)
    values = np.take_along_axis(scores, columns, axis=1)
    top = np.argpartition(-values, k - 1, axis=1)[:, :k]
    columns, values = np.take_along_axis(columns, top, axis=1), np.take_along_axis(values, top, axis=1)
    order = np.lexsort((columns, -values), axis=1)  # best first, ties by position
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def nearest_neighbours(
    vectors: np.ndarray, k: int = 10, *, index: VectorIndex | None = None, ids: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest others: positions ``(n, k)`` and cosine similarities, best first.

    Rows of ``vectors`` must be unit length. With ``index`` (holding ``ids``, one per row) the
    neighbours come from the index; a neighbour outside ``ids`` has position -1 and similarity -inf.
    Fewer than ``k`` others leave the same padding.
    """
    vectors = _unit(vectors)
    n = len(vectors)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if index is not None:
        if ids is None or len(ids) != n:
            raise ValueError("nearest_neighbours(index=...) needs the ids of the vectors, one per row")
        return _index_neighbours(vectors, k, index, list(ids), progress)
    positions = np.full((n, k), -1, np.int64)
    similarities = np.full((n, k), -np.inf, np.float32)
    kept = min(k, n - 1)
    if kept < 1:
        return positions, similarities
    for start, scores in _score_blocks(vectors, progress, "Nearest neighbours"):
        columns, values = top_k_rows(scores, kept)
        positions[start : start + len(scores), :kept] = columns
        similarities[start : start + len(scores), :kept] = values
    return positions, similarities


def _index_neighbours(vectors: np.ndarray, k: int, index: Any, ids: list[str],
                      progress: bool) -> tuple[np.ndarray, np.ndarray]:
    return index_neighbours(vectors, np.arange(len(vectors)), k, index, ids, progress)


def index_neighbours(queries: np.ndarray, own: np.ndarray, k: int, index: Any, ids: Sequence[str],
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest others of ``queries`` (the vectors at positions ``own`` of ``ids``) from ``index``:
    positions into ``ids`` ``(len(queries), k)`` and similarities, best first (-1 / -inf where missing)."""
    n = len(queries)
    own = np.asarray(own, np.int64)
    position = {image_id: p for p, image_id in enumerate(ids)}
    found_positions = np.full((n, k + 1), -1, np.int64)
    found = np.full((n, k + 1), -np.inf, np.float32)
    with tqdm(total=n, desc="Nearest neighbours", unit="img", disable=not progress) as bar:
        if not _hnsw_neighbours(queries, k + 1, index, position, found_positions, found, bar):
            for row in range(n):  # any backend: one query per vector
                neighbour_ids, scores = index.search(queries[row], k + 1)
                found_positions[row, : len(neighbour_ids)] = [position.get(i, -1) for i in neighbour_ids]
                found[row, : len(scores)] = scores
                bar.update(1)
    found[found_positions < 0] = -np.inf
    # drop each row itself (or, when it was not returned, the worst neighbour); keep the order
    itself = found_positions == own[:, None]
    itself[~itself.any(axis=1), -1] = True
    keep = np.argsort(itself, axis=1, kind="stable")[:, :k]
    positions = np.take_along_axis(found_positions, keep, axis=1)
    similarities = np.take_along_axis(found, keep, axis=1)
    order = np.argsort(-similarities, axis=1, kind="stable")
    positions = np.take_along_axis(positions, order, axis=1)
    similarities = np.take_along_axis(similarities, order, axis=1)
    positions[~np.isfinite(similarities)] = -1
    return positions, similarities


def _hnsw_neighbours(vectors: np.ndarray, k: int, index: Any, position: dict[str, int], found_positions: np.ndarray,
                     found: np.ndarray, bar: Any, chunk: int = 10_000) -> bool:
    """The hnsw backend's graph queried in threaded batches at a modest beam width; False if not hnsw."""
    graph, id_of = getattr(index, "_index", None), getattr(index, "_id_of", None)
    if not hasattr(graph, "knn_query") or not isinstance(id_of, dict) or len(id_of) <= k:
        return False
    assert graph is not None
    label_position = np.full(max(id_of, default=0) + 1, -1, np.int64)
    for label, image_id in id_of.items():
        label_position[label] = position.get(image_id, -1)
    graph.set_ef(max(64, 4 * k))
    try:
        for start in range(0, len(vectors), chunk):
            labels, distances = graph.knn_query(vectors[start : start + chunk], k=k)
            found_positions[start : start + len(labels)] = label_position[labels]
            found[start : start + len(labels)] = 1.0 - distances
            bar.update(len(labels))
    except RuntimeError:  # hnswlib could not find k (deleted nodes): the generic path
        found_positions[:], found[:] = -1, -np.inf
        bar.reset()
        return False
    finally:
        graph.set_ef(getattr(index, "ef", 128))
    return True


def outlier_scores(similarities: np.ndarray) -> np.ndarray:
    """``1 - mean similarity`` to the k nearest neighbours (missing neighbours are ignored)."""
    finite = np.isfinite(similarities)
    counts = finite.sum(axis=1)
    mean = np.where(finite, similarities, 0).sum(axis=1) / np.maximum(counts, 1)
    return np.where(counts > 0, 1.0 - mean, np.inf).astype(np.float32)


def outliers(
    vectors: np.ndarray, k: int = 10, n: int | None = 50, *, index: VectorIndex | None = None,
    ids: Sequence[str] | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most isolated vectors (``None``: all), most isolated first: positions and scores.

    The score is ``1 - mean cosine similarity`` to the ``k`` nearest other vectors: 0 for a vector
    with k exact copies, about 1 for one unrelated to everything.
    """
    _, similarities = nearest_neighbours(vectors, k, index=index, ids=ids, progress=progress)
    scores = outlier_scores(similarities)
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order if n is None else order[: max(0, n)]
    return order, scores[order]


def components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by edges ``first[i] - second[i]``: each node's label is
    the smallest node of its component."""
    labels = np.arange(n)
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    while True:
        low = np.minimum(labels[first], labels[second])
        before = labels.copy()
        np.minimum.at(labels, first, low)
        np.minimum.at(labels, second, low)
        labels = labels[labels]  # pointer jumping: long chains settle in a few rounds
        if np.array_equal(labels, before):
            return labels


def similar_pairs(
    vectors: np.ndarray, threshold: float, *, k: int = 10, index: VectorIndex | None = None,
    ids: Sequence[str] | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(a, b, similarity)`` with ``a < b`` and cosine similarity >= ``threshold``.

    Exact: every such pair. With ``index``: the pairs among each vector's ``k`` nearest neighbours.
    """
    vectors = _unit(vectors)
    if index is not None:
        positions, similarities = nearest_neighbours(vectors, k, index=index, ids=ids, progress=progress)
        a, columns = np.nonzero(similarities >= threshold)
        b, values = positions[a, columns], similarities[a, columns]
    else:
        parts_a, parts_b, parts_s = [], [], []
        for start, scores in _score_blocks(vectors, progress, "Similar pairs"):
            maxima = scores.reshape(len(scores), -1, GROUP).max(axis=2)
            row, group = np.nonzero(maxima >= threshold)  # only groups that hold a pair are read
            if not len(row):
                continue
            columns = group[:, None] * GROUP + np.arange(GROUP)
            values = scores[row[:, None], columns]
            hit_row, hit_column = np.nonzero(values >= threshold)
            parts_a.append(start + row[hit_row])
            parts_b.append(columns[hit_row, hit_column])
            parts_s.append(values[hit_row, hit_column])
        a = np.concatenate(parts_a) if parts_a else np.zeros(0, np.int64)
        b = np.concatenate(parts_b) if parts_b else np.zeros(0, np.int64)
        values = np.concatenate(parts_s) if parts_s else np.zeros(0, np.float32)
    keep = b >= 0
    a, b, values = a[keep], b[keep], values[keep]
    low, high = np.minimum(a, b), np.maximum(a, b)
    _, unique = np.unique(low * max(1, len(vectors)) + high, return_index=True)
    return low[unique], high[unique], values[unique].astype(np.float32)


def near_duplicates(
    vectors: np.ndarray, threshold: float = 0.95, *, k: int = 10, index: VectorIndex | None = None,
    ids: Sequence[str] | None = None, progress: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of near-identical vectors: connected components of the pairs at or above ``threshold``.

    Returns ``(positions, similarities)`` per group, largest groups first. A group's first member
    is its lowest position; the others follow by their similarity to it (the first's own is 1).
    """
    vectors = _unit(vectors)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r}; valid range: (0, 1] (cosine similarity)")
    a, b, _ = similar_pairs(vectors, threshold, k=k, index=index, ids=ids, progress=progress)
    return pair_groups(lambda positions: vectors[positions], a, b)


def pair_groups(vectors_of: Callable[[np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The connected components of the pairs ``a[i] - b[i]`` (positions; ``vectors_of(positions)`` gives their
    unit vectors), ordered as :func:`near_duplicates` orders them."""
    if not len(a):
        return []
    nodes = np.unique(np.concatenate([a, b]))
    labels = nodes[components(len(nodes), np.searchsorted(nodes, a), np.searchsorted(nodes, b))]
    groups = []
    for leader in np.unique(labels):
        members = nodes[labels == leader]
        similarity = vectors_of(members) @ vectors_of(np.array([leader]))[0]
        similarity[members == leader] = 1.0
        order = np.lexsort((members, -similarity, members != leader))
        groups.append((members[order], similarity[order].astype(np.float32)))
    groups.sort(key=lambda group: (-len(group[0]), int(group[0][0])))
    return groups
