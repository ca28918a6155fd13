"""The explorer: points on a 2D/3D map, drawn with WebGL, for a library or for anyone's own data.

A library's map shows every embedded image (PCA at once, UMAP on request), coloured by cluster, score,
folder or a metadata field. The same widget shows a user's own DataFrame (``data=df, x=..., y=...``),
coloured by any column: names in the legend for categories, a colour bar for numbers.

What crosses to the browser is small and binary (see :mod:`._map_data`): float32 ``(n, 2|3)`` points once
(uint16 steps between their bounds from 100k points on), one uint8/uint16 code per point per colouring.
Zoomed in until a few hundred points are on screen, the browser draws them as their images' thumbnails,
asked for with the same ``thumbnails`` messages as the hover tooltip (``map_thumbnails`` turns this off).
A box or lasso selection comes back as int32 positions or a bit per point, whichever is smaller
(``_selected``, see :mod:`._selection`); ids are built only when someone asks for :attr:`Explorer.selection`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import traitlets

from ._base import PicsiftWidget, SelectionSync
from ._map_data import (
    MAX_CATEGORIES,
    QUANTISE_FROM,
    Colors,
    categories,
    category_colors,
    column_colors,
    continuous_colors,
    equal_ranges,
    frame_points,
    quantise,
)
from ._protocol import ARRAY_SERIALIZERS
from ._selection import SELECTION_SERIALIZERS, SelectCallback, SelectionMixin
from ._tooltips import Tooltips

if TYPE_CHECKING:
    from ._source import ImageSource

__all__ = ["COLOR_MODES", "MAX_CATEGORIES", "Explorer", "categories"]

COLOR_MODES = ("cluster", "score", "folder")  # and every metadata field of the library (Metadata.color_fields)
PickCallback = Callable[[str], None]
MAX_EXACT = 8192  # exact coordinates of at most this many points per request (a zoomed-in view of a big map)


class Explorer(SelectionMixin, SelectionSync, PicsiftWidget):
    """A map of points: pan, zoom, rotate (3D), box or lasso select, colour by a field, hover for details.

    Parameters
    ----------
    source
        A library's images (the app passes one): the map is its PCA/UMAP projection.
    points, ids, clusters
        Precomputed ``(n, 2)`` or ``(n, 3)`` coordinates instead, optionally with ids and cluster labels
        (with ``data``, ``ids`` names the column of ids; default: the index).
    data, x, y, z
        A DataFrame (or anything ``pandas.DataFrame`` accepts) and the names of its coordinate columns.
    color_by
        What colours the points: ``"cluster"``, ``"score"``, ``"folder"`` or a metadata field for a
        library's map (``"tag:weather"``, ``"class"``...); a column name (or ``"none"``) for ``data``.
    tooltip
        Fields shown when hovering a point: columns of ``data``, or metadata fields of a library.
    image
        A column of ``data`` holding image file paths: hovering shows the image's thumbnail.

    Public traits: ``dims`` (2 or 3), ``projection`` (``"pca"``, ``"umap"``; ``""`` for given points),
    ``projection_state``, ``color_by``, ``point_size``, ``drag_mode`` (``"move"``, ``"box"``,
    ``"lasso"``), ``axes`` (2D axes with ticks), ``equal_axes`` (2D: a unit of x as long as one of y; off,
    each axis fills the frame), ``map_thumbnails`` (zoomed in far enough, points with an image are drawn as
    its thumbnail: a library's map, or ``data`` with ``image``), ``camera`` (the view, written by the browser:
    ``{"center": [...], "zoom": z, "stretch": s}`` in 2D, ``{"center", "distance", "yaw", "pitch"}`` in 3D) and
    ``selection`` (ids). :attr:`selected_indices` gives the selection as row positions without
    building ids; :meth:`on_select` calls back with them.
    """

    _bundle = "explorer"
    events = ("pick", "select")
    _lazy_selection = True
    dims = traitlets.Int(3).tag(sync=True)
    projection = traitlets.Unicode("pca").tag(sync=True)
    projection_state = traitlets.Unicode("").tag(sync=True)
    color_by = traitlets.Unicode("cluster").tag(sync=True)
    color_fields = traitlets.List(traitlets.Unicode()).tag(sync=True)
    drag_mode = traitlets.Enum(("move", "box", "lasso"), default_value="move").tag(sync=True)
    point_size = traitlets.Float(3.0, min=0.5, max=32.0).tag(sync=True)
    axes = traitlets.Bool(False).tag(sync=True)
    equal_axes = traitlets.Bool(True).tag(sync=True)
    camera = traitlets.Dict().tag(sync=True)
    map_thumbnails = traitlets.Bool(True).tag(sync=True)
    tooltip = traitlets.List(traitlets.Unicode())
    selection = traitlets.List(traitlets.Unicode())  # not synced: the browser sends positions (_selected)
    exported = traitlets.Instance(pd.DataFrame, allow_none=True)
    _points = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    # [lo, hi] (one value per axis each) when _points are uint16 steps between them; [] for float32 points
    _points_bounds = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    _has_images = traitlets.Bool(False).tag(sync=True)  # a thumbnail source: a library or an image column
    _colors = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _color_kind = traitlets.Unicode("category").tag(sync=True)
    _color_span = traitlets.List(traitlets.Float(), [0.0, 1.0]).tag(sync=True)
    _color_label = traitlets.Unicode("").tag(sync=True)
    _color_choices = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _legend = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _selected = traitlets.Any(None).tag(sync=True, **SELECTION_SERIALIZERS)
    _own_points = traitlets.Bool(False).tag(sync=True)  # the user's coordinates: no UMAP, no dims switch
    _autorotate = traitlets.Bool(False).tag(sync=True)

    def __init__(self, source: ImageSource | None = None, *, points: np.ndarray | None = None,
                 ids: Sequence[Any] | np.ndarray | str | None = None, clusters: np.ndarray | None = None,
                 data: Any = None, x: str | None = None, y: str | None = None, z: str | None = None,
                 tooltip: Sequence[str] | None = None, image: str | None = None, equal_axes: bool | None = None,
                 **kwargs: Any):
        color_by = kwargs.pop("color_by", None)  # may name a metadata field or a column: checked once known
        super().__init__(**kwargs)
        self.source = source
        self._ids: np.ndarray | None = np.zeros(0, dtype="<U32")
        self._frame: pd.DataFrame | None = None
        self._coords: np.ndarray = np.zeros((0, 3), np.float32)
        self.scores: np.ndarray | None = None
        self._clusters: np.ndarray | None = None
        self._job: Any = None  # the background UMAP projection (``.thread``), if one was started
        self._init_selection()
        self._tooltips = Tooltips(self)
        self.refresh_fields()
        self.observe(self._recolor, "color_by")
        self.observe(self._redims, "dims")
        if data is not None:
            if x is None or y is None:
                raise ValueError("data needs the names of its coordinate columns: Explorer(data=df, x='...', y='...')")
            if ids is not None and not isinstance(ids, str):
                raise TypeError(f"with data, ids names a column (or None: the index), not {type(ids).__name__}")
            self.set_data(data, x, y, z, color_by=color_by, tooltip=tooltip, image=image, ids=ids,
                          equal_axes=equal_axes)
            return
        if tooltip is not None:
            self.tooltip = list(tooltip)
        if equal_axes is not None:
            self.equal_axes = equal_axes
        if color_by is not None and points is None:
            self.color_by = color_by
        if points is not None:
            self.set_points(points, ids, clusters)
            if color_by is not None:
                self.color_by = color_by
        elif source is not None:
            self.load()

    # -- what is shown ----------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Each point's id (a string), in point order."""
        if self._ids is None:
            labels = self._frame.index if self._frame is not None else pd.RangeIndex(len(self._coords))
            self._ids = np.asarray(labels.astype(str))
        return self._ids

    @property
    def data(self) -> pd.DataFrame | None:
        """The DataFrame shown (``set_data``), or None for a library's map or bare points."""
        return self._frame

    def refresh_fields(self) -> None:
        """Re-read the metadata fields the map can be coloured by (new tags, jobs)."""
        source = getattr(self, "source", None)  # None while __init__ sets the traits given
        if source is not None:
            self.color_fields = source.library.labels.color_fields()
        self._color_choices = self._choices()

    def _choices(self) -> list[str]:
        frame = getattr(self, "_frame", None)
        if frame is not None:
            return ["none", *map(str, frame.columns)]
        if getattr(self, "source", None) is not None:
            return [*COLOR_MODES, *self.color_fields]
        return ["cluster"] if getattr(self, "_clusters", None) is not None else ["none"]

    @traitlets.validate("dims")
    def _check_dims(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] not in (2, 3):
            raise traitlets.TraitError(f"dims={proposal['value']!r}; valid choices: 2, 3")
        if self._own_points and proposal["value"] != self._coords.shape[1]:
            raise traitlets.TraitError(f"dims={proposal['value']!r}: this explorer shows the given"
                                       f" {self._coords.shape[1]}D points; dims follows them")
        return int(proposal["value"])

    @traitlets.validate("color_by")
    def _check_color_by(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if value not in self._choices():
            self.refresh_fields()  # a tag or job made since the list was read
            if value not in self._choices():
                raise traitlets.TraitError(f"color_by={value!r}; valid choices: {', '.join(self._choices())}")
        return value

    @traitlets.validate("tooltip")
    def _check_tooltip(self, proposal: dict[str, Any]) -> list[str]:
        return self._tooltips.check(list(proposal["value"]))

    # -- points -----------------------------------------------------------------------------------
    def set_points(self, points: np.ndarray, ids: Sequence[Any] | np.ndarray | None = None,
                   clusters: Sequence[Any] | np.ndarray | None = None) -> None:
        """Show ``points`` (``(n, 2)`` or ``(n, 3)``), e.g. precomputed coordinates.

        ``clusters`` colours them: integers read as "cluster i", anything else as category names.
        """
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise ValueError(f"points must have shape (n, 2) or (n, 3), got {points.shape}")
        if ids is not None and len(ids) != len(points):
            raise ValueError(f"{len(ids)} ids for {len(points)} points: give one id per point")
        if clusters is not None and len(clusters) != len(points):
            raise ValueError(f"{len(clusters)} cluster labels for {len(points)} points: give one per point")
        if getattr(self, "_frame", None) is not None and getattr(self, "_own_points", False):
            self._frame = None  # bare points replace a DataFrame
        self._show_points(points, None if ids is None else np.asarray(ids).astype(str),
                          None if clusters is None else np.asarray(clusters))

    def _show_points(self, points: np.ndarray, ids: np.ndarray | None, clusters: np.ndarray | None) -> None:
        own = self.source is None
        with self.hold_sync():
            self._own_points = own
            self._coords = points
            self._ids, self._clusters = ids, clusters
            self._rows_changed()
            self._tooltips.reset()
            if own:
                self.projection = self.projection_state = ""
                self.dims = points.shape[1]
            self._color_choices = self._choices()
            if self.color_by not in self._color_choices:
                self.color_by = self._color_choices[0]
            self._positions = np.zeros(0, np.int32)
            self._selected = None
            self._has_images = self.source is not None or (
                self._frame is not None and self._tooltips.image_column is not None)
            if len(points) >= QUANTISE_FROM:
                steps, self._points_bounds = quantise(points)
                self._points = steps
            else:
                self._points_bounds = []
                self._points = points
            self._recolor()

    def set_data(self, data: Any, x: str, y: str, z: str | None = None, *, color_by: str | None = None,
                 tooltip: Sequence[str] | None = None, image: str | None = None, ids: str | None = None,
                 equal_axes: bool | None = None) -> None:
        """Show the rows of a DataFrame at columns ``x``, ``y`` (``z`` for 3D).

        ``color_by`` names a column (categories: names in the legend; numbers: a colour bar), ``tooltip``
        the columns shown on hover, ``image`` a column of image paths (a thumbnail on hover) and ``ids``
        the column whose values :attr:`selection` lists (default: the index). ``equal_axes`` (2D) draws a unit
        of x as long as one of y, as a map needs; by default it is on unless the two columns' ranges differ
        more than 4 times (then each axis fills the frame, as in a scatter plot).
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        points = frame_points(frame, x, y, z)
        for name in (image, ids):
            if name is not None and name not in frame.columns:
                raise KeyError(f"no column {name!r} in the data; columns: {', '.join(map(str, frame.columns))}")
        if self.source is not None:
            raise ValueError("this explorer shows a library's map; make another Explorer(data=...) for a DataFrame")
        self._frame = frame
        self._tooltips.image_column = image  # before _show_points, which tells the browser
        with self.hold_sync():
            self.equal_axes = equal_axes if equal_axes is not None else equal_ranges(points)
            self.color_by = "none"
            self._show_points(points, None if ids is None else frame[ids].to_numpy().astype(str), None)
            if color_by is not None:
                self.color_by = color_by
            self.tooltip = list(tooltip) if tooltip is not None else ([color_by] if color_by else [])

    def load(self, background: bool = True) -> None:
        """(Re)show the map of the library: the saved UMAP map if there is one, else PCA at once.

        Images added since the UMAP map was saved get their places from its model in the background
        (``background=False``: now); the PCA map shows meanwhile.
        """
        if self.source is None:
            return
        self.refresh_fields()
        shown, finish_umap = self.source.library.maps.best(self.dims)
        self._show(shown)
        if finish_umap:
            self.compute_umap(background=background)

    def _show(self, shown: Any) -> None:
        """Show a library's map (a :class:`~picsift.analysis.projection.ProjectionMap` from ``lib.maps``)."""
        assert self.source is not None  # only a library's map has maps
        ids = np.asarray(shown.ids).astype(str)
        clusters = self._clusters
        if clusters is None or not np.array_equal(ids, self.ids):
            clusters, self.scores = self.source.library.clusters(ids=ids), None
        self.projection, self.projection_state = shown.method, shown.method
        self._show_points(np.asarray(shown.coords, np.float32), ids, clusters)

    def _redims(self, _change: dict[str, Any]) -> None:
        if self.source is not None:
            self.load()

    def compute_umap(self, background: bool = True, refit: bool = False) -> None:
        """Replace the map with UMAP (in a thread unless ``background=False``).

        A saved UMAP map is reused: only images added since are placed, the rest keep their positions.
        ``refit=True`` fits a new UMAP on everything (the map's layout changes).
        """
        if self.source is None:
            raise ValueError("this explorer shows given points, not a library's images: there is no UMAP to compute")
        dims = self.dims

        def done(shown: Any) -> None:
            if self.dims == dims:
                self._show(shown)

        def failed(error: BaseException) -> None:
            self.projection_state = self.projection
            self.report(error)

        self.projection_state = "umap: computing…"
        job = self.source.library.maps.in_background("umap", dims, done, failed, refit=True if refit else None,
                                                     background=background)
        self._job = job if job is not None else self._job

    # -- colours ----------------------------------------------------------------------------------
    def set_scores(self, scores: np.ndarray | None) -> None:
        """Scores aligned with the points (a search over everything); colours by score from now on."""
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float32)
        if self.scores is not None and len(self.scores) != len(self._coords):
            self.scores = None
        if self.color_by == "score":
            self._recolor()
        elif self.scores is not None:
            self.color_by = "score"

    def _colorings(self) -> Colors:
        n, field = len(self._coords), self.color_by
        if self._frame is not None and field in self._frame.columns:
            return column_colors(self._frame[field], field)
        if field == "score" and self.scores is not None:
            return continuous_colors(self.scores, "score")
        if field == "folder" and self.source is not None:
            return category_colors(self.source.folders(self.ids), "folder")
        if field in self.color_fields and self.source is not None:
            return category_colors(self.source.library.labels.field_values(field, self.ids), field)
        if self._clusters is not None and field == "cluster":
            labels = self._clusters
            if np.issubdtype(labels.dtype, np.integer):
                k = int(labels.max()) + 1 if len(labels) else 0
                return Colors("category", (labels % MAX_CATEGORIES).astype(np.uint8),
                              [f"cluster {i}" for i in range(k)], label="cluster")
            return category_colors(labels, "cluster")
        return Colors("category", np.zeros(n, np.uint8), label="")

    def _recolor(self, _change: dict[str, Any] | None = None) -> None:
        colors = self._colorings()
        with self.hold_sync():
            self._color_kind, self._legend = colors.kind, colors.legend
            self._color_span, self._color_label = list(colors.span), colors.label
            self._colors = colors.codes

    @traitlets.default("selection")
    def _selection_from_positions(self) -> list[str]:
        return self.ids[self._positions].tolist() if len(self._positions) else []

    # -- messages from the browser ----------------------------------------------------------------
    def on_pick(self, callback: PickCallback) -> None:
        """Call ``callback(image_id)`` when a point is clicked (``on("pick", callback)``)."""
        self.on("pick", callback)

    def on_select(self, callback: SelectCallback) -> None:
        """Call ``callback(indices)`` (sorted int32 positions) whenever the selection changes."""
        self.on("select", callback)

    def _row_count(self) -> int:
        return len(self._coords)

    def _ids_at(self, positions: np.ndarray) -> np.ndarray:
        return self.ids[positions]

    def _id_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.ids, None

    def _index(self, content: dict[str, Any], key: str = "index") -> int:
        index = int(content.get(key, -1))
        if not 0 <= index < len(self._coords):
            raise IndexError(f"point {index} out of range 0..{len(self._coords) - 1}")
        return index

    def _on_pick(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        image_id = str(self.ids[self._index(content)])
        if not self.listened("pick"):
            raise ValueError("clicking a point searches in the app: use picsift.app() or Explorer.on_pick")
        self.emit("pick", image_id)

    def _on_thumbnails(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        indices = [self._index({"index": i}) for i in content.get("indices", [])[:16]]
        names, fields, buffers = self._tooltips.answer(indices)
        self.send({"type": "thumbnails", "request_id": content.get("request_id"), "indices": indices,
                   "ids": self.ids[indices].tolist(), "names": names, "fields": fields}, buffers)

    def _on_coordinates(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        indices = np.asarray(content.get("indices", [])[:MAX_EXACT], dtype=np.int64)
        if len(indices) and not (indices.min() >= 0 and indices.max() < len(self._coords)):
            raise IndexError(f"points out of range 0..{len(self._coords) - 1} in a coordinates request")
        exact = np.ascontiguousarray(self._coords[indices], dtype=np.float32)
        self.send({"type": "coordinates", "request_id": content.get("request_id"), "indices": indices.tolist()},
                  [exact.tobytes()])

    def _on_compute_umap(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.compute_umap(refit=bool(content.get("refit", False)))
