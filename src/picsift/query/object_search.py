"""What a search over objects (``search(..., objects=True)``) scores, and the columns its rows carry.

Objects are scored in the model's object store (see :mod:`picsift.core.objects`), which only ``update`` writes; a
search sees the objects labelled now: a vector whose object was removed (or whose box moved) since the last
update is left out, and objects labelled since then count as pending, as images not embedded yet do.
An object result is an :class:`~picsift.query.imageset.ImageSet` of object ids whose :attr:`columns` carry each
one's ``image_id``, ``class`` and ``box`` (``[x, y, w, h]`` in pixels), so its table has the image's ``path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..core.objects import LiveObject
from ..core.store import StoreSnapshot
from .object_sets import object_columns
from .scope import Scope


@dataclass
class ObjectScope:
    """The objects a search scores: their positions in the object store's snapshot, and how many wait for update."""

    snapshot: StoreSnapshot
    positions: np.ndarray
    pending: int
    live: Mapping[str, LiveObject]

    @classmethod
    def of(cls, snapshot: StoreSnapshot, live: Mapping[str, LiveObject], scope: Scope) -> ObjectScope:
        """Live objects of ``scope``: objects of its images, or the objects it names (an object result)."""
        if scope.ids is None and _LAST_WHOLE and _LAST_WHOLE[0] is live and _LAST_WHOLE[1] is snapshot:
            return _LAST_WHOLE[2]  # every object again, nothing changed: the 100k positions are not looked up again
        wanted = list(live)
        if scope.ids is not None:
            named = set(scope.ids.tolist())
            wanted = [k for k, obj in live.items() if obj.image_id in named or k in named]
        ids = np.array(wanted, dtype="<U32") if wanted else np.zeros(0, "<U32")
        positions = snapshot.positions_of(ids)
        found = cls(snapshot, positions, len(wanted) - len(positions), live)
        if scope.ids is None:
            _LAST_WHOLE[:] = [live, snapshot, found]
        return found

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """``image_id``, ``class`` and ``box`` of each of ``ids`` (object ids of this scope)."""
        return object_columns(ids.tolist(), self.live)


#: The last whole-library object scope: (the live objects, the store snapshot, the scope). Both are replaced, not
#: changed, when labels or vectors change (:class:`~picsift.core.objects.LiveObjects`, the store's snapshots).
_LAST_WHOLE: list = []
