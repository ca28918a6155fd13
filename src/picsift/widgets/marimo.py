"""The app in marimo: each part is an anywidget, shown with ``mo.ui.anywidget`` and laid out with marimo's
own stacks (marimo shows anywidgets, not ipywidgets' boxes and links).

In a marimo notebook::

    import marimo as mo
    import picsift
    from picsift.widgets.marimo import layout

    panel = picsift.app("~/photos")
    explorer = elements(panel)["explorer"]   # bound to a name: cells that read it re-run when it changes
    panel                                    # shown by layout(panel): the same composition as in Jupyter

and, in another cell, anything that reads the map re-runs when its selection changes::

    explorer.value
    panel.selection                          # the selected ids (a box, lasso or click on the map, or tiles)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

if TYPE_CHECKING:  # the app shows itself through layout() in marimo (App._display_)
    from .panel import App

PARTS = ("prompt", "score_range", "filters", "sampler", "collections", "health", "actions", "gallery", "explorer")


def elements(panel: App) -> dict[str, Any]:
    """One ``mo.ui.anywidget`` element per part of ``panel`` (``"prompt"``, ``"gallery"``, ``"explorer"``...),
    made once per panel and kept, so that :func:`layout` shows the very elements a cell binds to names
    (marimo re-runs the cells that read an element, and only through the name it is bound to)."""
    try:
        import marimo as mo
    except ImportError as e:
        raise MissingDependencyError("picsift.widgets.marimo needs marimo: pip install marimo") from e
    made: dict[str, Any] | None = getattr(panel, "_marimo_elements", None)
    if made is None:
        panel.link_in_kernel()
        made = {name: mo.ui.anywidget(getattr(panel, name)) for name in PARTS if getattr(panel, name) is not None}
        panel._marimo_elements = made
    return made


def layout(panel: App) -> Any:
    """``panel``'s parts as marimo UI elements, laid out as :class:`~picsift.widgets.panel.App` lays them out:
    prompt; score range, filters, sampler, collections and health; actions; gallery beside the map.

    The score range then drives the gallery through Python (:meth:`App.link_in_kernel`).
    """
    import marimo as mo

    ui = elements(panel)
    side = mo.hstack([ui["score_range"], ui["filters"], ui["sampler"], ui["collections"], ui["health"]], wrap=True,
                     align="start", justify="start")
    main = [ui["gallery"]] + ([ui["explorer"]] if "explorer" in ui else [])
    return mo.vstack([ui["prompt"], side, ui["actions"], mo.hstack(main, widths=[3, 2][:len(main)], align="start")])
