"""2D/3D maps of the embeddings for the explorer: PCA at once, UMAP when it has been computed.

Coordinates are float32 ``(n, dims)``, centred and scaled into about ``[-1, 1]``, row-aligned with the
ids they were computed for.

:func:`update_map` keeps a map in the workspace that survives new images: the fitted model (UMAP or
PCA axes) is saved with the coordinates, the ids they belong to, and the centre and extent that scale
them. When the store changes, only the new ids are placed (the saved model's ``transform``), removed
ids are dropped, and every other point keeps its exact position, so a user's mental map does not
jump. ``refit=True`` recomputes everything. Large sets are fitted on a seeded sample
(:data:`UMAP_FIT_ROWS`; with the neighbour graph every image up to :data:`UMAP_GRAPH_FIT_ROWS`) and the rest
is placed in chunks. UMAP runs in a background thread
(:class:`~picsift.analysis.maps.BackgroundProjection`) so the explorer shows PCA meanwhile.

A workspace travels with shared image folders, so everything read back from it is plain arrays
(``np.load(..., allow_pickle=False)``): PCA is its mean and axes, UMAP its fitted sample, their
coordinates and the numbers its ``transform`` uses. No file of a workspace can run code when loaded.
"""

from __future__ import annotations

import logging
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from ..workspace_files import WorkspaceFiles
from .clustering import RowsView as RowsView
from .projection_umap import SampleSearch as SampleSearch
from .projection_umap import UmapModel

if TYPE_CHECKING:
    from ..workspace_files import WorkspaceFiles
from ..core.store import StoreSnapshot

log = logging.getLogger(__name__)

PROJECTION_METHODS = ("pca", "umap")
#: PCA fits its axes on at most this many rows (then projects all of them).
PCA_FIT_ROWS = 20_000
#: UMAP is fitted on at most this many rows (a seeded sample); the rest are placed with its ``transform``.
UMAP_FIT_ROWS = 50_000
#: With the neighbour graph, UMAP fits every image up to this many (from the graph, no neighbour search of its
#: own); above it, the seeded sample of UMAP_FIT_ROWS. 100k: measured there (bench/README.md, issue 21; the fit
#: from a partition-built graph stalled in umap-learn's spectral start until picsift.analysis.umap_start).
UMAP_GRAPH_FIT_ROWS = 100_000
#: Rows per ``transform`` call when placing images after a fit (one progress-bar step each).
TRANSFORM_CHUNK = 50_000
#: With ``refit=None``, refit when the model saw fewer than this fraction of what a fresh fit would see.
AUTO_REFIT_BELOW = 0.5


