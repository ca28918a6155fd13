"""Vectors read in blocks, and k-means over them: the ground diverse sampling and the explorer's colours stand on.

Vectors may be a memory map or a :class:`RowsLike` view of one; they are read in blocks, never all at once.
k-means fits on at most ``max(50k, 64 k)`` sampled vectors and assigns the rest in blocks. Vectors are expected
L2-normalised (as picsift stores them), so Euclidean k-means matches cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

BLOCK_ELEMENTS = 1 << 24  # ~64 MB of float32 per block of a (rows x targets) product
FIT_ROWS = 50_000  # k-means fits on a sample of max(FIT_ROWS, 64 k) vectors


class RowsLike(Protocol):
    """Anything with a length whose ``[slice]`` and ``[int array]`` give float32 rows (e.g. a memmap view)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> np.ndarray: ...


Vectors = np.ndarray | RowsLike


@dataclass
class Clustering:
    """Cluster label of every vector, the cluster centres, and each vector's squared distance to its centre."""

    labels: np.ndarray  # (n,) int32
    centres: np.ndarray  # (k, dim) float32
    distances: np.ndarray | None = None  # (n,) float32


def default_clusters(n: int) -> int:
    """The rule-of-thumb number of clusters, ``sqrt(n / 2)`` (at least 1, at most n)."""
    return max(1, min(n, round(math.sqrt(n / 2))))


def rows_view(matrix: np.ndarray, rows: np.ndarray) -> Vectors:
    """``matrix[rows]`` without copying: a slice when ``rows`` are consecutive, else a lazy row view."""
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (len(rows) < 2 or bool(np.all(np.diff(rows) == 1))):
        return matrix[int(rows[0]) : int(rows[-1]) + 1]
    return RowsView(matrix, rows)


class RowsView:
    """``matrix[rows]`` without copying it: indexing reads only the rows asked for (e.g. from a memmap),
    as float32 (a float16 store's rows are widened)."""

    def __init__(self, matrix: np.ndarray, rows: np.ndarray):
        self.matrix, self.rows = matrix, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.matrix[self.rows[index]], dtype=np.float32)


def take_rows(vectors: Vectors, positions: np.ndarray) -> np.ndarray:
    order = np.argsort(positions, kind="stable")  # sorted reads are sequential on a memory map
    out = np.empty((len(positions), vector_dim(vectors)), np.float32)
    out[order] = np.asarray(vectors[positions[order]], dtype=np.float32)
    return out


def vector_dim(vectors: Vectors) -> int:
    shape = getattr(vectors, "shape", None)
    return int(shape[1]) if shape is not None else int(np.asarray(vectors[0:1]).shape[1])


def read_blocks(vectors: Vectors, columns: int = 1) -> Any:
    n = len(vectors)
    step = max(1024, BLOCK_ELEMENTS // max(columns, vector_dim(vectors) if n else 1))
    for start in range(0, n, step):
        yield start, np.asarray(vectors[start : start + step], dtype=np.float32)


def unit_distance(dots: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their dot product."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * dots))


def nearest_target(vectors: Vectors, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vector, the largest dot product with any target and which target (in blocks)."""
    n = len(vectors)
    best, which = np.full(n, -np.inf, np.float32), np.zeros(n, np.int64)
    if not len(targets):
        return best, which
    step = max(1, BLOCK_ELEMENTS // 4096)
    for start, block in read_blocks(vectors, min(len(targets), 4096)):
        for t in range(0, len(targets), step):
            dots = block @ targets[t : t + step].T
            arg = dots.argmax(axis=1)
            top = dots[np.arange(len(block)), arg]
            part = slice(start, start + len(block))
            better = top > best[part]
            best[part] = np.where(better, top, best[part])
            which[part] = np.where(better, arg + t, which[part])
    return best, which


def cluster(vectors: Vectors, n_clusters: int | None = None, *, seed: int = 0) -> Clustering:
    """k-means over ``vectors`` with ``n_clusters`` clusters (default :func:`default_clusters`).

    Fits scikit-learn's ``MiniBatchKMeans`` on at most ``max(50k, 64 k)`` sampled vectors, then assigns
    every vector to its nearest centre in blocks, so a memory-mapped million never sits in memory.
    """
    n = len(vectors)
    if n == 0:
        dim = vectors.shape[-1] if isinstance(vectors, np.ndarray) and vectors.ndim == 2 else 0
        return Clustering(np.zeros(0, np.int32), np.zeros((0, dim), np.float32), np.zeros(0, np.float32))
    k = default_clusters(n) if n_clusters is None else int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    k = min(k, n)
    rng = np.random.default_rng(seed)
    fit_rows = max(FIT_ROWS, 64 * k)
    fit = np.arange(n) if n <= fit_rows else np.sort(rng.choice(n, fit_rows, replace=False))
    sample = take_rows(vectors, fit)
    if k == 1:
        centres = sample.mean(axis=0, keepdims=True)
    else:
        try:
            from sklearn.cluster import MiniBatchKMeans
            from threadpoolctl import threadpool_limits
        except ImportError as e:
            raise ImportError('diverse sampling needs scikit-learn: pip install "picsift[app]"') from e
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=max(1024, 4 * k))
        # many small products: BLAS threads only add overhead, and on a busy machine they spin (10x slower)
        with threadpool_limits(1, user_api="blas"):
            centres = model.fit(sample).cluster_centers_.astype(np.float32)
    labels, distances = np.zeros(n, np.int32), np.zeros(n, np.float32)
    half_norms = 0.5 * np.einsum("ij,ij->i", centres, centres)
    for start, block in read_blocks(vectors, k):
        scores = block @ centres.T - half_norms  # argmax of x.c - |c|^2/2 = nearest centre
        arg = scores.argmax(axis=1)
        part = slice(start, start + len(block))
        labels[part] = arg
        # |x - c|^2 = |x|^2 - 2 (x.c - |c|^2/2)
        distances[part] = np.einsum("ij,ij->i", block, block) - 2 * scores[np.arange(len(block)), arg]
    return Clustering(labels, centres, np.maximum(distances, 0))
