"""The app: prompt, score range, gallery, sampler, explorer and collections, linked together.

A search updates the histogram, the gallery and the explorer's colouring; the score range filters
the gallery; a selection in the gallery or the explorer is the selection in both.
"""

from __future__ import annotations

import os
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd
import traitlets

from ..library import Library
from ..search import Results
from ._source import ImageSource
from .collections_list import CollectionsList
from .explorer import Explorer
from .gallery import Gallery
from .prompt import PromptBox
from .sampler import Sampler
from .score_range import ScoreRange


class App(ipywidgets.VBox):
    """The complete AI Search panel for one library; its parts are attributes (``app.gallery``...).

    Parameters
    ----------
    library
        The library to search.
    update
        Embed new images in the background first (the prompt box shows progress).
    explorer
        Include the 3D explorer.
    """

    def __init__(self, library: Library, *, update: bool = True, explorer: bool = True, limit: int = 1000):
        self.library = library
        self.source = ImageSource(library)
        self.prompt = PromptBox(library, limit=limit)
        self.score_range = ScoreRange()
        self.gallery = Gallery(self.source, limit=limit, layout=ipywidgets.Layout(flex="3 1 0", min_width="0"))
        self.sampler = Sampler(library)
        self.collections = CollectionsList(library, view=self.gallery.to_pandas)
        self.explorer: Explorer | None = None
        self.results: Results | None = None
        self._scope_ids: np.ndarray | None = None

        self.prompt.on_submit(self._submit)
        self.gallery.on_action(self._gallery_action)
        self.sampler.on_sample(self._show_sample)
        self.collections.on_show(self._show_collection)
        # linked in the browser (no kernel round trip while dragging; the gallery's front-end then saves
        # the range back to Python) and, for ranges set from Python, here
        self._range_link = ipywidgets.jsdlink((self.score_range, "score_range"), (self.gallery, "score_range"))
        self.score_range.observe(self._on_score_range, "score_range")
        traitlets.dlink((self.prompt, "limit"), (self.gallery, "limit"))
        self.gallery.collection_names = library.collection_names()
        self.collections.observe(self._on_collections_rows, "rows")

        side = [self.score_range, self.sampler, self.collections]
        main: list[ipywidgets.Widget] = [self.gallery]
        if explorer:
            self._ensure_explorer()
            assert self.explorer is not None
            main.append(self.explorer)
        super().__init__(children=[
            self.prompt,
            ipywidgets.HBox(side, layout=ipywidgets.Layout(align_items="stretch", flex_flow="row wrap")),
            ipywidgets.HBox(main, layout=ipywidgets.Layout(align_items="stretch")),
        ])
        self.add_class("picsift-app")
        if update and not self.prompt.ready:
            self.prompt.update_library()
            self.prompt.observe(self._on_prompt_status, "status")

    def _ensure_explorer(self) -> None:
        explorer = Explorer(layout=ipywidgets.Layout(flex="2 1 0", min_width="0"))
        explorer.source = self.source
        if self.library.status()["embedded"]:
            explorer.load()
        explorer.on_pick(self._pick)
        traitlets.link((self.gallery, "selection"), (explorer, "selection"))
        self.explorer = explorer

    def _on_score_range(self, change: dict[str, Any]) -> None:
        # A range dragged in the browser already reached the gallery there. Forwarding it from here too
        # would send the gallery older ranges than the one on screen while the user drags.
        if "score_range" in self.score_range._property_lock:
            return
        self.gallery.score_range = change["new"]

    def _on_collections_rows(self, change: dict[str, Any]) -> None:
        self.gallery.collection_names = [row["name"] for row in change["new"]]

    def _on_prompt_status(self, change: dict[str, Any]) -> None:
        if change["new"].get("ready") and not change["old"].get("ready") and self.explorer is not None:
            self.explorer.load()

    # -- what the parts ask for -------------------------------------------------------------------
    def _submit(self, text: str, limit: int, mode: str) -> None:
        if mode == "diverse":
            self.sampler.size = limit if limit < 10_000 else self.sampler.size
            self.sampler.draw()
        elif mode == "similar":
            if not self.gallery.selection:
                raise ValueError("mode 'similar' searches for images like the selected ones; select some first")
            self.show_results(self.library.similar(self.gallery.selection, limit=limit), "similar to selection")
        else:
            self.show_results(self.library.search(text, limit=limit), text)

    def _gallery_action(self, action: str, ids: list[str], content: dict[str, Any]) -> None:
        if action == "find_similar":
            self.show_results(self.library.similar(ids, limit=self.prompt.limit), f"similar to {len(ids)} selected")
            return
        name = str(content.get("name", "")).strip()
        if action == "add_to_collection":
            size = self.library.add_to_collection(name, ids)
        else:
            size = self.library.remove_from_collection(name, ids)
        self.collections.notice = f"{name!r} now holds {size} images"
        self.collections.refresh()

    def _pick(self, image_id: str) -> None:
        self.gallery.selection = [image_id]
        self.show_results(self.library.similar([image_id], limit=self.prompt.limit), "similar to picked point")

    def _show_sample(self, ids: list[str], recipe: dict[str, Any]) -> None:
        self.results = None
        self.score_range.set_scores(None)
        self.gallery.show(ids, None, str(recipe.get("summary", "sample")))
        if self.explorer is not None:
            self.explorer.set_scores(None)
            self.explorer.color_by = "cluster"
            self.explorer.selection = list(ids)

    def _show_collection(self, name: str) -> None:
        df = self.library.collection(name)
        scores = None if df["score"].isna().any() else df["score"].to_numpy(np.float32)
        self.score_range.set_scores(scores)
        self.gallery.show(df["id"].to_numpy(), scores, f"collection {name!r}")

    # -- public -----------------------------------------------------------------------------------
    def show_results(self, results: Results, title: str = "") -> None:
        """Show a search's results everywhere: histogram, gallery (all of the scope), explorer colours."""
        self.results = results
        if len(results.scope_ids):  # every image in scope, with its score
            ids, scores = results.scope_ids, results.scores
        else:  # an index-only search (distribution=False): the results alone
            ids, scores = results.df["id"].to_numpy(), results.df["score"].to_numpy(np.float32)
        self.score_range.set_scores(scores)
        self.gallery.show(ids, scores, title)
        if self.explorer is not None and len(scores) == len(self.explorer.ids):
            self.explorer.set_scores(scores if np.array_equal(ids, self.explorer.ids) else None)

    def search(self, text: str, limit: int | None = None) -> Results:
        """Search as if ``text`` was typed into the prompt box."""
        self.prompt.text = text
        if limit:
            self.prompt.limit = limit
        self._submit(text, self.prompt.limit, "text")
        assert self.results is not None
        return self.results

    @property
    def df(self) -> pd.DataFrame:
        """The gallery's current view (after the score range) as a DataFrame."""
        return self.gallery.to_pandas()

    @property
    def selection(self) -> list[str]:
        return list(self.gallery.selection)


def app(folder_or_library: str | os.PathLike[str] | Library, **kwargs: Any) -> App:
    """The picsift panel for an image folder (or an open :class:`~picsift.Library`).

    Keyword arguments for :class:`~picsift.Library` (``model``, ``index``, ``workspace``...) open the
    folder; the rest (``update``, ``explorer``, ``limit``) go to :class:`App`.

    Examples
    --------
    >>> import picsift
    >>> picsift.app("~/photos")  # doctest: +SKIP
    """
    app_options = {k: kwargs.pop(k) for k in ("update", "explorer", "limit") if k in kwargs}
    library = folder_or_library if isinstance(folder_or_library, Library) else Library(folder_or_library, **kwargs)
    return App(library, **app_options)
