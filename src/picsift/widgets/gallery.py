"""The gallery: thumbnails sorted by score, filtered by a score range, virtualised in the front-end.

Python keeps the whole ordered list (ids and scores of every image in scope, best first); the
front-end gets only the sorted scores (one float32 buffer) and asks for thumbnails of the tiles it
shows, by position. Filtering by score range is a binary search over the sorted scores on both
sides, so moving the slider never re-sends the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import traitlets

from ._base import PicsiftWidget, SelectionSync
from ._protocol import ARRAY_SERIALIZERS

if TYPE_CHECKING:
    from ._source import ImageSource

ActionCallback = Callable[[str, list[str], dict[str, Any]], None]
MAX_THUMBNAILS_PER_REQUEST = 256


class Gallery(SelectionSync, PicsiftWidget):
    """Thumbnails of ``ids`` best score first, with selection and "with N selected" actions.

    Public traits: ``title``, ``limit`` (at most this many tiles), ``score_range`` (``[low, high]`` or
    ``[]``), ``selection`` (ids), ``tile_size`` (px). Actions (find similar, add to / remove from a
    collection) go to callbacks registered with :meth:`on_action` (``on("action", ...)``); ``on("select", ...)``
    callbacks get the selected display positions, ``on("show", ...)`` callbacks nothing after :meth:`show`.
    """

    _bundle = "gallery"
    events = ("action", "select", "show")
    title = traitlets.Unicode("").tag(sync=True)
    limit = traitlets.Int(1000, min=1).tag(sync=True)
    score_range = traitlets.List(traitlets.Float(), default_value=[], maxlen=2).tag(sync=True)
    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    tile_size = traitlets.Int(140, min=48, max=512).tag(sync=True)
    collection_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _count = traitlets.Int(0).tag(sync=True)
    _scores = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _has_scores = traitlets.Bool(False).tag(sync=True)
    _selected = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _version = traitlets.Int(0).tag(sync=True)

    def __init__(self, source: ImageSource | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source = source
        # the ids as given (often the store's own array, not copied) and the display order into them:
        # 1M ids are 128 MB as <U32, so the sorted order is kept as positions instead of a sorted copy
        self._given_ids = np.zeros(0, dtype="<U32")
        self._order = np.zeros(0, dtype=np.int64)
        self._rank = np.zeros(0, dtype=np.int64)  # the display position of each given id
        self.scores = np.zeros(0, np.float32)
        self.notes: dict[str, tuple[str, str]] = {}
        self._init_selection()

    # -- contents ---------------------------------------------------------------------------------
    def show(self, ids: Sequence[str] | np.ndarray, scores: np.ndarray | None = None, title: str = "",
             notes: dict[str, tuple[str, str]] | None = None) -> None:
        """Show ``ids`` sorted by ``scores`` (best first, ties by given order), or in the given order.

        ``notes`` maps ids to ``(caption, tooltip)``: the caption replaces the file name on the tile (e.g. a label
        check's ``"cats -> dogs"``), the tooltip says why.
        """
        self.notes = dict(notes or {})
        ids = np.asarray(ids, dtype="<U32")
        order = np.arange(len(ids))
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float32)
            if len(scores) != len(ids):
                raise ValueError(f"got {len(ids)} ids but {len(scores)} scores")
            order = np.argsort(-scores, kind="stable")  # best first, ties in the given order
            scores = scores[order]
        self._given_ids, self._order = ids, order
        self._rank = np.empty(len(order), dtype=np.int64)
        self._rank[order] = np.arange(len(order))
        self._rows_changed()
        self.scores = scores if scores is not None else np.zeros(0, np.float32)
        with self.hold_sync():
            self.title = title
            self._has_scores = scores is not None
            self._scores = self.scores
            self._count = len(ids)
            self.score_range = []
            self._version += 1
            self._select_ids(self.selection)
        self.emit("show")

    def __len__(self) -> int:
        return len(self._order)

    @property
    def ids(self) -> np.ndarray:
        """All ids in display order (best score first)."""
        return self._given_ids[self._order]

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """Ids at display positions."""
        return self._given_ids[self._order[positions]]

    def view(self) -> np.ndarray:
        """Positions (into :attr:`ids`) of the tiles shown now: in the score range, at most ``limit``."""
        start, stop = self._range_slice()
        return np.arange(start, min(stop, start + self.limit))

    def count_in_range(self) -> int:
        start, stop = self._range_slice()
        return stop - start

    def _range_slice(self) -> tuple[int, int]:
        if not len(self.scores) or len(self.score_range) != 2:
            return 0, len(self)
        low, high = self.score_range
        ascending = -self.scores  # sorted ascending, for searchsorted
        top = float(self.scores[0])
        start = int(np.searchsorted(ascending, -high, side="left" if high >= top else "right"))
        stop = int(np.searchsorted(ascending, -low, side="right"))
        return start, max(start, stop)

    def to_pandas(self) -> pd.DataFrame:
        """The tiles shown now as a DataFrame (rank, id, path, score)."""
        positions = self.view()
        ids = self.ids_at(positions).tolist()
        paths = self.source.paths(ids) if self.source is not None else {}
        return pd.DataFrame({
            "rank": np.arange(1, len(ids) + 1),
            "id": ids,
            "path": [str(paths[i]) if i in paths else None for i in ids],
            "score": self.scores[positions] if len(self.scores) else np.full(len(ids), np.nan, np.float32),
        })

    # -- selection (see SelectionSync) ----------------------------------------------------------
    def _row_count(self) -> int:
        return len(self)

    def _ids_at(self, positions: np.ndarray) -> np.ndarray:
        return self.ids_at(positions)

    def _id_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._given_ids, self._rank

    # -- messages ---------------------------------------------------------------------------------
    def on_action(self, callback: ActionCallback) -> None:
        """Call ``callback(action, selected_ids, content)`` for find_similar / add / remove actions."""
        self.on("action", callback)

    def _tile_positions(self, content: dict[str, Any]) -> np.ndarray:
        indices = np.asarray(content.get("indices", []), dtype=np.int64)
        bad = indices[(indices < 0) | (indices >= len(self))]
        if len(bad):
            raise IndexError(f"tile positions {bad[:5].tolist()} out of range 0..{len(self) - 1}")
        return indices

    def _on_thumbnails(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        positions = self._tile_positions(content)[:MAX_THUMBNAILS_PER_REQUEST]
        if self.source is None:
            raise ValueError("this gallery has no image source for thumbnails")
        ids = self.ids_at(positions).tolist()
        names, buffers = self.source.thumbnail_batch(ids)
        notes = [list(self.notes[i]) if i in self.notes else None for i in ids]
        self.send({"type": "thumbnails", "request_id": content.get("request_id"), "version": self._version,
                   "indices": positions.tolist(), "ids": ids, "names": names, "notes": notes}, buffers)

    def _on_detail(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        position = int(self._tile_positions({"indices": [content.get("index", -1)]})[0])
        if self.source is None:
            raise ValueError("this gallery has no image source")
        meta, image = self.source.detail(str(self.ids_at(np.array([position]))[0]))
        if len(self.scores):
            meta["score"] = round(float(self.scores[position]), 4)
        meta["rank"] = position + 1
        self.send({"type": "detail", "request_id": content.get("request_id"), "meta": meta}, [image])

    def _action(self, action: str, content: dict[str, Any]) -> None:
        selected = list(self.selection)
        if not selected:
            raise ValueError(f"{action.replace('_', ' ')} needs selected images; select tiles first")
        if not self.listened("action"):
            raise ValueError(f"{action!r} needs an app to act on it: use picsift.app() or Gallery.on_action")
        self.emit("action", action, selected, content)

    def _on_find_similar(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self._action("find_similar", content)

    def _on_add_to_collection(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self._action("add_to_collection", content)

    def _on_remove_from_collection(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self._action("remove_from_collection", content)
