"""A map of labelled objects: :func:`object_explorer` draws each embedded object (its crop's vector, by PCA) as a
point of an :class:`~picsift.widgets.Explorer`, coloured by class; hovering names its class and file and shows its
image; a selection is object ids (an object set's ids: ``lib.similar(explorer.selection, objects=True)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._source import ImageSource
from .explorer import Explorer

if TYPE_CHECKING:
    from ..library import Library


def object_explorer(library: Library, within: Any = None, *, dims: int = 2, **options: Any) -> Explorer:
    """An explorer of ``library``'s labelled objects (of the object set ``within``: an object search, a saved
    object collection's name), one point per embedded object, coloured by ``class``.

    ``options`` go to :class:`~picsift.widgets.Explorer` (``point_size``, ``color_by``...). The points' frame
    (``id, image_id, class, path, x, y[, z]``) is the explorer's :attr:`~picsift.widgets.Explorer.data`.
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    frame = ImageSource(library).object_points(dims, within)
    options.setdefault("color_by", "class")
    return Explorer(data=frame, x="x", y="y", z="z" if dims == 3 else None, tooltip=["class", "path"],
                    image="path", ids="id", **options)
