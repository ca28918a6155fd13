"""The page ``picsift serve`` shows: a title, the library's status and the app, one composition.

Each browser tab runs this in its own kernel (Voila starts one per page), so every tab has its own
prompt, selection and view over the same library.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import ipywidgets

from ..library import Library
from .panel import App, app


def _status_line(status: dict[str, Any]) -> str:
    """One line about the library for people: images, embedded, model, index, workspace."""
    images = int(status.get("images") or 0)
    embedded = int(status.get("embedded") or 0)
    parts = [f"{images:,} images", f"{embedded:,} embedded"]
    progress = status.get("progress")
    if progress:
        parts.append(f"embedding {int(progress['done']):,} / {int(progress['total']):,}")
    elif status.get("pending"):
        parts.append(f"{int(status['pending']):,} waiting to be embedded")
    parts.append(str(status.get("model_label") or status.get("model") or "no model"))
    parts.append(f"index {status.get('index')}")
    root, workspace = Path(str(status.get("root"))), Path(str(status.get("workspace")))
    if not workspace.is_relative_to(root):  # the usual FOLDER/.picsift goes without saying
        parts.append(f"workspace {workspace}")
    return " · ".join(parts)


class Page(ipywidgets.VBox):
    """A title and the library's status above :class:`~picsift.widgets.panel.App`.

    Parameters
    ----------
    the_app
        The app to show (``page.app``).
    title
        The heading; the library's folder name by default.
    """

    def __init__(self, the_app: App, title: str | None = None):
        self.app = the_app
        root = Path(the_app.library.root)
        self.title = title or f"picsift · {root.name or root}"
        self.header = ipywidgets.HTML()
        self.header.add_class("picsift-page-header")
        super().__init__(children=[self.header, the_app])
        self.add_class("picsift-page")
        self._show_status({"new": the_app.prompt.status})
        the_app.prompt.observe(self._show_status, "status")

    def _show_status(self, change: dict[str, Any]) -> None:
        status = change["new"] or self.app.library.status()
        root = html.escape(str(self.app.library.root))
        self.header.value = (
            f"<h2 class='picsift-page-title' style='margin:0.2em 0'>{html.escape(self.title)}</h2>"
            f"<div class='picsift-page-status' title='{root}'>{root} · {html.escape(_status_line(status))}</div>")


def page(folder_or_library: str | os.PathLike[str] | Library, *, title: str | None = None, **kwargs: Any) -> Page:
    """The served page for an image folder: :func:`picsift.app` (same keyword arguments) under a title and status.

    Examples
    --------
    >>> from picsift.widgets.page import page
    >>> page("~/photos", index="exact")  # doctest: +SKIP
    """
    return Page(app(folder_or_library, **kwargs), title=title)
