"""UMAP's spectral start for a fit from the neighbour graph, computed so that it cannot stall.

umap-learn (0.5.12) starts a fit from the eigenvectors of the normalised Laplacian ``L = I - D^-1/2 W D^-1/2``
of its fuzzy graph, one connected component at a time, with ARPACK's ``eigsh(L, which="SM", tol=1e-4)``. ARPACK's
tolerance is relative to each eigenvalue, and the eigenvalues wanted sit at or next to 0; in a component made
of two clusters joined by a handful of edges (real data has them; so does a neighbour graph built through
partitions, bench/graph_scale.py: 80 components for 200 clusters at 100k) the second one is about ``1e-5``, so
ARPACK iterates towards a residual near ``1e-9`` (up to ``5 n`` iterations): that fit was still in ``eigsh`` after
34 minutes. :func:`spectral_start` asks for the same eigenvectors as the largest of ``2I - L`` (eigenvalues near 2,
so the same tolerance means an absolute one), with the known eigenvector for 0 deflated (``sqrt(degrees)``)
and a random first Lanczos vector: the same layout, in seconds. Everything else follows umap-learn's
``spectral_layout``: its fuzzy graph (``fuzzy_simplicial_set``), its pruning of weak edges, its placement of the
components (``component_layout``) and its scaling (``noisy_scale_coords``); the result is passed to
``umap.UMAP(init=...)``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Components up to this size are solved densely (ARPACK needs more rows than Lanczos vectors).
DENSE_UP_TO = 256


def spectral_start(data: np.ndarray, knn_indices: np.ndarray, knn_dists: np.ndarray, dims: int, seed: int | None,
                   n_epochs: int | None = None) -> np.ndarray:
    """Starting coordinates ``(n, dims)`` float32 for ``umap.UMAP(init=...)``, from UMAP's ``precomputed_knn``
    arrays (``knn_indices`` / ``knn_dists``: each row itself first, then its nearest, cosine distances)."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components
    from sklearn.utils import check_random_state
    from umap.umap_ import fuzzy_simplicial_set, noisy_scale_coords

    random_state = check_random_state(seed)
    n = len(knn_indices)
    graph, _, _ = fuzzy_simplicial_set(data, knn_indices.shape[1], random_state, "cosine",
                                       knn_indices=knn_indices, knn_dists=knn_dists)
    graph = graph.tocoo()
    epochs = n_epochs or (500 if n <= 10_000 else 200)  # umap-learn drops these weak edges before its layout
    graph.data[graph.data < graph.data.max() / float(epochs)] = 0.0
    graph = scipy.sparse.csr_matrix(graph)
    graph.eliminate_zeros()
    count, labels = connected_components(graph, directed=False)
    if count == 1:
        start = laplacian_eigenvectors(graph, dims, random_state)
    else:
        start = _components_layout(data, graph, count, labels, dims, random_state)
    return noisy_scale_coords(start, random_state, max_coord=10, noise=0.0001)


def laplacian_eigenvectors(graph: Any, dims: int, random_state: np.random.RandomState) -> np.ndarray:
    """The ``dims`` eigenvectors of the normalised Laplacian of a connected ``graph`` with the smallest non-zero
    eigenvalues (as ``umap.spectral.spectral_layout``), found as the largest of ``2I - L``."""
    import scipy.linalg
    import scipy.sparse
    import scipy.sparse.linalg

    n = graph.shape[0]
    root_degrees = np.sqrt(np.asarray(graph.sum(axis=0), np.float64).ravel())
    scale = scipy.sparse.diags(1.0 / root_degrees)
    shifted = scipy.sparse.identity(n, dtype=np.float64, format="csr") + scale @ graph @ scale  # 2I - L
    trivial = root_degrees / np.linalg.norm(root_degrees)  # L's eigenvector for 0, known: deflated, not sought
    if n <= DENSE_UP_TO:
        values, vectors = scipy.linalg.eigh(shifted.toarray() - 2.0 * np.outer(trivial, trivial))
    else:
        deflated = scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=lambda v: shifted @ v - 2.0 * trivial * (trivial @ v), dtype=np.float64)
        start = random_state.uniform(-1.0, 1.0, n)  # a start of all ones (umap-learn's) misses symmetric splits
        try:
            values, vectors = scipy.sparse.linalg.eigsh(deflated, dims, which="LA", tol=1e-4, v0=start,
                                                        ncv=max(2 * dims + 1, int(np.sqrt(n))), maxiter=n * 5)
        except scipy.sparse.linalg.ArpackError as e:  # as umap-learn does when its solver fails
            log.warning("spectral start failed (%s): random start for %d points", e, n)
            return random_state.uniform(-10.0, 10.0, (n, dims))
    order = np.argsort(-values)[:dims]
    return np.asarray(vectors[:, order])


def _components_layout(data: np.ndarray, graph: Any, count: int, labels: np.ndarray, dims: int,
                       random_state: np.random.RandomState) -> np.ndarray:
    """umap-learn's ``multi_component_layout`` with :func:`laplacian_eigenvectors` for each component."""
    from sklearn.metrics import pairwise_distances
    from umap.spectral import component_layout

    if count > 2 * dims:
        meta = component_layout(data, count, labels, dims, random_state, metric="cosine")
    else:
        half = int(np.ceil(count / 2.0))
        base = np.hstack([np.eye(half), np.zeros((half, dims - half))])
        meta = np.vstack([base, -base])[:count]
    result = np.empty((graph.shape[0], dims), np.float64)
    order = np.argsort(labels, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(labels, minlength=count))[:-1])
    for label, rows in enumerate(members):
        distances = pairwise_distances(meta[label : label + 1], meta)
        data_range = distances[distances > 0.0].min() / 2.0
        if len(rows) < 2 * dims or len(rows) <= dims + 1:
            result[rows] = random_state.uniform(-data_range, data_range, (len(rows), dims)) + meta[label]
            continue
        part = laplacian_eigenvectors(graph[rows][:, rows], dims, random_state)
        result[rows] = part * (data_range / np.max(np.abs(part))) + meta[label]
    return result