class Model(Protocol):
    """A fitted projection: raw (unscaled) coordinates for any vectors of the fitted dimension."""

    method: str

    def transform(self, vectors: np.ndarray) -> np.ndarray: ...

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything :meth:`from_arrays` needs, as plain numeric arrays (saved without pickle)."""
        ...


Vectors = np.ndarray | RowsView


class PcaModel:
    """The first ``dims`` principal axes of the vectors it was fitted on (zero-padded when fewer exist)."""

    method = "pca"

    def __init__(self, mean: np.ndarray, axes: np.ndarray, dims: int):
        self.mean, self.axes, self.dims = mean, axes, dims

    @classmethod
    def fit(cls, sample: np.ndarray, dims: int) -> PcaModel:
        mean = sample.mean(axis=0)
        centred = sample - mean
        # The covariance's eigenvectors: a (d, d) problem, several times faster than an SVD of the sample.
        _, vectors = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        axes = vectors[:, ::-1][:, : min(dims, len(sample) - 1, sample.shape[1])].T
        axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]  # a fixed orientation
        return cls(mean, axes.astype(np.float32), dims)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        coords = np.zeros((len(vectors), self.dims), np.float32)
        coords[:, : len(self.axes)] = (np.asarray(vectors, np.float32) - self.mean) @ self.axes.T
        return coords

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": np.asarray(self.mean, np.float32), "axes": np.asarray(self.axes, np.float32),
                "dims": np.asarray(self.dims)}

    @classmethod
    def from_arrays(cls, data: Any) -> PcaModel:
        mean, axes, dims = np.asarray(data["mean"], np.float32), np.asarray(data["axes"], np.float32), int(data["dims"])
        if mean.ndim != 1 or axes.ndim != 2 or (axes.size and axes.shape[1] != len(mean)) or len(axes) > dims:
            raise ValueError(f"inconsistent PCA model: mean {mean.shape}, axes {axes.shape}, dims {dims}")
        return cls(mean, axes, dims)


#: Gives the neighbour graph: positions ``(n, k)`` and similarities of every row's nearest others.
Knn = Callable[[], tuple[np.ndarray, np.ndarray]]

_MODEL_KINDS: dict[str, type[PcaModel] | type[UmapModel]] = {"pca": PcaModel, "umap": UmapModel}


def _fit(
    vectors: Vectors, method: str, dims: int, seed: int | None, fit_rows: int, knn: Knn | None = None
) -> tuple[Model, np.ndarray, np.ndarray]:
    """Fit on a seeded sample of at most ``fit_rows``: the model, the sample's positions and raw coords.

    ``knn`` gives the neighbour graph of every row (positions, similarities): when the sample is every row,
    UMAP starts from it (``precomputed_knn``) instead of searching neighbours itself."""
    n = len(vectors)
    rows = np.arange(n) if n <= fit_rows else np.sort(np.random.default_rng(seed).choice(n, fit_rows, replace=False))
    sample = np.asarray(vectors[rows], dtype=np.float32)
    model: Model
    if method == "umap" and len(sample) >= 5:
        model, coords = UmapModel.fit(sample, dims, seed, knn() if knn is not None and len(rows) == n else None)
    else:  # UMAP needs a handful of neighbours; PCA says as much for tiny sets
        model = PcaModel.fit(sample, dims)
        coords = model.transform(sample)
    return model, rows, coords


def _place(model: Model, vectors: Vectors, positions: np.ndarray, chunk: int, progress: bool) -> np.ndarray:
    """Raw coordinates of ``vectors[positions]`` by ``model.transform``, chunk by chunk."""
    out = np.zeros((len(positions), 0), np.float32)
    parts = []
    with tqdm(total=len(positions), desc="Placing images on the map", unit="img",
              disable=not progress or len(positions) <= chunk) as bar:
        for start in range(0, len(positions), chunk):
            parts.append(model.transform(vectors[positions[start : start + chunk]]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else out


def _projected(vectors: Vectors, method: str, dims: int, seed: int | None, fit_rows: int, chunk: int,
               progress: bool = False) -> np.ndarray:
    n = len(vectors)
    if n == 0:
        return np.zeros((0, dims), np.float32)
    model, rows, fitted = _fit(vectors, method, dims, seed, fit_rows)
    coords = np.zeros((n, dims), np.float32)
    coords[rows] = fitted
    rest = np.setdiff1d(np.arange(n), rows)
    coords[rest] = _place(model, vectors, rest, chunk, progress).reshape(len(rest), dims)
    return _scaled(coords)


def _scaled(coords: np.ndarray) -> np.ndarray:
    centre, extent = _frame(coords)
    return ((coords - centre) / extent).astype(np.float32)


def _frame(coords: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and extent that map ``coords`` into [-1, 1] (kept with a saved map for later points)."""
    centre = coords.mean(axis=0) if len(coords) else np.zeros(coords.shape[1], np.float32)
    extent = float(np.abs(coords - centre).max()) if coords.size else 0.0
    return centre.astype(np.float32), extent if extent > 0 else 1.0


