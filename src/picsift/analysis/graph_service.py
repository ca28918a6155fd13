""":class:`Neighbours` (``lib.neighbours``): the library's neighbour graph, kept in the workspace and fresh.

The graph (:mod:`picsift.analysis.graph`) lives in the model's folder of the workspace as ``neighbours.npz``,
written through :class:`~picsift.workspace_files.WorkspaceFiles` (a new file under a random name, renamed over
the old one in one step): a killed update leaves either the old graph or the new one, never a mix, and the next
read brings whichever it finds up to date. A graph read back is checked for shape, dtype and range before use;
one that fails (or that the workspace refuses: a link, a special file, too large) is rebuilt, with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import NotIndexedError, PicsiftError
from ..workspace_files import WorkspaceFiles
from .graph import DEFAULT_K, DRIFT_SAMPLE, NeighbourGraph, build, measure_recall, refresh

if TYPE_CHECKING:
    from ..core.store import EmbeddingStore, StoreSnapshot
    from ..index import VectorIndex

log = logging.getLogger(__name__)

GRAPH_FILE = "neighbours.npz"
#: A graph file larger than this is not one picsift wrote (1M images x 1024 neighbours x 8 bytes, and ids).
GRAPH_LIMIT = 16 * 2**30


class Neighbours:
    """The neighbour graph of a library's embedded images (``lib.neighbours``).

    Built on first need (exact up to :data:`~picsift.analysis.graph.EXACT_UP_TO` images, else through k-means
    partitions, :mod:`~picsift.analysis.graph_partitions`, whatever the index backend), saved in the workspace and
    brought up to date by :meth:`picsift.Library.update` (and by any read that finds the store changed). Every
    all-pairs analysis reads it: near duplicates, outliers, typical sampling, uniqueness, label checks, UMAP maps.

    Parameters
    ----------
    store, index
        Give the embedding store and the vector index when asked.
    index_name
        The index backend's name (shown; the graph no longer reads the index: the partitioned build was faster
        than querying hnsw, and serves every backend; see bench/README.md, issue 21).
    workspace
        The workspace folder (the graph sits in the store's folder below it).
    k
        Neighbours kept per image.

    Examples
    --------
    >>> lib.neighbours.of(lib.search("a cat", limit=3), k=5)      # doctest: +SKIP
    """

    def __init__(self, store: Callable[[], EmbeddingStore], index: Callable[[], VectorIndex], index_name: str,
                 workspace: Path, k: int = DEFAULT_K):
        self._store, self._index, self.index_name = store, index, index_name
        self.files, self.k = WorkspaceFiles(workspace), k
        self._cached: tuple[int, NeighbourGraph] | None = None

    def __repr__(self) -> str:
        return f"Neighbours(k={self.k}, index={self.index_name!r})"

    @property
    def path(self) -> Path:
        """Where the graph is kept."""
        return self._store().folder / GRAPH_FILE

    def graph(self, *, progress: bool = False) -> NeighbourGraph:
        """The graph of every embedded image, up to date (built or patched now if the store changed)."""
        snapshot = self._store().snapshot()
        if self._cached is not None and self._cached[0] == snapshot.version:
            return self._cached[1]
        return self.refresh(progress=progress, snapshot=snapshot)

    def refresh(self, *, progress: bool = True, rebuild: bool = False,
                snapshot: StoreSnapshot | None = None) -> NeighbourGraph:
        """Bring the saved graph in line with the store (``rebuild``: from scratch) and return it."""
        snapshot = self._store().snapshot() if snapshot is None else snapshot
        if not len(snapshot):
            raise NotIndexedError("no images are embedded yet; run update() first")
        old = None if rebuild else self._load()
        if old is not None and old.k == self.k and np.array_equal(old.ids, snapshot.ids):
            graph = old
        else:
            vectors = snapshot.vectors()
            if old is None or old.k != self.k:
                graph = build(snapshot.ids, vectors, self.k, progress=progress)
            else:
                graph = refresh(old, snapshot.ids, vectors, progress=progress)
            arrays: dict[str, Any] = graph.arrays()
            try:
                self.files.save_arrays(self.path, **arrays)
            except OSError as e:  # a read-only workspace: the graph still answers, from memory
                log.warning("cannot save the neighbour graph %s (%s); keeping it in memory", self.path, e)
        self._cached = (snapshot.version, graph)
        return graph

    def _load(self) -> NeighbourGraph | None:
        if not self.files.exists(self.path):
            return None
        try:
            return NeighbourGraph.from_arrays(self.files.load_arrays(self.path, GRAPH_LIMIT))
        except (OSError, ValueError) as e:
            log.warning("ignoring the neighbour graph %s (%s): rebuilding it", self.path, e)
            return None

    def of(self, ids: Sequence[str] | np.ndarray | object, k: int = 10) -> pd.DataFrame:
        """The ``k`` nearest neighbours of each of ``ids`` (image ids, or anything with ``.ids``, e.g. an
        :class:`~picsift.query.imageset.ImageSet`), from the graph.

        Returns a DataFrame with one row per (image, neighbour): ``id``, ``rank`` (1 = nearest), ``neighbour``
        and ``similarity`` (cosine). Raises :class:`~picsift.errors.PicsiftError` naming ids that are not embedded.
        """
        graph = self.graph()
        wanted = np.asarray(getattr(ids, "ids", ids), dtype=object).reshape(-1)
        if not 1 <= k <= graph.k:
            raise PicsiftError(f"k={k!r}; valid: 1 to {graph.k} (the neighbours the graph keeps)")
        rows = graph.rows_of(wanted)
        if (rows < 0).any():
            missing = wanted[rows < 0][:5].tolist()
            raise PicsiftError(f"{int((rows < 0).sum())} ids are not embedded (e.g. {missing}); run update() first")
        positions, similarities = graph.positions[rows, :k], 1.0 - graph.distances[rows, :k].astype(np.float32)
        linked = positions >= 0
        row_of, rank = np.nonzero(linked)
        return pd.DataFrame({"id": wanted[row_of], "rank": rank + 1,
                             "neighbour": graph.ids[positions[linked]],
                             "similarity": similarities[linked].astype(np.float32)})

    def recall(self, sample: int = DRIFT_SAMPLE, seed: int = 0) -> float:
        """recall@k of the graph against exact neighbours, measured now on ``sample`` random images."""
        snapshot = self._store().snapshot()
        return measure_recall(self.graph(), snapshot.vectors(), sample, seed)
