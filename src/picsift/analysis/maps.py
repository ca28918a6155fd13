"""``lib.maps``: the library's 2D/3D maps of its images and their k-means clusters, in one service.

Everything a map viewer needs without knowing the workspace's layout or scikit-learn: the saved maps
(:func:`~picsift.analysis.projection.update_map` keeps them in the model's ``projections/`` folder), which
one to show first (:meth:`Maps.best`), UMAP in a background thread (:meth:`Maps.in_background`) and the
cluster of every image (:meth:`Maps.clusters`).

>>> lib.maps.best(dims=2)                  # doctest: +SKIP
(ProjectionMap(method='pca', ...), True)   # PCA now; a saved UMAP map has new images to place
>>> lib.clusters(ids=lib.maps.get("pca", 2).ids)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .clustering import RowsView, cluster
from .projection import Knn, ProjectionMap, missing_from_map, update_map

if TYPE_CHECKING:
    from ..core.store import StoreSnapshot

log = logging.getLogger(__name__)

#: Cluster labels come from k-means on at most this many vectors (then every image is assigned).
CLUSTER_FIT_ROWS = 20_000
#: Images assigned to their nearest centre per block.
ASSIGN_BLOCK = 100_000


class Maps:
    """The maps of one library's embeddings (one store, one model).

    Parameters
    ----------
    snapshot
        Returns the store's current snapshot (ids, rows and the matrix they index).
    folder
        Where the maps and their fitted models are saved (the model's ``projections/`` folder);
        ``None`` keeps nothing.
    knn
        Gives the neighbour graph of the current snapshot (positions, similarities): UMAP fits start from it.
    """

    def __init__(self, snapshot: Callable[[], StoreSnapshot], folder: Path | None, knn: Knn | None = None):
        self._snapshot, self._knn = snapshot, knn
        self.folder = None if folder is None else Path(folder)

    def __repr__(self) -> str:
        return f"Maps(folder={str(self.folder)!r})"

    def missing(self, method: str = "umap", dims: int = 3) -> int | None:
        """How many embedded images the saved ``method`` map has no place for (None: no map saved)."""
        if self.folder is None:
            return None
        return missing_from_map(self.folder, method, dims, self._snapshot().ids)

    def get(self, method: str = "pca", dims: int = 3, *, refit: bool | None = None) -> ProjectionMap:
        """The ``method`` map (``"pca"`` or ``"umap"``) of every embedded image, row-aligned with its ``ids``.

        A saved map is reused (new images are placed with its model, removed ones dropped); see
        :func:`~picsift.analysis.projection.update_map` for ``refit``. UMAP is slow: see :meth:`in_background`.
        """
        return update_map(self.folder, self._snapshot(), method, dims, refit=refit, knn=self._knn)

    def best(self, dims: int = 3) -> tuple[ProjectionMap, bool]:
        """The map to show now, and whether a UMAP map is worth computing in the background.

        The saved UMAP map when it places every image (read, nothing fitted); else PCA (computed now,
        in seconds), with ``True`` when a saved UMAP map has new images to place.
        """
        snapshot = self._snapshot()
        missing = None if self.folder is None else missing_from_map(self.folder, "umap", dims, snapshot.ids)
        if missing == 0:  # nothing to place: drops removed images without reading the model
            return update_map(self.folder, snapshot, "umap", dims, refit=False), False
        return update_map(self.folder, snapshot, "pca", dims), missing is not None

    def in_background(self, method: str, dims: int, on_done: Callable[[ProjectionMap], None],
                      on_error: Callable[[BaseException], None], *, refit: bool | None = None,
                      background: bool = True) -> BackgroundProjection | None:
        """Compute :meth:`get` in a daemon thread, then call ``on_done(map)`` or ``on_error(exception)``.

        ``background=False`` computes now (errors propagate) and returns None.
        """
        snapshot = self._snapshot()

        def compute() -> ProjectionMap:
            return update_map(self.folder, snapshot, method, dims, refit=refit, knn=self._knn)

        if not background:
            on_done(compute())
            return None
        return BackgroundProjection(compute, on_done, on_error).start()

    def clusters(self, k: int | None = None, *, ids: Sequence[str] | np.ndarray | None = None,
                 seed: int = 0) -> np.ndarray | None:
        """The k-means cluster (int32) of each image: every embedded image in store order, or ``ids``.

        k-means (:func:`~picsift.analysis.clustering.cluster`, ``k`` clusters, default ``sqrt(n / 2)`` of the
        fitted sample) is fitted on a seeded sample of at most :data:`CLUSTER_FIT_ROWS` images; every image
        is then given its nearest centre (largest dot product). None for fewer than 2 images.
        """
        snapshot = self._snapshot()
        rows = snapshot.rows
        if ids is not None:
            wanted = np.asarray(ids).astype(str)
            if not np.array_equal(wanted, snapshot.ids):
                found = pd.Index(snapshot.ids).get_indexer(wanted)
                if (found < 0).any():
                    raise KeyError(f"image {str(wanted[found < 0][0])!r} is not embedded; cluster embedded images only")
                rows = rows[found]
        if len(rows) < 2:
            return None
        view = RowsView(snapshot.matrix, rows)
        fit = np.random.default_rng(seed).choice(len(view), min(len(view), CLUSTER_FIT_ROWS), replace=False)
        centres = cluster(view[np.sort(fit)], k, seed=seed).centres
        return np.concatenate([np.argmax(view[start : start + ASSIGN_BLOCK] @ centres.T, axis=1)
                               for start in range(0, len(view), ASSIGN_BLOCK)]).astype(np.int32)


class BackgroundProjection:
    """Computes a projection in a daemon thread and calls ``on_done(result)`` or ``on_error(exc)``."""

    def __init__(
        self,
        compute: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
    ):
        self._compute, self._on_done, self._on_error = compute, on_done, on_error
        self.thread = threading.Thread(target=self._run, name="picsift-projection", daemon=True)

    def start(self) -> BackgroundProjection:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            result = self._compute()
        except BaseException as e:  # reported to the widget, never lost in a thread
            log.exception("projection failed")
            self._on_error(e)
            return
        self._on_done(result)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()