def pca(vectors: Vectors, dims: int = 3, *, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """The first ``dims`` principal components of ``vectors`` (numpy only; fits on a sample, projects in chunks,
    so 1M x 512 vectors never sit in memory at once when given a :class:`RowsView`)."""
    return _projected(vectors, "pca", dims, seed, PCA_FIT_ROWS, chunk)


def umap(vectors: Vectors, dims: int = 3, *, seed: int | None = 0, fit_rows: int = UMAP_FIT_ROWS) -> np.ndarray:
    """UMAP (cosine metric) of ``vectors``, fitted on at most ``fit_rows`` of them; needs ``umap-learn``.

    Slow: about a minute per 10k fitted rows on 2 cores; placing the rest costs far less per row.
    """
    return _projected(vectors, "umap", dims, seed, fit_rows, TRANSFORM_CHUNK)


def project(vectors: Vectors, method: str = "pca", dims: int = 3, *, seed: int = 0) -> np.ndarray:
    """Coordinates by ``method`` (``"pca"`` or ``"umap"``) in ``dims`` (2 or 3) dimensions."""
    _check(method, dims)
    return pca(vectors, dims, seed=seed) if method == "pca" else umap(vectors, dims, seed=seed)


def _check(method: str, dims: int) -> None:
    if method not in PROJECTION_METHODS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(PROJECTION_METHODS)}")
    if dims not in (2, 3):
        raise ValueError(f"dims={dims!r}; valid choices: 2, 3")


# -- incremental maps saved in the workspace ------------------------------------------------------
@dataclass
class ProjectionMap:
    """A map of some ids: scaled coordinates, and how they were made.

    ``fitted`` is the number of images the model was fitted on; ``added`` how many were placed by
    the model's ``transform`` in the update that returned this map; ``refitted`` whether that update
    fitted a new model.
    """

    method: str
    dims: int
    ids: np.ndarray  # (n,) str
    coords: np.ndarray  # (n, dims) float32
    version: int
    fitted: int
    centre: np.ndarray  # raw -> scaled is (raw - centre) / extent, fixed when the model is fitted
    extent: float
    token: str  # ties the coordinates to the saved model they were made with
    added: int = 0
    refitted: bool = False


def map_files(folder: Path, method: str, dims: int) -> tuple[Path, Path]:
    """The coordinates file and the model file of a saved map (both ``.npz`` of plain arrays)."""
    return Path(folder) / f"{method}-{dims}d.npz", Path(folder) / f"{method}-{dims}d.model.npz"


#: Errors a damaged or hostile ``.npz`` can raise while loading (none of them can run code).
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, MemoryError, zipfile.BadZipFile)


#: A saved map or projection model larger than this is not one picsift wrote (1M points in 3D: about 45 MB).
MAP_FILE_LIMIT = 2**30


def _files(folder: Path) -> WorkspaceFiles:
    """The model folder's files, through which the maps folder is reached without following links."""
    return WorkspaceFiles(Path(folder).parent)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    return _files(path.parent).load_arrays(f"{path.parent.name}/{path.name}", MAP_FILE_LIMIT)


def load_map(folder: Path, method: str, dims: int) -> ProjectionMap | None:
    """The saved map (coordinates only, the model is not read), or None when there is none or it is unusable."""
    path = map_files(folder, method, dims)[0]
    if not _files(folder).exists(f"{Path(folder).name}/{path.name}"):
        return None
    try:
        data = _read_arrays(path)
        state = ProjectionMap(
            method, dims, data["ids"].astype("<U32"), data["coords"].astype(np.float32),
            int(data["version"]), int(data["fitted"]), data["centre"].astype(np.float32),
            float(data["extent"]), str(data["token"]),
        )
        if (state.ids.ndim != 1 or state.coords.shape != (len(state.ids), dims) or state.centre.shape != (dims,)
                or not np.isfinite(state.extent) or state.extent <= 0):
            raise ValueError(f"ids {state.ids.shape}, coords {state.coords.shape}, centre {state.centre.shape}")
    except _UNREADABLE as e:
        log.warning("ignoring unreadable projection map %s (%s)", path, e)
        return None
    return state


