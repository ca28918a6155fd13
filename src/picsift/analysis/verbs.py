"""Analyses over a library's embeddings, as collections: :class:`AnalysisMixin` gives
:class:`~picsift.Library` its ``sample`` (diverse samples, :mod:`picsift.analysis.sampling`), ``outliers`` and
``near_duplicates`` (:mod:`picsift.analysis.neighbours`); the numpy work is in those modules."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import NotIndexedError, PicsiftError
from ..query.collections import TEMPORARY
from .neighbours import near_duplicates, outliers

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from ..core.store import EmbeddingStore, StoreSnapshot
    from ..embedding.spec import ModelSpec
    from ..index import VectorIndex

#: Up to this many images the neighbours are exact (blocked matrix products); above it the hnsw index
#: answers when the library uses it.
EXACT_UP_TO = 100_000


class AnalysisMixin:
    """Sampling, outlier and near-duplicate methods of :class:`~picsift.Library` (which provides the attributes
    below)."""

    catalog: Catalog
    root: Path
    index_name: str

    if TYPE_CHECKING:

        @property
        def spec(self) -> ModelSpec: ...

        @property
        def store(self) -> EmbeddingStore: ...

        @property
        def index(self) -> VectorIndex: ...

        def paths(self, ids: Sequence[str]) -> dict[str, Path]: ...

        def write_collection(self, name: str, ids: Sequence[str], scores: Sequence[float | None] | None = None,
                             recipe: dict[str, Any] | None = None) -> None: ...

        def _id_paths(self, ids: list[str]) -> dict[str, str]: ...

        def _collection_items(self, name: str) -> tuple[dict[str, Any], list[tuple[str, float | None, int]]]: ...

        def _scope_positions(self, snapshot: StoreSnapshot,
                             within: str | Iterable[str] | None) -> np.ndarray | None: ...

    def sample(
        self,
        n: int = 50,
        *,
        method: str = "random",
        clusters: int | None = None,
        seed: int = 0,
        within: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        exclude_labelled: bool = False,
        uncertainty: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
        pool: int | None = None,
    ) -> pd.DataFrame:
        """A diverse sample of ``n`` images, written as the temporary collection (see :mod:`picsift.analysis.sampling`).

        Parameters
        ----------
        method
            ``"random"`` (evenly across clusters), ``"centroids"``, ``"kcenter"`` or ``"typical"``.
        clusters
            Number of k-means clusters (default: ``sqrt(n_scope / 2)`` for random, ``n`` otherwise).
        within
            Sample only these image ids, or the images of this collection name.
        exclude, exclude_labelled
            Images already labelled or sampled (ids or a collection name; with ``exclude_labelled`` also
            every image with objects or image tags): never picked, and they count as covered.
        uncertainty
            Active learning: a score per image (higher = less certain), as ``{id: score}`` or aligned with
            ``within``; the sample is then drawn diversely among the ``pool`` most uncertain images.

        Returns
        -------
        pandas.DataFrame
            ``rank``, ``id``, ``path`` of the sampled images, in draw order.
        """
        from .clustering import rows_view
        from .sampling import sample_positions

        snapshot = self.store.snapshot()
        if not len(snapshot):
            raise NotIndexedError(f"no images of {self.root} are embedded yet; run update() first")
        scope = self._scope_positions(snapshot, within)
        positions = np.arange(len(snapshot)) if scope is None else scope
        scope_ids = snapshot.ids[positions]
        left_out = set(self._collection_ids(exclude) if isinstance(exclude, str) else exclude or ())
        if exclude_labelled:
            left_out.update(self.catalog.labels.labelled_ids())
        scores = None
        if isinstance(uncertainty, Mapping):
            scores = np.array([uncertainty.get(i, np.nan) for i in scope_ids.tolist()], dtype=np.float64)
        elif uncertainty is not None:
            scores = np.asarray(uncertainty, dtype=np.float64)
        try:
            picked = sample_positions(rows_view(snapshot.matrix, snapshot.rows[positions]), n, method=method,
                                      n_clusters=clusters, seed=seed, uncertainty=scores, pool=pool,
                                      exclude=np.isin(scope_ids, list(left_out)) if left_out else None)
        except ValueError as e:
            raise PicsiftError(str(e)) from e
        ids = scope_ids[picked].astype(str).tolist()
        paths = self._id_paths(ids)
        df = pd.DataFrame({"rank": np.arange(1, len(ids) + 1), "id": ids,
                           "path": [str(self.root / paths[i]) if i in paths else None for i in ids]})
        recipe = {"kind": "sample", "method": method, "n_clusters": clusters, "size": n, "seed": seed,
                  "model": self.spec.text, "within": within if isinstance(within, str) or within is None else "ids",
                  "exclude": exclude if isinstance(exclude, str) or exclude is None else "ids",
                  "exclude_labelled": exclude_labelled, "uncertainty": scores is not None, "time": time.time(),
                  "summary": f"diverse sample ({method}, {len(ids)} images)"}
        self.write_collection(TEMPORARY, ids, None, recipe)
        return df

    def _collection_ids(self, name: str) -> list[str]:
        return [item[0] for item in self._collection_items(name)[1]]

    def outliers(
        self, n: int = 50, k: int = 10, within: str | Iterable[str] | None = None, save_as: str | None = None,
        *, progress: bool = True,
    ) -> pd.DataFrame:
        """The ``n`` images farthest from their ``k`` nearest neighbours, most isolated first.

        ``score`` is ``1 - mean cosine similarity`` to those neighbours. The result replaces the
        temporary collection and, with ``save_as``, is also saved under that name.

        Parameters
        ----------
        within
            Only these image ids, or the images of this collection (neighbours are found among them).

        Returns
        -------
        pandas.DataFrame
            ``rank``, ``id``, ``path``, ``score``.
        """
        if n < 1 or k < 1:
            raise PicsiftError(f"n and k must be at least 1, got n={n}, k={k}")
        ids, vectors, index = self._analysis_scope(within)
        positions, scores = outliers(vectors, k, n, index=index, ids=ids, progress=progress)
        found = [ids[p] for p in positions]
        paths = self.paths(found)
        df = pd.DataFrame({
            "rank": np.arange(1, len(found) + 1),
            "id": found,
            "path": [str(paths[i]) if i in paths else None for i in found],
            "score": scores.astype(np.float32),
        })
        recipe = self._analysis_recipe("outliers", within, n=n, k=k, summary=f"outliers ({len(found)}, k={k})")
        self._write_results(df["id"].tolist(), df["score"].tolist(), recipe, save_as)
        return df

    def near_duplicates(
        self, threshold: float | None = None, within: str | Iterable[str] | None = None, save_as: str | None = None,
        *, progress: bool = True,
    ) -> pd.DataFrame:
        """Groups of near-identical images (cosine similarity >= ``threshold``, joined transitively).

        ``threshold`` defaults to the model's own (``ModelSpec.duplicate_threshold``: 0.95 for CLIP models,
        0.99 for ``picsift-offline``, whose embeddings sit closer together).

        Largest groups first; in each group the first image is the one the store holds first, and
        ``similarity`` is each image's similarity to it. The images, in this order, replace the
        temporary collection (scores = similarity) and, with ``save_as``, are also saved under that name.

        Returns
        -------
        pandas.DataFrame
            ``group`` (1, 2, ...), ``id``, ``path``, ``similarity``.
        """
        if threshold is None:
            threshold = self.spec.duplicate_threshold()
        ids, vectors, index = self._analysis_scope(within)
        try:
            groups = near_duplicates(vectors, threshold, index=index, ids=ids, progress=progress)
        except ValueError as e:
            raise PicsiftError(str(e)) from e
        found = [ids[p] for members, _ in groups for p in members]
        paths = self.paths(found)
        df = pd.DataFrame({
            "group": np.repeat(np.arange(1, len(groups) + 1), [len(m) for m, _ in groups]).astype(np.int64),
            "id": found,
            "path": [str(paths[i]) if i in paths else None for i in found],
            "similarity": np.concatenate([s for _, s in groups]) if groups else np.zeros(0, np.float32),
        })
        recipe = self._analysis_recipe(
            "near_duplicates", within, threshold=threshold, group_sizes=[len(m) for m, _ in groups],
            summary=f"near duplicates ({len(groups)} groups, similarity >= {threshold})")
        self._write_results(df["id"].tolist(), df["similarity"].tolist(), recipe, save_as)
        return df

    def _analysis_scope(
        self, within: str | Iterable[str] | None
    ) -> tuple[list[str], np.ndarray, VectorIndex | None]:
        """Ids and vectors in scope, and the index to find neighbours with (None: exact)."""
        snapshot = self.store.snapshot()
        if not len(snapshot):
            raise NotIndexedError(f"no images of {self.root} are embedded yet; run update() "
                                  "(CLI: picsift index FOLDER) first")
        scope = self._scope_positions(snapshot, within)
        positions = np.arange(len(snapshot)) if scope is None else scope
        use_index = scope is None and len(positions) > EXACT_UP_TO and self.index_name == "hnsw"
        return (snapshot.ids[positions].tolist(), snapshot.vectors(positions),
                self.index if use_index else None)

    def _analysis_recipe(self, kind: str, within: str | Iterable[str] | None, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "model": self.spec.text, "time": time.time(),
                "within": within if isinstance(within, str) or within is None else "ids", **fields}

    def _write_results(
        self, ids: list[str], scores: list[float | None], recipe: dict[str, Any], save_as: str | None
    ) -> None:
        if save_as is not None:
            self.write_collection(save_as, ids, scores, recipe)  # first: a bad name fails before any write
        self.catalog.write_collection(TEMPORARY, ids, scores, recipe)
