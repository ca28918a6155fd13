"""2D/3D maps of the embeddings for the explorer: PCA at once, UMAP when it has been computed.

Coordinates are float32 ``(n, dims)``, centred and scaled into ``[-1, 1]``, row-aligned with the ids
they were computed for. They are cached on disk keyed by the embedding store's version (any change
to the store is a new version), so reopening a notebook reuses the map; UMAP runs in a background
thread (:class:`BackgroundProjection`) so the explorer shows PCA meanwhile.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROJECTION_METHODS = ("pca", "umap")
#: PCA fits its axes on at most this many rows (then projects all of them).
PCA_FIT_ROWS = 50_000


def _scaled(coords: np.ndarray) -> np.ndarray:
    coords = coords - coords.mean(axis=0, keepdims=True) if len(coords) else coords
    extent = float(np.abs(coords).max()) if coords.size else 0.0
    return (coords / extent if extent > 0 else coords).astype(np.float32)


class RowsView:
    """``matrix[rows]`` without copying it: indexing reads only the rows asked for (e.g. from a memmap)."""

    def __init__(self, matrix: np.ndarray, rows: np.ndarray):
        self.matrix, self.rows = matrix, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[self.rows[index]], dtype=np.float32)


def pca(vectors: np.ndarray | RowsView, dims: int = 3, *, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """The first ``dims`` principal components of ``vectors`` (numpy only; fits on a sample, projects in chunks,
    so 1M x 512 vectors never sit in memory at once when given a :class:`RowsView`)."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, dims), np.float32)
    rng = np.random.default_rng(seed)
    fit_rows = np.arange(n) if n <= PCA_FIT_ROWS else np.sort(rng.choice(n, PCA_FIT_ROWS, replace=False))
    fit = np.asarray(vectors[fit_rows], dtype=np.float32)
    mean = fit.mean(axis=0)
    _, _, axes = np.linalg.svd(fit - mean, full_matrices=False)
    axes = axes[:dims]
    coords = np.zeros((n, dims), np.float32)  # zero-padded when there are fewer samples or features than dims
    for start in range(0, n, chunk):
        part = np.asarray(vectors[start : start + chunk], dtype=np.float32)
        coords[start : start + len(part), : len(axes)] = (part - mean) @ axes.T
    return _scaled(coords)


def umap(vectors: np.ndarray | RowsView, dims: int = 3, *, seed: int = 0) -> np.ndarray:
    """UMAP (cosine metric) of ``vectors``; needs ``umap-learn``. Slow: minutes per 100k rows on 2 cores."""
    try:
        import umap as umap_learn
    except ImportError as e:
        raise ImportError('UMAP maps need umap-learn: pip install "picsift[app]"') from e
    vectors = vectors[np.arange(len(vectors))] if isinstance(vectors, RowsView) else np.asarray(vectors, np.float32)
    if len(vectors) < 5:  # UMAP needs a handful of neighbours; PCA says as much for tiny sets
        return pca(vectors, dims, seed=seed)
    reducer = umap_learn.UMAP(n_components=dims, metric="cosine", random_state=seed, n_jobs=1,
                              n_neighbors=min(15, len(vectors) - 1), init="random" if len(vectors) < 50 else "spectral")
    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so every time
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return _scaled(reducer.fit_transform(vectors))


def project(vectors: np.ndarray | RowsView, method: str = "pca", dims: int = 3, *, seed: int = 0) -> np.ndarray:
    """Coordinates by ``method`` (``"pca"`` or ``"umap"``) in ``dims`` (2 or 3) dimensions."""
    if method not in PROJECTION_METHODS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(PROJECTION_METHODS)}")
    if dims not in (2, 3):
        raise ValueError(f"dims={dims!r}; valid choices: 2, 3")
    return pca(vectors, dims, seed=seed) if method == "pca" else umap(vectors, dims, seed=seed)


def cache_file(folder: Path, version: int, method: str, dims: int) -> Path:
    return Path(folder) / f"{method}-{dims}d-v{version}.npy"


def cached_projection(
    folder: Path | None, version: int, vectors: Callable[[], np.ndarray | RowsView], method: str = "pca", dims: int = 3
) -> np.ndarray:
    """:func:`project`, read from / written to ``folder`` keyed by the store ``version`` (no cache if None)."""
    path = cache_file(folder, version, method, dims) if folder is not None else None
    if path is not None and path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            log.warning("ignoring unreadable projection cache %s", path)
    coords = project(vectors(), method, dims)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{method}-{dims}d-v*.npy"):
            stale.unlink(missing_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, coords)
        tmp.replace(path)  # atomic: a reader never sees half a file
    return coords


class BackgroundProjection:
    """Computes a projection in a daemon thread and calls ``on_done(coords)`` or ``on_error(exc)``."""

    def __init__(
        self,
        compute: Callable[[], np.ndarray],
        on_done: Callable[[np.ndarray], None],
        on_error: Callable[[BaseException], None],
    ):
        self._compute, self._on_done, self._on_error = compute, on_done, on_error
        self.thread = threading.Thread(target=self._run, name="picsift-projection", daemon=True)

    def start(self) -> BackgroundProjection:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            coords = self._compute()
        except BaseException as e:  # reported to the widget, never lost in a thread
            log.exception("projection failed")
            self._on_error(e)
            return
        self._on_done(coords)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()