def _load_model(folder: Path, method: str, dims: int, token: str) -> Model | None:
    path = map_files(folder, method, dims)[1]
    try:
        data = _read_arrays(path)  # plain arrays, bounded, no link followed: a workspace is untrusted input
        if str(data["token"]) != token:  # a crash between writing the model and the map
            log.warning("projection model %s does not match its map: refitting", path)
            return None
        kind = str(data["kind"])  # a "umap" map of under 5 images has a PCA model
        if kind not in _MODEL_KINDS:
            raise ValueError(f"model kind {kind!r}; valid: {', '.join(_MODEL_KINDS)}")
        model: Model = _MODEL_KINDS[kind].from_arrays(data)
    except _UNREADABLE as e:
        log.warning("cannot read the projection model %s (%s): refitting", path, e)
        return None
    if getattr(model, "dims", dims) != dims or (isinstance(model, UmapModel) and model.embedding.shape[1] != dims):
        log.warning("projection model %s is not %d-dimensional: refitting", path, dims)
        return None
    return model


def _save_map(folder: Path, state: ProjectionMap, model: Model | None) -> None:
    files, name = _files(folder), Path(folder).name
    coords_file, model_file = map_files(folder, state.method, state.dims)
    if model is not None:  # first the model, then the map naming its token
        arrays: dict[str, Any] = {"token": state.token, "kind": model.method, **model.arrays()}
        files.save_arrays(f"{name}/{model_file.name}", **arrays)
    files.save_arrays(f"{name}/{coords_file.name}", ids=state.ids.astype("S32"), coords=state.coords,
                      version=np.asarray(state.version), fitted=np.asarray(state.fitted), centre=state.centre,
                      extent=np.asarray(state.extent), token=np.asarray(state.token))
    # Files of older releases: version-keyed coordinates, and pickled models (never read: they could run code).
    prefix = f"{state.method}-{state.dims}d"
    for stale in files.list(name):
        if (stale.startswith(f"{prefix}-v") and stale.endswith(".npy")) or stale == f"{prefix}.model.pkl":
            files.remove(f"{name}/{stale}")


