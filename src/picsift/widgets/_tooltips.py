"""What the explorer's tooltip shows for a hovered point: a title, chosen fields, a thumbnail if there is one.

A point of a library's map shows its file name, thumbnail, folder, score (after a search) and the field
it is coloured by; a DataFrame row shows its id, the ``tooltip`` columns, and a thumbnail when an image
column is named; bare points show their id and coordinates. Nothing here raises for a missing source:
no thumbnail is simply an empty buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import traitlets

from ._map_data import format_value
from ._thumbnails import ThumbnailCache


class MapView(Protocol):
    """What the tooltips read from the explorer (a protocol, so this module need not import the explorer)."""

    data: pd.DataFrame | None
    source: Any
    color_fields: list[str]
    color_by: str
    tooltip: list[str]
    ids: np.ndarray
    scores: np.ndarray | None
    _clusters: np.ndarray | None
    _coords: np.ndarray

#: Fields a library's map can show besides its metadata fields (``Metadata.color_fields``).
LIBRARY_FIELDS = ("folder", "score", "path", "cluster")


class Tooltips:
    """Answers the explorer's hover requests (``thumbnails`` messages) and checks ``tooltip`` fields."""

    def __init__(self, explorer: MapView):
        self.explorer = explorer
        self.image_column: str | None = None
        self._thumbnails: ThumbnailCache | None = None
        self._values: dict[str, list[str]] = {}

    def reset(self) -> None:
        """Forget per-point values read for earlier points (call when the points change)."""
        self._values.clear()

    def valid_fields(self) -> list[str]:
        e = self.explorer
        frame = e.data
        if frame is not None:
            return [str(c) for c in frame.columns]
        if e.source is not None:
            return [*LIBRARY_FIELDS, *e.color_fields]
        return ["x", "y", "z", "cluster"]

    def check(self, fields: list[str]) -> list[str]:
        valid = self.valid_fields()
        unknown = [f for f in fields if f not in valid]
        if unknown:
            raise traitlets.TraitError(f"tooltip field {unknown[0]!r} is not shown here; valid: {', '.join(valid)}")
        return fields

    def answer(self, indices: list[int]) -> tuple[list[str], list[list[list[str]]], list[bytes]]:
        """Title, ``[[field, text], ...]`` and a WebP thumbnail (or ``b""``) for each point index."""
        e = self.explorer
        ids = e.ids[indices].tolist()
        if e.source is not None:
            names, buffers = e.source.thumbnail_batch(ids)
            return names, [self._library_fields(i) for i in indices], buffers
        frame = e.data
        if frame is not None:
            fields = [[[c, format_value(frame[c].iat[i])] for c in e.tooltip] for i in indices]
            return ids, fields, [self._thumbnail(frame[self.image_column].iat[i]) if self.image_column else b""
                                 for i in indices]
        return ids, [self._point_fields(i) for i in indices], [b""] * len(indices)

    def _library_fields(self, index: int) -> list[list[str]]:
        e = self.explorer
        wanted = ["folder", *(["score"] if e.scores is not None else [])]
        if e.color_by in e.color_fields or e.color_by == "cluster":
            wanted.append(e.color_by)
        wanted += [f for f in e.tooltip if f not in wanted]
        return [[field, self._library_value(field, index)] for field in wanted]

    def _library_value(self, field: str, index: int) -> str:
        e = self.explorer
        if field == "score" and e.scores is not None:
            return format_value(float(e.scores[index]))
        if field == "cluster":
            return format_value(None if e._clusters is None else e._clusters[index])
        if field == "path":
            assert e.source is not None
            path = e.source.paths([str(e.ids[index])]).get(str(e.ids[index]))
            return str(path) if path else "–"
        if field not in self._values:  # one query per field and point set, not one per hover
            assert e.source is not None
            self._values[field] = (e.source.folders(e.ids) if field == "folder"
                                   else e.source.library.labels.field_values(field, e.ids))
        return self._values[field][index]

    def _point_fields(self, index: int) -> list[list[str]]:
        e = self.explorer
        coords = e._coords[index]
        fields = [[axis, format_value(float(v))] for axis, v in zip("xyz", coords, strict=False)]
        if e._clusters is not None:
            fields.append(["cluster", format_value(e._clusters[index])])
        return [f for f in fields if not e.tooltip or f[0] in e.tooltip]

    def _thumbnail(self, path: Any) -> bytes:
        if path is None or (isinstance(path, float) and path != path):
            return b""
        if self._thumbnails is None:
            self._thumbnails = ThumbnailCache(None)
        try:
            return self._thumbnails.get(str(path), Path(str(path)))
        except (OSError, ValueError):  # a missing or unreadable file: the tooltip shows no picture
            return b""
