"""The app: prompt, score range, filters, gallery, sampler, explorer, collections and actions, linked.

A search updates the histogram, the gallery and the explorer's colouring; the metadata filters and
the score range narrow the gallery; a selection in the gallery or the explorer is the selection in
both; the actions act on the selection, or else on everything the gallery shows.

The app keeps the current view unfiltered (a search's whole scope with its scores, a sample, or a
collection), so changing the filters re-runs them at once without searching again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd
import traitlets

from ..library import Library
from ..query.imageset import ImageSet
from ._source import ImageSource
from .actions import Actions
from .collections_list import CollectionsList
from .explorer import Explorer
from .filters_panel import FiltersPanel
from .gallery import Gallery
from .health import HealthPanel
from .marimo import layout as marimo_layout
from .prompt import PromptBox
from .sampler import Sampler
from .score_range import ScoreRange

TEMPORARY = Library.TEMPORARY


@dataclass
class View:
    """What the gallery shows before filters and score range, and how it was made."""

    ids: np.ndarray
    scores: np.ndarray | None
    title: str
    recipe: dict[str, Any] = field(default_factory=dict)
    #: the scored scope the filters run within (a search, or a collection with scores); else the ids
    results: ImageSet | None = None
    #: captions and tooltips for some tiles (a health finding's given -> suggested labels and reasons)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def scope(self) -> ImageSet | list[str]:
        return self.results if self.results is not None else self.ids.tolist()

    def without(self, gone: set[str]) -> View:
        """This view less the images in ``gone`` (deleted ones)."""
        keep = ~np.isin(self.ids, list(gone))
        results = None if self.results is None else self.results.without(list(gone))
        return View(self.ids[keep], None if self.scores is None else self.scores[keep], self.title, self.recipe,
                    results, self.notes)


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
        self.filters = FiltersPanel(library.labels)
        self.gallery = Gallery(self.source, limit=limit, layout=ipywidgets.Layout(flex="3 1 0", min_width="0"))
        self.sampler = Sampler(library)
        self.collections = CollectionsList(library, view=self.gallery.to_pandas, recipe=self._view_recipe)
        self.actions = Actions(library, target=self._action_target)
        self.health = HealthPanel(library, target=self._selected_in_view)
        self.explorer: Explorer | None = None
        self._marimo_elements: dict[str, Any] | None = None  # picsift.widgets.marimo.elements()
        self.results: ImageSet | None = None
        self.view: View | None = None

        self.prompt.on_submit(self._submit)
        self.gallery.on_action(self._gallery_action)
        self.sampler.on_sample(self._show_sample)
        self.collections.on_show(self._show_collection)
        self.filters.observe(self._on_filters, "filters")
        self.actions.on_done(self._after_action)
        self.health.on_show(self._show_finding)
        self.gallery.observe(self._count_targets, ["selection", "score_range", "limit"])
        self.gallery.on("show", self._count_targets)
        # linked in the browser (no kernel round trip while dragging; the gallery's front-end then saves
        # the range back to Python) and, for ranges set from Python, here
        self._range_link: ipywidgets.Widget | None = ipywidgets.jsdlink((self.score_range, "score_range"),
                                                                         (self.gallery, "score_range"))
        self.score_range.observe(self._on_score_range, "score_range")
        traitlets.dlink((self.prompt, "limit"), (self.gallery, "limit"))
        self.gallery.collection_names = library.collections.names()
        self.collections.observe(self._on_collections_rows, "rows")

        side = [self.score_range, self.filters, self.sampler, self.collections, self.health]
        main: list[ipywidgets.Widget] = [self.gallery]
        if explorer:
            self._ensure_explorer()
            assert self.explorer is not None
            main.append(self.explorer)
        super().__init__(children=[
            self.prompt,
            ipywidgets.HBox(side, layout=ipywidgets.Layout(align_items="stretch", flex_flow="row wrap")),
            self.actions,
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
            explorer.load()  # reads the colour fields too
        else:
            explorer.refresh_fields()
        explorer.on_pick(self._pick)
        traitlets.link((self.gallery, "selection"), (explorer, "selection"))
        self.explorer = explorer

    def _on_score_range(self, change: dict[str, Any]) -> None:
        # A range dragged in the browser already reached the gallery there. Forwarding it from here too
        # would send the gallery older ranges than the one on screen while the user drags.
        if self._range_link is not None and self.score_range.set_by_browser("score_range"):
            return
        self.gallery.score_range = change["new"]

    def _on_filters(self, _change: dict[str, Any]) -> None:
        self.apply_filters()

    def _count_targets(self, _change: Any = None) -> None:
        self.actions.n_selected = len(self._selected_in_view())
        self.actions.n_shown = len(self.gallery.view())

    def _on_collections_rows(self, change: dict[str, Any]) -> None:
        self.gallery.collection_names = [row["name"] for row in change["new"]]

    def _on_prompt_status(self, change: dict[str, Any]) -> None:
        if change["new"].get("ready") and not change["old"].get("ready") and self.explorer is not None:
            self.explorer.load()

    def _display_(self) -> Any:
        """How marimo shows the app (it shows anywidgets, not ipywidgets' boxes): :func:`marimo_layout`."""
        return marimo_layout(self)

    def link_in_kernel(self) -> None:
        """Link the score range to the gallery through Python only, for front ends that show each widget
        on its own and run no link widgets in the page (marimo): the page then needs no ipywidgets link model."""
        if self._range_link is not None:
            self._range_link.unlink()
            self._range_link.close()
            self._range_link = None

    # -- what the parts ask for -------------------------------------------------------------------
    def _submit(self, text: str, limit: int, mode: str) -> None:
        if mode == "diverse":
            self.sampler.size = limit if limit < 10_000 else self.sampler.size
            self.sampler.draw()
        elif mode == "similar":
            if not self.gallery.selection:
                raise ValueError("mode 'similar' searches for images like the selected ones; select some first")
            self.show_results(self.library.similar(self.gallery.selection, limit=limit), "similar to selection")
        else:  # text, or objects: the labelled boxes' crops (see picsift.query.object_sets)
            self.show_results(self.library.search(text, limit=limit, objects=mode == "objects"), text)

    def _gallery_action(self, action: str, ids: list[str], content: dict[str, Any]) -> None:
        if action == "find_similar":  # objects like the selected objects, when the gallery shows an object set
            objects = self.results is not None and "image_id" in self.results.columns
            self.show_results(self.library.similar(ids, limit=self.prompt.limit, objects=objects),
                              f"similar to {len(ids)} selected")
            return
        name = str(content.get("name", "")).strip()
        if action == "add_to_collection":
            size = self.library.collections.add(name, ids)
        else:
            size = self.library.collections.remove(name, ids)
        self.collections.notice = f"{name!r} now holds {size} images"
        self.collections.refresh()

    def _pick(self, image_id: str) -> None:
        self.gallery.selection = [image_id]
        self.show_results(self.library.similar([image_id], limit=self.prompt.limit), "similar to picked point")

    def _show_sample(self, ids: list[str], recipe: dict[str, Any]) -> None:
        self.results = None
        self.show(View(np.asarray(ids, dtype="<U32"), None, str(recipe.get("summary", "sample")), dict(recipe)))
        self._temporary_shown()
        if self.explorer is not None:
            self.explorer.set_scores(None)
            self.explorer.color_by = "cluster"
            self.explorer.selection = list(ids)

    def _show_finding(self, images: ImageSet, notes: dict[str, tuple[str, str]], title: str) -> None:
        """A health finding in the gallery: most likely wrong first, given -> suggested on each card."""
        self.results = None
        scores = None if images.result_scores is None else np.asarray(images.result_scores, np.float32)
        self.show(View(images.ids.astype("<U32"), scores, title, {"summary": title}, None, notes))

    def _show_collection(self, name: str) -> None:
        last = self.results
        if name == TEMPORARY and last is not None and self.library.last is last:  # the app's search, still the last
            self.show_results(last, self.collections.temporary.get("query") or "last search")  # all scores in scope
            return
        found = self.library.collection(name)
        ids = found.ids.astype("<U32")
        scores = None if found.result_scores is None or np.isnan(found.result_scores).any() else found.result_scores
        results = None if scores is None else replace(found, scores=scores, scope_ids=ids)
        self.show(View(ids, scores, f"collection {name!r}", found.query, results))

    def _temporary_shown(self) -> None:
        """The gallery shows the temporary collection, which the last search or sample just replaced."""
        self.collections.current = TEMPORARY
        self.collections.refresh_temporary()

    def _action_target(self) -> list[str]:
        """The selected images in the gallery, or else every tile it shows (filters and score range applied)."""
        selected = self._selected_in_view()
        return selected or self.gallery.ids_at(self.gallery.view()).tolist()

    def _selected_in_view(self) -> list[str]:
        if not self.gallery.selection or not len(self.gallery):
            return []
        ids = self.gallery.ids
        return ids[np.isin(ids, list(self.gallery.selection))].tolist()

    def _after_action(self, action: str, ids: list[str], _result: Any) -> None:
        if action in ("move", "delete"):
            still_there = self.library.paths(ids)
            gone = {i for i in ids if i not in still_there}
            if gone and self.view is not None:
                searched = self.results is not None and self.results is self.view.results
                self.view = self.view.without(gone)
                if searched:  # app.results stays the search on screen, less what went
                    self.results = self.view.results
                self.gallery.selection = [i for i in self.gallery.selection if i not in gone]
            self.apply_filters()  # paths changed (move) or images went (delete): show the view again
            if gone and self.explorer is not None:
                self.explorer.load()
        if action == "create_job":
            self.filters.refresh()
            if self.explorer is not None:
                self.explorer.refresh_fields()
        self.collections.refresh()

    def _view_recipe(self) -> dict[str, Any]:
        """How the view on screen was made, for "Save view as": its source's recipe, filters, score range."""
        recipe = dict(self.view.recipe) if self.view is not None else {}
        recipe["filters"] = list(self.filters.filters)
        recipe["score_range"] = list(self.gallery.score_range) or None
        return recipe

    # -- public -----------------------------------------------------------------------------------
    def show_results(self, results: ImageSet, title: str = "") -> None:
        """Show a search's results everywhere: histogram, gallery (all of the scope), explorer colours."""
        self.results = results
        if len(results.scope_ids):  # every image in scope, with its score
            ids, scores = results.scope_ids, results.scores
        else:  # an index-only search (distribution=False): the results alone
            ids, scores = results.df["id"].to_numpy(), results.df["score"].to_numpy(np.float32)
        if results.partial:  # never presented as complete while the library is still embedding
            query = results.query
            title = f"{title} (partial: {query.get('searched_images')} of {query.get('total_images')} images embedded)"
        self.show(View(np.asarray(ids, dtype="<U32"), np.asarray(scores, np.float32), title, dict(results.query),
                       results))
        self._temporary_shown()
        if self.explorer is not None and len(scores) == len(self.explorer.ids):
            self.explorer.set_scores(scores if np.array_equal(ids, self.explorer.ids) else None)

    def show(self, view: View) -> None:
        """Make ``view`` the current one: the gallery shows it through the active filters."""
        self.view = view
        self.apply_filters()

    def apply_filters(self) -> None:
        """Show the current view AND-filtered by the active filters (histogram, gallery, count notice)."""
        view = self.view
        if view is None:
            return
        active = self.filters.active
        ids, scores = view.ids, view.scores
        if active:
            passed = self.library.filter(*active, within=view.scope()).ids
            index = pd.Index(view.ids)
            positions = index.get_indexer(passed) if index.is_unique else index.get_indexer_for(passed)
            positions = positions[positions >= 0]
            ids = view.ids[positions]
            scores = None if view.scores is None else view.scores[positions]
        self.score_range.set_scores(scores)
        self.gallery.show(ids, scores, view.title, view.notes)
        self.filters.set_counts(len(ids), len(view.ids))
        self._count_targets()

    def search(self, text: str, limit: int | None = None) -> ImageSet:
        """Search as if ``text`` was typed into the prompt box."""
        self.prompt.text = text
        if limit:
            self.prompt.limit = limit
        self._submit(text, self.prompt.limit, "text")
        assert self.results is not None
        return self.results

    @property
    def df(self) -> pd.DataFrame:
        """The gallery's current view (after filters and score range) as a DataFrame."""
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
