"""Diverse sampling: pick a subset of images that covers the collection instead of its densest part.

Both methods cluster the vectors with k-means (scikit-learn's ``MiniBatchKMeans``, seeded) and then

- ``random``: draw the sample evenly across clusters (round-robin over clusters, random within each),
  so small clusters are represented as well as big ones;
- ``centroids``: take the image nearest each cluster centre (the sample size is the number of clusters).

Pure numpy / scikit-learn: no catalog, store or widget imports. Vectors are expected L2-normalised
(as picsift stores them), so Euclidean k-means matches cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLING_METHODS = ("random", "centroids")


@dataclass
class Clustering:
    """Cluster label of every vector and the cluster centres."""

    labels: np.ndarray  # (n,) int32
    centres: np.ndarray  # (k, dim) float32


def default_clusters(n: int) -> int:
    """The rule-of-thumb number of clusters, ``sqrt(n / 2)`` (at least 1, at most n)."""
    return max(1, min(n, round(math.sqrt(n / 2))))


def cluster(vectors: np.ndarray, n_clusters: int | None = None, *, seed: int = 0) -> Clustering:
    """k-means over ``vectors`` with ``n_clusters`` clusters (default :func:`default_clusters`)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return Clustering(np.zeros(0, np.int32), np.zeros((0, vectors.shape[-1] if vectors.ndim == 2 else 0)))
    k = default_clusters(n) if n_clusters is None else int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    k = min(k, n)
    if k == 1:
        return Clustering(np.zeros(n, np.int32), vectors.mean(axis=0, keepdims=True))
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as e:
        raise ImportError('diverse sampling needs scikit-learn: pip install "picsift[app]"') from e
    model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=max(1024, 4 * k))
    labels = model.fit_predict(vectors).astype(np.int32)
    return Clustering(labels, model.cluster_centers_.astype(np.float32))


def diverse_sample(
    ids: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    size: int | None = None,
    *,
    method: str = "random",
    n_clusters: int | None = None,
    seed: int = 0,
) -> list[str]:
    """A diverse sample of ``ids`` (one vector per id).

    Parameters
    ----------
    ids, vectors
        The images to sample from and their embeddings, row-aligned.
    size
        How many to return (``random``; default: the number of clusters). ``centroids`` always
        returns one image per cluster.
    method
        ``"random"`` (evenly across clusters) or ``"centroids"`` (nearest each cluster centre).
    n_clusters
        Number of k-means clusters (default ``sqrt(n / 2)``).
    seed
        Seeds both the clustering and the draw: the same inputs give the same sample.

    Returns
    -------
    list of str
        Sampled ids, in draw order (no duplicates).
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(SAMPLING_METHODS)}")
    ids = np.asarray(ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(ids)} ids but {len(vectors)} vectors")
    if size is not None and size < 0:
        raise ValueError(f"size must be positive, got {size}")
    if len(ids) == 0 or size == 0:
        return []
    clustering = cluster(vectors, n_clusters, seed=seed)
    if method == "centroids":
        return [str(ids[i]) for i in _nearest_to_centres(vectors, clustering)]
    k = len(clustering.centres)
    return [str(ids[i]) for i in _round_robin(clustering.labels, k, size or k, seed)]


def _nearest_to_centres(vectors: np.ndarray, clustering: Clustering) -> list[int]:
    picked = []
    for c, centre in enumerate(clustering.centres):
        members = np.flatnonzero(clustering.labels == c)
        if len(members):
            distances = np.linalg.norm(vectors[members] - centre, axis=1)
            picked.append(int(members[np.argmin(distances)]))
    return picked


def _round_robin(labels: np.ndarray, k: int, size: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in range(k)]
    order = rng.permutation(k)  # which cluster goes first in each round
    picked: list[int] = []
    size = min(size, len(labels))
    while len(picked) < size:
        for c in order:
            if queues[c]:
                picked.append(queues[c].pop())
                if len(picked) == size:
                    break
    return picked
