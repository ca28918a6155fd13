"""The explorer: every embedded image as a point on a 2D/3D map, drawn with WebGL.

Points travel once as a float32 ``(n, 3)`` buffer (z = 0 in 2D); colours as one float32 value per
point (a cluster index, a score, or a category index of a metadata field) that the shader maps to a
palette, so re-colouring after a search sends n floats and never the points again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import traitlets

from ..projection import BackgroundProjection, ProjectionMap, RowsView, missing_from_map, update_map
from ..sampling import cluster
from ._base import PicsiftWidget
from ._protocol import ARRAY_SERIALIZERS

if TYPE_CHECKING:
    from ..store import StoreSnapshot
    from ._source import ImageSource

COLOR_MODES = ("cluster", "score", "folder")  # and every metadata field of the library (Metadata.color_fields)
#: A colouring by category shows this many categories (most frequent first); the rest share "other".
MAX_CATEGORIES = 10
PickCallback = Callable[[str], None]
#: Cluster colours come from k-means on at most this many vectors (then every point is assigned).
CLUSTER_FIT_ROWS = 20_000


class Explorer(PicsiftWidget):
    """A map of the collection: pan, zoom, rotate; colour by cluster, score, folder or a metadata field;
    click to search.

    Public traits: ``dims`` (2 or 3), ``projection`` (``"pca"``, ``"umap"``), ``projection_state``,
    ``color_by`` (one of :data:`COLOR_MODES` or of ``color_fields``, e.g. ``"tag:weather"``,
    ``"job:review"``, ``"class"``), ``point_size``, ``selection`` (ids; in 2D, drag a box or a lasso
    around points, chosen with ``drag_mode`` or by holding shift for a box).
    """

    _bundle = "explorer"
    dims = traitlets.Int(3).tag(sync=True)
    projection = traitlets.Unicode("pca").tag(sync=True)
    projection_state = traitlets.Unicode("").tag(sync=True)
    color_by = traitlets.Unicode("cluster").tag(sync=True)
    color_fields = traitlets.List(traitlets.Unicode()).tag(sync=True)
    drag_mode = traitlets.Enum(("move", "box", "lasso"), default_value="move").tag(sync=True)
    point_size = traitlets.Float(3.0, min=0.5, max=32.0).tag(sync=True)
    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _points = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _colors = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _color_kind = traitlets.Unicode("category").tag(sync=True)
    _legend = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _selected = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _autorotate = traitlets.Bool(False).tag(sync=True)

    @traitlets.validate("dims")
    def _check_dims(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] not in (2, 3):
            raise traitlets.TraitError(f"dims={proposal['value']!r}; valid choices: 2, 3")
        return int(proposal["value"])

    @traitlets.validate("color_by")
    def _check_color_by(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if value not in COLOR_MODES and value not in self.color_fields:
            self.refresh_fields()  # a tag or job made since the list was read
            if value not in self.color_fields:
                raise traitlets.TraitError(
                    f"color_by={value!r}; valid choices: {', '.join(COLOR_MODES + tuple(self.color_fields))}")
        return value

    def refresh_fields(self) -> None:
        """Re-read the metadata fields the map can be coloured by (new tags, jobs)."""
        source = getattr(self, "source", None)  # None while __init__ sets the traits given
        if source is not None:
            self.color_fields = source.library.metadata.color_fields()

    def __init__(self, source: ImageSource | None = None, *, points: np.ndarray | None = None,
                 ids: np.ndarray | None = None, **kwargs: Any):
        color_by = kwargs.pop("color_by", None)  # may name a metadata field: checked once the source is known
        super().__init__(**kwargs)
        self.source = source
        self.refresh_fields()
        if color_by is not None:
            self.color_by = color_by
        self.ids = np.zeros(0, dtype="<U32")
        self.scores: np.ndarray | None = None
        self._clusters: np.ndarray | None = None
        self._callbacks: list[PickCallback] = []
        self._job: BackgroundProjection | None = None
        self._syncing = False
        self.observe(self._on_selected, "_selected")
        self.observe(self._on_selection, "selection")
        self.observe(self._recolor, "color_by")
        self.observe(self._redims, "dims")
        if points is not None:
            self.set_points(points, ids)
        elif source is not None:
            self.load()

    # -- points -----------------------------------------------------------------------------------
    def set_points(self, points: np.ndarray, ids: np.ndarray | None = None, clusters: np.ndarray | None = None) -> None:
        """Show ``points`` (``(n, 2)`` or ``(n, 3)``), e.g. precomputed coordinates."""
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise ValueError(f"points must have shape (n, 2) or (n, 3), got {points.shape}")
        if points.shape[1] == 2:
            points = np.pad(points, ((0, 0), (0, 1)))
        self.ids = np.asarray(ids, dtype="<U32") if ids is not None else np.arange(len(points)).astype("<U32")
        self._clusters = clusters
        with self.hold_sync():
            self._points = points
            self._recolor()

    def load(self, background: bool = True) -> None:
        """(Re)show the map of the library: the saved UMAP map if there is one, else PCA at once.

        Images added since the UMAP map was saved get their places from its model in the background
        (``background=False``: now); the PCA map shows meanwhile.
        """
        if self.source is None:
            return
        self.refresh_fields()
        store = self.source.library.store
        snapshot = store.snapshot()
        folder = store.folder / "projections"
        missing = missing_from_map(folder, "umap", self.dims, snapshot.ids)
        if missing == 0:  # nothing to place: drops removed images without reading the model
            self._show(snapshot, update_map(folder, snapshot, "umap", self.dims, refit=False).coords, "umap")
            return
        self._show(snapshot, update_map(folder, snapshot, "pca", self.dims).coords, "pca")
        if missing is not None:
            self.compute_umap(background=background)

    def _show(self, snapshot: StoreSnapshot, coords: np.ndarray, method: str) -> None:
        clusters = self._clusters
        if clusters is None or not np.array_equal(snapshot.ids, self.ids):
            clusters, self.scores = self._cluster(snapshot), None
        self.projection, self.projection_state = method, method
        self.set_points(coords, snapshot.ids, clusters)

    @staticmethod
    def _cluster(snapshot: StoreSnapshot) -> np.ndarray | None:
        if len(snapshot) < 2:
            return None
        view = RowsView(snapshot.matrix, snapshot.rows)
        fit = np.random.default_rng(0).choice(len(snapshot), min(len(snapshot), CLUSTER_FIT_ROWS), replace=False)
        centres = cluster(view[np.sort(fit)], seed=0).centres
        return np.concatenate([np.argmax(view[start : start + 100_000] @ centres.T, axis=1)
                               for start in range(0, len(view), 100_000)]).astype(np.int32)

    def _redims(self, _change: dict[str, Any]) -> None:
        if self.source is not None:
            self.load()

    def compute_umap(self, background: bool = True, refit: bool = False) -> None:
        """Replace the map with UMAP (in a thread unless ``background=False``).

        A saved UMAP map is reused: only images added since are placed, the rest keep their positions.
        ``refit=True`` fits a new UMAP on everything (the map's layout changes).
        """
        if self.source is None:
            raise ValueError("this explorer has no library to compute a UMAP map of")
        store = self.source.library.store
        snapshot = store.snapshot()
        dims = self.dims

        def compute() -> ProjectionMap:
            return update_map(store.folder / "projections", snapshot, "umap", dims, refit=True if refit else None)

        def done(state: ProjectionMap) -> None:
            if self.dims == dims:
                self._show(snapshot, state.coords, "umap")

        def failed(error: BaseException) -> None:
            self.projection_state = self.projection
            self.report(error)

        self.projection_state = "umap: computing…"
        if background:
            self._job = BackgroundProjection(compute, done, failed).start()
        else:
            done(compute())

    # -- colours ----------------------------------------------------------------------------------
    def set_scores(self, scores: np.ndarray | None) -> None:
        """Scores aligned with the points (a search over everything); colours by score from now on."""
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float32)
        if self.scores is not None and len(self.scores) != len(self.ids):
            self.scores = None
        if self.color_by == "score":
            self._recolor()
        elif self.scores is not None:
            self.color_by = "score"

    def _recolor(self, _change: dict[str, Any] | None = None) -> None:
        n = len(self.ids)
        if self.color_by == "score" and self.scores is not None:
            self._color_kind, self._legend, self._colors = "continuous", [], self.scores
        elif self.color_by == "folder" and self.source is not None:
            self._color_kind = "category"
            self._legend, self._colors = categories(self.source.folders(self.ids))
        elif self.color_by in self.color_fields and self.source is not None:
            self._color_kind = "category"
            self._legend, self._colors = categories(self.source.library.metadata.field_values(self.color_by, self.ids))
        elif self._clusters is not None:
            k = int(self._clusters.max()) + 1 if len(self._clusters) else 0
            self._color_kind, self._legend = "category", [f"cluster {i}" for i in range(k)]
            self._colors = self._clusters.astype(np.float32)
        else:
            self._color_kind, self._legend, self._colors = "category", [], np.zeros(n, np.float32)

    # -- selection and picking --------------------------------------------------------------------
    def _on_selected(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        positions = np.asarray(change["new"] if change["new"] is not None else [], dtype=np.int64)
        positions = positions[(positions >= 0) & (positions < len(self.ids))]
        self._syncing = True
        try:
            self.selection = self.ids[positions].tolist()
        finally:
            self._syncing = False

    def _on_selection(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self._selected = np.flatnonzero(np.isin(self.ids, list(change["new"]))).astype(np.int32)
        finally:
            self._syncing = False

    def on_pick(self, callback: PickCallback) -> None:
        """Call ``callback(image_id)`` when a point is clicked."""
        self._callbacks.append(callback)

    def _index(self, content: dict[str, Any], key: str = "index") -> int:
        index = int(content.get(key, -1))
        if not 0 <= index < len(self.ids):
            raise IndexError(f"point {index} out of range 0..{len(self.ids) - 1}")
        return index

    def _on_pick(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        image_id = str(self.ids[self._index(content)])
        if not self._callbacks:
            raise ValueError("clicking a point searches in the app: use picsift.app() or Explorer.on_pick")
        for callback in self._callbacks:
            callback(image_id)

    def _on_thumbnails(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if self.source is None:
            raise ValueError("this explorer has no image source for thumbnails")
        indices = [self._index({"index": i}) for i in content.get("indices", [])[:16]]
        ids = self.ids[indices].tolist()
        names, buffers = self.source.thumbnail_batch(ids)
        self.send({"type": "thumbnails", "request_id": content.get("request_id"), "indices": indices,
                   "ids": ids, "names": names}, buffers)

    def select_category(self, index: int) -> list[str]:
        """Select every point of legend entry ``index`` (a folder, a tag value, a cluster...); returns their ids."""
        if self._color_kind != "category" or not 0 <= index < len(self._legend) or not self._legend[index]:
            raise ValueError(f"no legend entry {index} to select: colour by a category (color_by={self.color_by!r})")
        self.selection = self.ids[np.asarray(self._colors) == index].tolist()
        return list(self.selection)

    def _on_select_category(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.select_category(int(content.get("index", -1)))

    def _on_compute_umap(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.compute_umap(refit=bool(content.get("refit", False)))


def categories(labels: list[str] | np.ndarray) -> tuple[list[str], np.ndarray]:
    """Legend entries (``"name (count)"``) and each point's category index (its palette colour).

    Categories come most frequent first; past :data:`MAX_CATEGORIES` - 1 of them, the rarer ones share one
    entry, ``other``. A label in parentheses means "no value" (``(no objects)``): it takes the last slot,
    the palette's grey, so that labelled points stand out; the legend is padded with ``""`` up to it.
    """
    names, codes, counts = np.unique(np.asarray(labels, dtype=str), return_inverse=True, return_counts=True)
    order = [int(i) for i in np.argsort(-counts, kind="stable")]
    none = [i for i in order if names[i].startswith("(") and names[i].endswith(")")]
    regular = [i for i in order if i not in none]
    slots = MAX_CATEGORIES - (1 if none else 0)  # the last (grey) slot is kept for "no value"
    shown, rest = (regular[: slots - 1], regular[slots - 1 :]) if len(regular) > slots else (regular, [])
    slot = np.zeros(len(names), np.int64)
    slot[shown] = np.arange(len(shown))
    legend = [f"{names[i]} ({counts[i]:,})" for i in shown]
    if rest:
        slot[rest] = len(shown)
        legend.append(f"other ({int(counts[rest].sum()):,})")
    if none:  # one label in practice; several would share the slot
        slot[none] = MAX_CATEGORIES - 1
        label = " / ".join(str(names[i]) for i in none)
        legend += [""] * (MAX_CATEGORIES - 1 - len(legend)) + [f"{label} ({int(counts[none].sum()):,})"]
    return legend, slot[codes.reshape(-1)].astype(np.float32)
