"""Linked views: two explorers (or an explorer and a gallery) that share their camera and selection.

The camera is linked in the browser (``ipywidgets.jslink``): panning one map moves the other with no
kernel round trip. The selection is linked in Python: as row positions when both explorers show the
same points (no ids are built), else as ids (``traitlets.link``), guarded against echo loops.
"""

from __future__ import annotations

from typing import Any

import ipywidgets
import numpy as np
import traitlets

from .explorer import Explorer


class Link:
    """What :func:`link` made; :meth:`unlink` undoes it."""

    def __init__(self) -> None:
        self._undo: list[Any] = []

    def unlink(self) -> None:
        """Stop sharing camera and selection."""
        for undo in self._undo:
            undo()
        self._undo.clear()


def link(a: Any, b: Any, *, camera: bool = True, selection: bool = True) -> Link:
    """Share the camera (two explorers of the same dimension) and the selection between ``a`` and ``b``.

    Parameters
    ----------
    a, b
        Explorers, or an explorer and any widget with a ``selection`` trait of ids (a ``Gallery``).
    camera
        Pan, zoom and rotation follow each other (explorers only).
    selection
        A box, lasso or legend selection in one is the selection in the other.
    """
    if not isinstance(a, Explorer) and not isinstance(b, Explorer):
        raise TypeError(f"link() needs at least one Explorer, got {type(a).__name__} and {type(b).__name__}")
    made = Link()
    both = isinstance(a, Explorer) and isinstance(b, Explorer)
    if camera and both:
        camera_link = ipywidgets.jslink((a, "camera"), (b, "camera"))
        made._undo.append(camera_link.unlink)
    if selection:
        if both and len(a.ids) == len(b.ids) and np.array_equal(a.ids, b.ids):
            made._undo.append(_link_positions(a, b))
        else:
            for widget in (a, b):
                if not widget.has_trait("selection"):
                    raise TypeError(f"{type(widget).__name__} has no selection to link")
            ids_link = traitlets.link((a, "selection"), (b, "selection"))
            made._undo.append(ids_link.unlink)
    return made


def _link_positions(a: Explorer, b: Explorer) -> Any:
    busy = False

    def forward(target: Explorer) -> Any:
        def copy(positions: np.ndarray) -> None:
            nonlocal busy
            if busy:
                return
            busy = True
            try:
                target.select_indices(positions)
            finally:
                busy = False
        return copy

    to_b, to_a = forward(b), forward(a)
    a.on("select", to_b)
    b.on("select", to_a)

    def undo() -> None:
        a.off("select", to_b)
        b.off("select", to_a)
    return undo
