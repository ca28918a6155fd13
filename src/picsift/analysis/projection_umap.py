"""UMAP maps kept as plain arrays: fit with umap-learn, place new points without the fitted reducer object.

:class:`UmapModel` holds what ``umap.UMAP.transform`` uses (the fitted sample, its coordinates and a
few numbers) and places new vectors with umap-learn's own functions, so a saved UMAP model is an
``.npz`` of arrays that loads without unpickling (see :mod:`picsift.analysis.projection`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .neighbours import GROUP, top_k_rows
from .umap_start import spectral_start

#: The numbers of a fitted UMAP that placing new points depends on (see :meth:`UmapModel.transform`).
_UMAP_NUMBERS = ("n_neighbors", "a", "b", "local_connectivity", "disconnection_distance", "repulsion_strength",
                 "learning_rate", "negative_sample_rate", "n_epochs", "transform_seed", "parallel")


class UmapModel:
    """A fitted UMAP (cosine metric) kept as arrays: its sample, the sample's coordinates and a few numbers.

    New vectors are placed the way ``umap.UMAP.transform`` places them (the same fuzzy neighbour
    weights, initial positions and optimisation, with umap-learn's own functions), so the fitted
    reducer object itself never needs saving: the saved model is numbers only and loads without
    unpickling anything.
    """

    method = "umap"

    def __init__(self, sample: np.ndarray, embedding: np.ndarray, numbers: dict[str, float]):
        self.sample, self.embedding, self.numbers = sample, embedding, numbers
        self._search = SampleSearch(sample)

    @classmethod
    def fit(cls, sample: np.ndarray, dims: int, seed: int | None,
            knn: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[UmapModel, np.ndarray]:
        reducer = fit_reducer(sample, dims, seed, knn)
        return cls.from_reducer(reducer), np.asarray(reducer.embedding_, np.float32)

    @classmethod
    def from_reducer(cls, reducer: Any) -> UmapModel:
        """The arrays and numbers of a fitted ``umap.UMAP`` that its ``transform`` uses."""
        numbers = {
            "n_neighbors": reducer._n_neighbors, "a": reducer._a, "b": reducer._b,
            "local_connectivity": reducer.local_connectivity,
            "disconnection_distance": reducer._disconnection_distance,
            "repulsion_strength": reducer.repulsion_strength, "learning_rate": reducer._initial_alpha,
            "negative_sample_rate": reducer.negative_sample_rate,
            "n_epochs": -1 if reducer.n_epochs is None else reducer.n_epochs,
            "transform_seed": reducer.transform_seed, "parallel": reducer.random_state is None,
        }
        return cls(np.asarray(reducer._raw_data, np.float32), np.asarray(reducer.embedding_, np.float32),
                   {k: float(v) for k, v in numbers.items()})

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Place ``vectors`` as ``umap.UMAP.transform`` does (cosine neighbours among the fitted sample)."""
        import scipy.sparse
        from sklearn.utils import check_random_state

        cache_umap_kernels()
        from umap.layouts import optimize_layout_euclidean
        from umap.umap_ import (
            INT32_MAX,
            INT32_MIN,
            compute_membership_strengths,
            init_graph_transform,
            make_epochs_per_sample,
            smooth_knn_dist,
        )

        vectors = np.ascontiguousarray(vectors, np.float32)
        if not len(vectors):
            return np.zeros((0, self.embedding.shape[1]), np.float32)
        number = self.numbers
        k = int(number["n_neighbors"])
        rng_state = check_random_state(int(number["transform_seed"])).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
        indices, distances = self._search.query(vectors, k)
        distances = distances.astype(np.float32, order="C")
        indices[distances >= number["disconnection_distance"]] = -1
        sigmas, rhos = smooth_knn_dist(distances, float(k),
                                       local_connectivity=float(max(0.0, number["local_connectivity"] - 1.0)))
        rows, cols, values, _ = compute_membership_strengths(indices, distances, sigmas, rhos, bipartite=True)
        graph = scipy.sparse.coo_matrix((values, (rows, cols)), shape=(len(vectors), len(self.sample)))
        csr = graph.tocsr()
        csr.eliminate_zeros()
        embedding = init_graph_transform(csr, self.embedding)
        n_epochs = (100 if graph.shape[0] <= 10_000 else 30) if number["n_epochs"] < 0 else int(number["n_epochs"] // 3)
        graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
        graph.eliminate_zeros()
        with quiet_umap():
            placed = optimize_layout_euclidean(
                embedding, self.embedding.astype(np.float32, copy=True), graph.row, graph.col, n_epochs,
                graph.shape[1], make_epochs_per_sample(graph.data, n_epochs), number["a"], number["b"], rng_state,
                number["repulsion_strength"], number["learning_rate"] / 4.0, number["negative_sample_rate"],
                bool(number["parallel"]), verbose=False, tqdm_kwds={"disable": True},
            )
        return np.asarray(placed, np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sample": self.sample, "embedding": self.embedding,
                "numbers": np.array([self.numbers[k] for k in _UMAP_NUMBERS], np.float64)}

    @classmethod
    def from_arrays(cls, data: Any) -> UmapModel:
        sample, embedding = np.asarray(data["sample"], np.float32), np.asarray(data["embedding"], np.float32)
        numbers = np.asarray(data["numbers"], np.float64)
        if (sample.ndim != 2 or embedding.ndim != 2 or len(sample) != len(embedding) or len(sample) < 2
                or numbers.shape != (len(_UMAP_NUMBERS),) or np.isnan(numbers).any()
                or not 1 <= numbers[0] <= len(sample)):
            raise ValueError(f"inconsistent UMAP model: sample {sample.shape}, embedding {embedding.shape}, "
                             f"numbers {numbers.shape}")
        return cls(sample, embedding, dict(zip(_UMAP_NUMBERS, numbers.tolist(), strict=True)))


def graph_knn(positions: np.ndarray, similarities: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's ``precomputed_knn`` arrays from the neighbour graph: each row itself first (distance 0), then its
    ``n_neighbors - 1`` nearest, as cosine distances."""
    n = len(positions)
    indices = np.concatenate([np.arange(n)[:, None], positions[:, : n_neighbors - 1]], axis=1).astype(np.int32)
    distances = np.concatenate([np.zeros((n, 1)), 1.0 - similarities[:, : n_neighbors - 1]], axis=1)
    distances = np.where(indices >= 0, np.maximum(distances, 0.0), np.inf).astype(np.float32)
    return indices, distances


#: A fit from the neighbour graph above this many points runs GRAPH_EPOCHS epochs (umap-learn: 200 above 10k):
#: at 100k, 100 epochs kept trustworthiness within 0.001 of 200 and took half the time (bench/README.md, issue 21).
GRAPH_FEWER_EPOCHS_ABOVE = 50_000
GRAPH_EPOCHS = 100


_KERNELS_LOCK = threading.Lock()
_kernels_cached = False


def cache_umap_kernels() -> None:
    """Turn numba's on-disk cache on for umap-learn's compiled functions, before their first call.

    Most of umap-learn's numba functions are not marked ``cache=True``, so every new Python process compiled them
    again before its first map: about 11 s on these CPUs for 300 points, where the fit itself takes 0.3 s
    (bench/umap_first_map.py). With the cache on they are compiled once per machine and
    loaded after that, as picsift's own kernels are (numba keys each entry on its source file and the CPU, next to
    the module when that folder is writable, else in the user's cache folder)."""
    global _kernels_cached
    with _KERNELS_LOCK:
        if _kernels_cached:
            return
        import sys

        import umap  # noqa: F401  (its modules, whose functions are compiled lazily on the first call)
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher

        for name, module in list(sys.modules.items()):
            if name == "umap" or name.startswith("umap."):
                for value in list(vars(module).values()):
                    if isinstance(value, Dispatcher) and isinstance(getattr(value, "_cache", None), NullCache):
                        value.enable_caching()
        _kernels_cached = True


def fit_reducer(sample: np.ndarray, dims: int, seed: int | None,
                knn: tuple[np.ndarray, np.ndarray] | None = None, *, n_epochs: int | None = None,
                init: str | None = None) -> Any:
    """A ``umap.UMAP`` (cosine metric) fitted on ``sample``; its ``embedding_`` holds the sample's coordinates.

    ``knn``: the neighbour graph of ``sample`` (positions, similarities; at least 14 neighbours per row), used as
    UMAP's ``precomputed_knn`` instead of its own neighbour search, with a spectral start that cannot stall
    (:func:`~picsift.analysis.umap_start.spectral_start`). ``n_epochs`` / ``init``: UMAP's (None: its defaults,
    200 epochs above 10k points, :data:`GRAPH_EPOCHS` from the graph above :data:`GRAPH_FEWER_EPOCHS_ABOVE`; a
    spectral start)."""
    try:
        import umap as umap_learn
    except ImportError as e:
        raise ImportError('UMAP maps need umap-learn: pip install "picsift[app]"') from e
    cache_umap_kernels()
    # A seed makes UMAP reproducible but single-threaded (it sets n_jobs=1); seed=None uses every core.
    n_neighbors = min(15, len(sample) - 1)
    precomputed: tuple[Any, Any, Any] = (None, None, None)
    start: Any = "random" if len(sample) < 50 else init or "spectral"
    if knn is not None and knn[0].shape[1] >= n_neighbors - 1 and len(knn[0]) == len(sample) > 60:
        precomputed = (*graph_knn(knn[0], knn[1], n_neighbors), None)
        if n_epochs is None and len(sample) > GRAPH_FEWER_EPOCHS_ABOVE:
            n_epochs = GRAPH_EPOCHS
        if start == "spectral":  # umap-learn's own spectral start can stall for many minutes (see umap_start)
            start = spectral_start(sample, precomputed[0], precomputed[1], dims, seed, n_epochs)
    reducer = umap_learn.UMAP(n_components=dims, metric="cosine", random_state=seed,
                              n_jobs=1 if seed is not None else -1, n_neighbors=n_neighbors,
                              init=start, n_epochs=n_epochs, precomputed_knn=precomputed)
    with quiet_umap():
        reducer.fit(sample)
    return reducer


class SampleSearch:
    """The nearest fitted vectors of new ones, for :meth:`UmapModel.transform` (not pynndescent's index).

    pynndescent's query gets stuck in the wrong cluster for ~1 in 4 vectors on well-clustered 512-d
    data (recall@15 0.78 on bench/projection.py's data at any ``epsilon``), which puts new images in
    the wrong place on the map. This searches exactly (blocked matrix products) for small batches,
    and with an hnswlib graph over the sample, built on first need, for large ones. Pickling keeps
    only the sample (the graph is rebuilt on need).
    """

    _angular_trees = True  # read by UMAP.transform to choose pynndescent's epsilon, unused here
    #: Up to this many (query, sample) pairs per call are scored exactly.
    EXACT_PAIRS = 200_000_000

    def __init__(self, sample: np.ndarray):
        self.sample = sample
        self._graph: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"sample": self.sample}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.sample, self._graph = state["sample"], None

    def query(self, vectors: np.ndarray, k: int, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the sample and cosine distances of each vector's ``k`` nearest, nearest first."""
        vectors = np.asarray(vectors, np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(vectors) * len(self.sample) > self.EXACT_PAIRS and self._hnsw() is not None:
            labels, distances = self._graph.knn_query(vectors, k=k)
            return labels.astype(np.int32), np.maximum(distances, 0).astype(np.float32)
        indices = np.zeros((len(vectors), k), np.int32)
        distances = np.zeros((len(vectors), k), np.float32)
        n = len(self.sample)
        norms = np.maximum(np.linalg.norm(self.sample, axis=1), 1e-12)
        step = max(1, 50_000_000 // max(1, n))
        scores = np.full((min(step, len(vectors)), -(-n // GROUP) * GROUP), -np.inf, np.float32)
        for start in range(0, len(vectors), step):
            block = vectors[start : start + step]
            scores[: len(block), :n] = (block @ self.sample.T) / norms
            best, values = top_k_rows(scores[: len(block)], k)
            indices[start : start + len(block)] = best
            distances[start : start + len(block)] = 1 - values
        return indices, np.maximum(distances, 0)

    def _hnsw(self) -> Any:
        if self._graph is None:
            try:
                import hnswlib
            except ImportError:
                return None
            sample = self.sample / np.maximum(np.linalg.norm(self.sample, axis=1, keepdims=True), 1e-12)
            graph = hnswlib.Index(space="ip", dim=sample.shape[1])
            graph.init_index(max_elements=len(sample), ef_construction=40, M=16)  # quick to build; ef 128 makes up
            graph.add_items(sample)
            graph.set_ef(128)  # recall@15 0.98 on 100k clustered vectors (0.96 at ef 64)
            self._graph = graph
        return self._graph


@contextmanager
def quiet_umap() -> Iterator[None]:
    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so every time
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        # picsift places new points itself (UmapModel.transform), so UMAP's own search index is never needed
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)
        yield
