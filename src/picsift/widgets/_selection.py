"""The explorer's selection and view commands: positions first, ids only when asked, exports.

A box, lasso or legend selection crosses between browser and kernel as row positions (``_selected``):
int32 positions when few are selected, else one bit per point (:func:`selection_to_json`), whichever
is smaller, so that 700k of 1M points cross in 125 kB instead of 2.9 MB.
:attr:`~picsift.widgets._base.SelectionSync.selected_indices` reads them as they are; the ``selection``
trait (ids) is built from them only when something listens to it (the app's gallery) or reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._map_data import bounds
from ._protocol import view_bytes

if TYPE_CHECKING:
    from ._source import ImageSource

SelectCallback = Callable[[np.ndarray], None]


def selection_to_json(positions: np.ndarray | None, widget: Any = None) -> dict[str, Any] | None:
    """Positions as ``{view, dtype: "int32", shape}``, or as a bit per point ``{view, dtype: "uint8",
    shape, bits: n}`` (little-endian bit order) when that is smaller."""
    if positions is None:
        return None
    positions = np.ascontiguousarray(positions, dtype=np.int32)
    n = len(widget._coords) if widget is not None else 0
    if n and len(positions) * 32 > n:
        mask = np.zeros(n, bool)
        mask[positions[(positions >= 0) & (positions < n)]] = True
        packed = np.packbits(mask, bitorder="little")
        return {"view": packed.data, "dtype": "uint8", "shape": [len(packed)], "bits": n}
    return {"view": positions.view(np.uint8).data, "dtype": "int32", "shape": [len(positions)]}


def selection_from_json(value: dict[str, Any] | None, _widget: Any = None) -> np.ndarray | None:
    """The inverse of :func:`selection_to_json` (what the browser sends): sorted int32 positions."""
    if value is None:
        return None
    data = view_bytes({**value, "dtype": "uint8" if value.get("bits") is not None else value.get("dtype", "int32")})
    if value.get("bits") is not None:
        mask = np.unpackbits(np.frombuffer(data, np.uint8), count=int(value["bits"]), bitorder="little")
        return np.flatnonzero(mask).astype(np.int32)
    if value.get("dtype", "int32") != "int32":
        raise TypeError(f"a selection arrives as int32 positions or bits, not {value.get('dtype')!r}")
    return np.frombuffer(data, np.int32).copy()


SELECTION_SERIALIZERS = {"to_json": selection_to_json, "from_json": selection_from_json}


class SelectionMixin:
    """Selection, export and view commands of :class:`~picsift.widgets.Explorer` (which holds the traits)."""

    source: ImageSource | None
    scores: np.ndarray | None
    selection: list[str]
    exported: pd.DataFrame | None
    _coords: np.ndarray
    _positions: np.ndarray
    _frame: pd.DataFrame | None
    _selected: Any
    _colors: Any
    _color_kind: str
    _legend: list[str]
    color_by: str
    send: Callable[..., None]  # annotations only: the widget provides them

    if TYPE_CHECKING:
        @property
        def ids(self) -> np.ndarray: ...

        @property
        def selected_indices(self) -> np.ndarray: ...

        def _positions_of(self, ids: Sequence[str] | np.ndarray) -> np.ndarray: ...

    # -- view -------------------------------------------------------------------------------------
    def zoom_to(self, ids: Sequence[str] | np.ndarray | None = None, *, indices: np.ndarray | None = None) -> None:
        """Fit the view to some points, named by ``ids`` or by row ``indices`` (none: the selection)."""
        if indices is None:
            indices = self.selected_indices if ids is None else self._positions_of(ids)
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            raise ValueError("nothing to zoom to: give ids or indices of shown points, or select some first")
        if indices.min() < 0 or indices.max() >= len(self._coords):
            raise IndexError(f"indices out of range 0..{len(self._coords) - 1}")
        self.send({"type": "fit", "bounds": bounds(self._coords[indices])})

    def reset_view(self) -> None:
        """Fit the view to every point (as when the points were first drawn)."""
        self.send({"type": "fit", "bounds": None})

    # -- selection (kept in sync by picsift.widgets._base.SelectionSync) ------------------------
    def selected_frame(self) -> pd.DataFrame:
        """The selected rows: of ``data``, else id, path (a library's map), coordinates and score (after a search)."""
        positions = self._positions
        if self._frame is not None:
            return self._frame.iloc[positions].copy()
        frame = pd.DataFrame({"id": self.ids[positions]})
        if self.source is not None:
            paths = self.source.paths(frame["id"].tolist())
            frame["path"] = [str(paths[i]) if i in paths else None for i in frame["id"]]
        for axis, name in enumerate("xyz"[: self._coords.shape[1]]):
            frame[name] = self._coords[positions, axis]
        if self.scores is not None:
            frame["score"] = self.scores[positions]
        return frame

    def export_selection(self, collection: str | None = None) -> pd.DataFrame:
        """The selection as a DataFrame (:meth:`selected_frame`); with ``collection``, also added to that
        collection of the library (made if new), whose rows are then returned."""
        if collection is None:
            return self.selected_frame()
        if self.source is None:
            raise ValueError(f"collection={collection!r}: only a library's map has collections to add to")
        if not len(self._positions):
            raise ValueError(f"nothing to add to {collection!r}: select some points first")
        library = self.source.library
        library.collections.add(collection, self.ids[self._positions].tolist())
        return library.collection(collection).df

    def select_category(self, index: int) -> list[str]:
        """Select every point of legend entry ``index`` (a folder, a tag value, a cluster...); returns their ids."""
        if self._color_kind != "category" or not 0 <= index < len(self._legend) or not self._legend[index]:
            raise ValueError(f"no legend entry {index} to select: colour by a category (color_by={self.color_by!r})")
        self._selected = np.flatnonzero(np.asarray(self._colors) == index).astype(np.int32)
        return list(self.selection)

    def _on_select_category(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.select_category(int(content.get("index", -1)))

    def _on_export(self, _content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.exported = self.selected_frame()
        self.send({"type": "notice", "message": f"{len(self.exported):,} rows in explorer.exported"})
