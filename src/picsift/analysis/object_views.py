"""``lib.objects``: the labelled objects as front ends see them (the widgets use the library's public API only).

Lookups of the objects labelled now (kept by :class:`~picsift.core.objects.LiveObjects`), the pixels an object's
crop covers (:func:`~picsift.core.objects.crop_region`: what the model saw), and a PCA map of the embedded objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..core.objects import LiveObject, crop_region
from .maps import Maps

if TYPE_CHECKING:
    from ..core.store import EmbeddingStore


class Objects:
    """The labelled objects of one library (``lib.objects``).

    Parameters
    ----------
    live
        The objects labelled now, by object id.
    store
        The model's object store (None before any object is embedded).
    ids_of
        The ids of what a caller passes as ``within`` (an object set, a saved object collection's name...).
    """

    def __init__(self, live: Callable[[], Mapping[str, LiveObject]], store: Callable[[], EmbeddingStore | None],
                 ids_of: Callable[[Any], np.ndarray]):
        self._live, self._store, self._ids_of = live, store, ids_of

    def of(self, ids: Sequence[str]) -> dict[str, LiveObject]:
        """The labelled objects among ``ids`` (``.image_id``, ``.cls``, ``.box`` ``[x, y, w, h]``); others are left
        out (image ids, objects no longer labelled)."""
        live = self._live()
        return {i: live[i] for i in ids if i in live}

    def on_image(self, image_id: str) -> list[LiveObject]:
        """Every labelled object of one image."""
        return [obj for obj in self._live().values() if obj.image_id == image_id]

    @staticmethod
    def crop_region(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
        """The pixels ``(left, top, right, bottom)`` of a ``width`` x ``height`` picture that an object's crop
        covers: its box with the margin it is embedded with (see :func:`picsift.core.objects.crop_region`)."""
        x, y, w, h = (float(v) for v in box)
        return crop_region((x, y, w, h), width, height)

    def map(self, dims: int = 2, within: Any = None) -> pd.DataFrame:
        """A PCA map of the embedded objects (of ``within``, when given) that are labelled now: ``id, image_id,
        class`` and ``x, y`` (``z`` in 3D), one row per object."""
        store = self._store()
        if store is None or not len(store.snapshot()):
            raise ValueError("no labelled object is embedded yet: label some, then run update()")
        shown = Maps(store.snapshot, None).get("pca", dims)
        ids, coords = np.asarray(shown.ids).astype(str), shown.coords
        keep = np.ones(len(ids), bool) if within is None else np.isin(ids, self._ids_of(within))
        found = self.of(ids[keep].tolist())
        keep &= np.array([i in found for i in ids.tolist()], bool)  # vectors of objects gone until the update
        ids, coords = ids[keep], coords[keep]
        frame = pd.DataFrame({"id": ids, "image_id": [found[i].image_id for i in ids],
                              "class": [found[i].cls for i in ids]})
        for axis, name in enumerate("xyz"[:dims]):
            frame[name] = coords[:, axis]
        return frame
