"""Analyses over a library's embeddings: :class:`Analysis` gives :class:`~picsift.Library` its ``sample``
(diverse samples, :mod:`picsift.analysis.sampling`), ``outliers`` and ``near_duplicates``
(:mod:`picsift.analysis.neighbours`). They are pure queries returning an
:class:`~picsift.query.imageset.ImageSet`; the numpy work is in those modules."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotIndexedError, PicsiftError
from ..query.imageset import ImageSet
from ..query.scope import Scope
from ..query.steps import NearDuplicates, Outliers, Recipe, Sample
from .clustering import rows_view
from .graph import NeighbourGraph, graph_typicality
from .neighbours import near_duplicates, outlier_scores, outliers, pair_groups
from .sampling import sample_positions

if TYPE_CHECKING:
    from ..core.store import EmbeddingStore
    from ..index import VectorIndex

#: Up to this many images the neighbours are exact (blocked matrix products); above it the hnsw index
#: answers when the library uses it.
EXACT_UP_TO = 100_000
#: The whole library as a scope.
LIBRARY = Scope()


class Analysis:
    """Sampling, outliers and near duplicates over an embedding store.

    Parameters
    ----------
    store, index
        Give the embedding store and the vector index when asked (they load lazily).
    index_name
        The index backend's name (only ``hnsw`` answers neighbour queries for very large libraries).
    root
        The image folder (named in errors).
    model
        The model spec's text, recorded in recipes.
    labelled
        The ids of every image with objects or image tags (for ``exclude_labelled``).
    graph
        Gives the library's neighbour graph (:class:`~picsift.analysis.graph_service.Neighbours`): outliers and
        near duplicates over the whole library read it; within a scope, neighbours are found among its images.
    """

    def __init__(self, store: Callable[[], EmbeddingStore], index: Callable[[], VectorIndex], index_name: str,
                 root: Path, model: Callable[[], str], labelled: Callable[[], set[str]],
                 graph: Callable[[bool], NeighbourGraph] | None = None):
        self._store, self._index, self.index_name = store, index, index_name
        self.root, self._model, self._labelled = root, model, labelled
        self._graph = graph

    def sample(
        self, n: int = 50, *, method: str = "random", clusters: int | None = None, seed: int = 0,
        scope: Scope = LIBRARY, exclude: Scope | None = None, exclude_labelled: bool = False,
        uncertainty: Mapping[str, float] | Sequence[float] | np.ndarray | None = None, pool: int | None = None,
    ) -> ImageSet:
        """A diverse sample of ``n`` images of ``scope`` (see :meth:`picsift.Library.sample`)."""
        snapshot = self._store().snapshot()
        if not len(snapshot):
            raise NotIndexedError(f"no images of {self.root} are embedded yet; run update() first")
        found = scope.positions(snapshot)
        positions = np.arange(len(snapshot)) if found is None else found
        scope_ids = snapshot.ids[positions]
        left_out = set() if exclude is None or exclude.ids is None else set(exclude.ids.tolist())
        if exclude_labelled:
            left_out.update(self._labelled())
        scores = None
        if isinstance(uncertainty, Mapping):
            scores = np.array([uncertainty.get(i, np.nan) for i in scope_ids.tolist()], dtype=np.float64)
        elif uncertainty is not None:
            scores = np.asarray(uncertainty, dtype=np.float64)
        typicality = None
        if method == "typical" and self._graph is not None:  # density in the whole library, from the graph
            typicality = graph_typicality(self._graph(False).similarities)[positions]
        try:
            picked = sample_positions(rows_view(snapshot.matrix, snapshot.rows[positions]), n, method=method,
                                      n_clusters=clusters, seed=seed, uncertainty=scores, pool=pool,
                                      exclude=np.isin(scope_ids, list(left_out)) if left_out else None,
                                      typicality=typicality)
        except ValueError as e:
            raise PicsiftError(str(e)) from e
        ids = scope_ids[picked]
        step = Sample(method, clusters, n, seed, scope.label, None if exclude is None else exclude.label,
                      exclude_labelled, scores is not None)
        return ImageSet(ids, recipe=Recipe(step, {"model": self._model(), "time": time.time(),
                                                  "summary": f"diverse sample ({method}, {len(ids)} images)"}))

    def outliers(self, n: int = 50, k: int = 10, scope: Scope = LIBRARY, *, progress: bool = True) -> ImageSet:
        """The ``n`` images farthest from their ``k`` nearest neighbours (see :meth:`picsift.Library.outliers`)."""
        if n < 1 or k < 1:
            raise PicsiftError(f"n and k must be at least 1, got n={n}, k={k}")
        graph = self._whole_graph(scope, progress)
        if graph is not None and k <= graph.k:
            ids = graph.ids.tolist()
            every = outlier_scores(graph.similarities[:, :k].astype(np.float32))
            positions = np.lexsort((np.arange(len(every)), -every))[:n]
            scores = every[positions]
        else:
            ids, vectors, index = self._vectors(scope)
            positions, scores = outliers(vectors, k, n, index=index, ids=ids, progress=progress)
        recipe = Recipe(Outliers(n, k, scope.label), {"model": self._model(), "time": time.time(),
                                                      "summary": f"outliers ({len(positions)}, k={k})"})
        return ImageSet(np.asarray([ids[p] for p in positions], dtype=object), scores.astype(np.float32),
                        recipe=recipe)

    def near_duplicates(self, threshold: float, scope: Scope = LIBRARY, *, progress: bool = True) -> ImageSet:
        """Groups of near-identical images (see :meth:`picsift.Library.near_duplicates`)."""
        if not 0 < threshold <= 1:
            raise PicsiftError(f"threshold={threshold!r}; valid range: (0, 1] (cosine similarity)")
        graph = self._whole_graph(scope, progress)
        if graph is not None:
            snapshot = self._store().snapshot()
            ids = graph.ids.tolist()
            a, b = graph.pairs_at_least(threshold, lambda p: snapshot.vectors(np.asarray(p)))
            groups = pair_groups(lambda p: snapshot.vectors(np.asarray(p)), a, b)
        else:
            ids, vectors, index = self._vectors(scope)
            try:
                groups = near_duplicates(vectors, threshold, index=index, ids=ids, progress=progress)
            except ValueError as e:
                raise PicsiftError(str(e)) from e
        found = [ids[p] for members, _ in groups for p in members]
        similarity = (np.concatenate([s for _, s in groups]) if groups else np.zeros(0)).astype(np.float32)
        group = np.repeat(np.arange(1, len(groups) + 1), [len(m) for m, _ in groups]).astype(np.int64)
        recipe = Recipe(NearDuplicates(threshold, scope.label), {
            "model": self._model(), "time": time.time(), "group_sizes": [len(m) for m, _ in groups],
            "summary": f"near duplicates ({len(groups)} groups, similarity >= {threshold})"})
        return ImageSet(np.asarray(found, dtype=object), similarity, recipe=recipe,
                        columns={"group": group, "similarity": similarity})

    def _whole_graph(self, scope: Scope, progress: bool) -> NeighbourGraph | None:
        """The neighbour graph when ``scope`` is the whole library (None: find neighbours among the scope's)."""
        if self._graph is None or scope.ids is not None:
            return None
        if not len(self._store().snapshot()):
            raise NotIndexedError(f"no images of {self.root} are embedded yet; run update() "
                                  "(CLI: picsift index FOLDER) first")
        return self._graph(progress)

    def _vectors(self, scope: Scope) -> tuple[list[str], np.ndarray, VectorIndex | None]:
        """Ids and vectors in scope, and the index to find neighbours with (None: exact)."""
        snapshot = self._store().snapshot()
        if not len(snapshot):
            raise NotIndexedError(f"no images of {self.root} are embedded yet; run update() "
                                  "(CLI: picsift index FOLDER) first")
        found = scope.positions(snapshot)
        positions = np.arange(len(snapshot)) if found is None else found
        use_index = found is None and len(positions) > EXACT_UP_TO and self.index_name == "hnsw"
        return snapshot.ids[positions].tolist(), snapshot.vectors(positions), self._index() if use_index else None
