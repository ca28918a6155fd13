"""The spectral start of a UMAP fit from the neighbour graph (picsift.analysis.umap_start)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse

pytest.importorskip("umap")

from picsift.analysis.projection_umap import graph_knn
from picsift.analysis.umap_start import laplacian_eigenvectors, spectral_start


def two_communities_joined_by_one_edge(size: int) -> scipy.sparse.csr_matrix:
    """Two rings of ``size`` nodes (each node tied to its 6 nearest on the ring) and a single weak edge between
    them: one connected component whose second Laplacian eigenvalue is nearly 0, the case where umap-learn's
    ``eigsh(which="SM")`` stalls."""
    rows, cols = [], []
    for offset in (0, size):
        for step in (1, 2, 3):
            ring = np.arange(size)
            rows += [offset + ring, offset + (ring + step) % size]
            cols += [offset + (ring + step) % size, offset + ring]
    row, col = np.concatenate(rows), np.concatenate(cols)
    weights = np.ones(len(row))
    row, col, weights = np.append(row, [0, size]), np.append(col, [size, 0]), np.append(weights, [1e-3, 1e-3])
    return scipy.sparse.csr_matrix((weights, (row, col)), shape=(2 * size, 2 * size))


def test_the_start_has_the_laplacians_eigenvectors_of_a_barely_connected_graph() -> None:
    graph = two_communities_joined_by_one_edge(300)
    found = laplacian_eigenvectors(graph, 2, np.random.RandomState(0))
    degrees = np.asarray(graph.sum(axis=0)).ravel()
    laplacian = np.eye(600) - graph.toarray() / np.sqrt(np.outer(degrees, degrees))
    values = scipy.linalg.eigvalsh(laplacian)
    assert values[1] < 1e-5  # the near-disconnection: the eigenvalue ARPACK's relative tolerance chokes on
    # each column an eigenvector of the Laplacian with the 2nd / 3rd smallest eigenvalue (the 3rd is shared by
    # the rings' modes, so only the eigenvalue is unique); the first splits the two communities
    for column, expected in zip((found / np.linalg.norm(found, axis=0)).T, values[1:3], strict=True):
        value = column @ laplacian @ column
        assert abs(value - expected) < 1e-4 and np.linalg.norm(laplacian @ column - value * column) < 1e-2
    fiedler = found[:, 0]
    assert (np.sign(fiedler[:300]) != np.sign(fiedler[300:].mean())).mean() > 0.99


def test_a_start_from_knn_arrays_keeps_separate_clusters_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32))
    labels = rng.integers(0, 4, 800)
    vectors = centres[labels] + 0.3 * rng.normal(size=(800, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1)[:, :20]
    indices, distances = graph_knn(order, np.take_along_axis(scores, order, axis=1), 15)
    start = spectral_start(vectors, indices, distances, 2, seed=0)
    assert start.shape == (800, 2) and start.dtype == np.float32 and np.isfinite(start).all()
    assert np.abs(start).max() <= 10.001  # scaled as umap-learn scales its own start
    # every point is nearer its own cluster's middle than any other cluster's
    middles = np.stack([start[labels == c].mean(axis=0) for c in range(4)])
    nearest = np.argmin(np.linalg.norm(start[:, None] - middles[None], axis=2), axis=1)
    assert (nearest == labels).mean() > 0.99