def _locate(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each of ``ids`` in ``known``, -1 where absent."""
    if not len(known):
        return np.full(len(ids), -1, np.int64)
    order = np.argsort(known)
    found = np.searchsorted(known, ids, sorter=order)
    found = order[np.minimum(found, len(known) - 1)]
    return np.where(known[found] == ids, found, -1)


def missing_from_map(folder: Path, method: str, dims: int, ids: np.ndarray) -> int | None:
    """How many of ``ids`` the saved map has no position for (None: no map saved)."""
    saved = load_map(folder, method, dims)
    return None if saved is None else int(np.count_nonzero(_locate(saved.ids, np.asarray(ids, "<U32")) < 0))


def update_map(
    folder: Path | None, snapshot: StoreSnapshot, method: str = "pca", dims: int = 3, *,
    refit: bool | None = None, fit_rows: int | None = None, seed: int | None = 0,
    chunk: int = TRANSFORM_CHUNK, progress: bool = True, knn: Knn | None = None,
) -> ProjectionMap:
    """The map of every image in ``snapshot``, row-aligned with ``snapshot.ids``, saved in ``folder``.

    Parameters
    ----------
    folder
        Where the map and its fitted model are kept (``None``: nothing is saved).
    refit
        ``False``: never refit; images new since the last update are placed with the saved model and
        every other point keeps its position. ``True``: fit a new model on everything. ``None``
        (default): as ``False``, unless the model saw fewer than half of the images a fresh fit would
        use (e.g. it was fitted on 20 images and there are 1,000 now).
    fit_rows
        Fit on a seeded sample of at most this many images (default :data:`UMAP_FIT_ROWS` for UMAP,
        :data:`UMAP_GRAPH_FIT_ROWS` for UMAP with ``knn``, :data:`PCA_FIT_ROWS` for PCA) and place the rest
        with the model, ``chunk`` at a time.
    seed
        Sampling and UMAP seed. ``None`` lets UMAP use every core, at the cost of reproducibility.
    knn
        Gives the neighbour graph of ``snapshot`` (positions, similarities; see :mod:`picsift.analysis.graph`),
        which a UMAP fit on every image starts from.
    """
    _check(method, dims)
    if not fit_rows:
        every = knn is not None and len(snapshot.ids) <= UMAP_GRAPH_FIT_ROWS
        fit_rows = PCA_FIT_ROWS if method != "umap" else UMAP_GRAPH_FIT_ROWS if every else UMAP_FIT_ROWS
    progress = progress and method == "umap"  # PCA places a million images in seconds
    vectors = RowsView(snapshot.matrix, snapshot.rows)
    ids = np.asarray(snapshot.ids, dtype="<U32")
    saved = load_map(folder, method, dims) if folder is not None and refit is not True else None
    if saved is not None and refit is None and saved.fitted < AUTO_REFIT_BELOW * min(fit_rows, len(ids)):
        log.info("%s map fitted on %d images, %d now: refitting", method, saved.fitted, len(ids))
        saved = None
    if saved is not None and saved.version == snapshot.version and np.array_equal(saved.ids, ids):
        return saved
    if saved is not None:
        where = _locate(saved.ids, ids)
        new = np.flatnonzero(where < 0)
        model = _load_model(folder, method, dims, saved.token) if len(new) and folder is not None else None
        if not len(new) or model is not None:
            coords = np.zeros((len(ids), dims), np.float32)
            coords[where >= 0] = saved.coords[where[where >= 0]]
            if model is not None:
                coords[new] = (_place(model, vectors, new, chunk, progress) - saved.centre) / saved.extent
            state = ProjectionMap(method, dims, ids, coords, snapshot.version, saved.fitted, saved.centre,
                                  saved.extent, saved.token, added=len(new))
            if folder is not None:
                _save_map(folder, state, None)
            return state
    state, model = _fit_map(vectors, ids, snapshot.version, method, dims, seed, fit_rows, chunk, progress, knn)
    if folder is not None:
        _save_map(folder, state, model)
    return state


def _fit_map(vectors: RowsView, ids: np.ndarray, version: int, method: str, dims: int, seed: int | None,
             fit_rows: int, chunk: int, progress: bool, knn: Knn | None = None) -> tuple[ProjectionMap, Model]:
    n = len(ids)
    if n == 0:
        model: Model = PcaModel(np.zeros(vectors.matrix.shape[1], np.float32), np.zeros((0, 0), np.float32), dims)
        empty = np.zeros((0, dims), np.float32)
        return ProjectionMap(method, dims, ids, empty, version, 0, np.zeros(dims, np.float32), 1.0,
                             secrets.token_hex(8), refitted=True), model
    model, rows, fitted = _fit(vectors, method, dims, seed, fit_rows, knn)
    centre, extent = _frame(fitted)
    coords = np.zeros((n, dims), np.float32)
    coords[rows] = (fitted - centre) / extent
    rest = np.setdiff1d(np.arange(n), rows)
    coords[rest] = (_place(model, vectors, rest, chunk, progress).reshape(len(rest), dims) - centre) / extent
    state = ProjectionMap(method, dims, ids, coords, version, len(rows), centre, extent, secrets.token_hex(8),
                          added=len(rest), refitted=True)
    return state, model


# -- the whole-map cache of earlier releases (vectors without ids) ---------------------------------
def cache_file(folder: Path, version: int, method: str, dims: int) -> Path:
    return Path(folder) / f"{method}-{dims}d-v{version}.npy"


def cached_projection(
    folder: Path | None, version: int, vectors: Callable[[], Vectors], method: str = "pca", dims: int = 3
) -> np.ndarray:
    """:func:`project`, read from / written to ``folder`` keyed by ``version`` (no cache if None).

    Recomputes everything for a new version; :func:`update_map` places only new images.
    """
    path = cache_file(folder, version, method, dims) if folder is not None else None
    if path is not None and _files(path.parent).exists(f"{path.parent.name}/{path.name}"):
        try:
            return np.asarray(_read_arrays(path)[""], np.float32)
        except _UNREADABLE:
            log.warning("ignoring unreadable projection cache %s", path)
    coords = project(vectors(), method, dims)
    if path is not None:
        files, name = _files(path.parent), path.parent.name
        for stale in files.list(name):
            if stale.startswith(f"{method}-{dims}d-v") and stale.endswith(".npy"):
                files.remove(f"{name}/{stale}")
        files.save_array(f"{name}/{path.name}", coords)
    return coords
