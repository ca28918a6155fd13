"""Collections: saved, named image sets with the recipe that made them (``Library.collections``).

Collections live in the workspace catalog (one row per image, in rank order, with the score it had)
together with a recipe (see :mod:`picsift.query.steps`): how the collection was made, so it can be
re-run after the data changes. The temporary collection (:data:`TEMPORARY`) holds the last result the
library remembered (:meth:`picsift.Library.remember` is the one place that writes it).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import PicsiftError
from .imageset import ImageSet, by_hand
from .options import Replayer
from .scope import TEMPORARY
from .steps import FromCollection, Recipe

if TYPE_CHECKING:
    from ..core.catalog import Catalog

COMBINE_OPERATORS = ("or", "and", "not")
__all__ = ["COMBINE_OPERATORS", "TEMPORARY", "Collections", "check_name", "describe_recipe"]


class Collections:
    """Saved collections of one library.

    Parameters
    ----------
    catalog
        The workspace catalog.
    bind
        Binds the image sets read back to their library (for paths, filters, saving); default: unbound.
    replayer
        Gives the library's queries, to :meth:`rerun` recipes with; default: collections cannot be re-run.
    """

    def __init__(self, catalog: Catalog, bind: Callable[[ImageSet], ImageSet] = lambda images: images,
                 replayer: Callable[[], Replayer] | None = None):
        self.catalog, self._bind, self._replayer = catalog, bind, replayer

    def __call__(self) -> pd.DataFrame:
        warnings.warn("Library.collections() is now Library.collections.table()", DeprecationWarning, stacklevel=2)
        return self.table()

    def items(self, name: str) -> tuple[dict[str, Any], list[tuple[str, float | None, int]]]:
        """A collection's recipe and (id, score, rank) rows; an unknown name is an error listing the valid ones."""
        try:
            return self.catalog.collection_items(name)  # type: ignore[return-value]
        except KeyError:
            raise PicsiftError(
                f"no collection named {name!r}; collections: {', '.join(self.names()) or '(none)'}"
            ) from None

    def get(self, name: str = TEMPORARY) -> ImageSet:
        """A saved collection (or the temporary one: the last result remembered)."""
        recipe, rows = self.items(name)
        found = by_hand([r[0] for r in rows], [r[1] for r in rows])
        return self._bind(found.with_recipe(Recipe.from_dict(recipe)))

    def recipe(self, name: str = TEMPORARY) -> dict[str, Any]:
        """How a collection was made: query, model, thresholds, time."""
        return self.items(name)[0]

    def rows(self) -> list[tuple[str, dict[str, Any], int]]:
        """Every collection, the temporary one included, oldest first: (name, recipe, size)."""
        rows = self.catalog.collection_names()
        return [(name, json.loads(recipe), int(size)) for name, _created, recipe, size in rows]

    def summary(self, name: str) -> tuple[dict[str, Any], int]:
        """One collection's recipe and size, without reading its images (KeyError if there is none)."""
        return self.catalog.collection_summary(name)

    def names(self) -> list[str]:
        """The names of the saved collections, oldest first."""
        return [row[0] for row in self.catalog.collection_names() if row[0] != TEMPORARY]

    def table(self) -> pd.DataFrame:
        """Saved collections: name, size, creation time and the query that made them."""
        rows = [r for r in self.catalog.collection_names() if r[0] != TEMPORARY]
        return pd.DataFrame({
            "name": [r[0] for r in rows],
            "size": [r[3] for r in rows],
            "created": pd.to_datetime([r[1] for r in rows], unit="s"),
            "query": [describe_recipe(json.loads(r[2])) for r in rows],
        })

    # -- writing ------------------------------------------------------------------------------------
    def save(self, name: str, source: str | ImageSet = TEMPORARY) -> None:
        """Save an image set (default: the temporary collection, the last result) as ``name``, replacing one of
        that name."""
        check_name(name)
        if isinstance(source, ImageSet):
            self._write(name, source.ids.tolist(), _scores(source), source.query)
            return
        try:
            self.catalog.copy_collection(source, name)
        except KeyError:
            raise PicsiftError(f"no collection named {source!r} to save (run a search first)") from None

    def write(self, name: str, ids: Sequence[str], scores: Sequence[float | None] | None = None,
              recipe: Mapping[str, Any] | None = None) -> None:
        """Create or replace collection ``name`` from ids in rank order (with their scores, if any)."""
        check_name(name)
        self._write(name, ids, scores, recipe)

    def _write(self, name: str, ids: Sequence[str], scores: Sequence[float | None] | None,
               recipe: Mapping[str, Any] | None) -> None:
        recipe = {"kind": "ids", "summary": name, "time": time.time(), **(recipe or {})}
        self.catalog.write_collection(name, list(ids), None if scores is None else list(scores), recipe)

    def write_temporary(self, images: ImageSet) -> None:
        """Replace the temporary collection with ``images``. Only :meth:`picsift.Library.remember` calls this."""
        self._write(TEMPORARY, images.ids.tolist(), _scores(images), images.query)

    def add(self, name: str, ids: Sequence[str]) -> int:
        """Append images to a collection (created if missing); returns its new size."""
        exists = name in self.names()
        recipe, rows = self.items(name) if exists else ({}, [])
        known = {r[0] for r in rows}
        new = [i for i in dict.fromkeys(ids) if i not in known]
        self.write(name, [r[0] for r in rows] + new, [r[1] for r in rows] + [None] * len(new),
                   recipe if exists else None)
        return len(known) + len(new)

    def remove(self, name: str, ids: Sequence[str]) -> int:
        """Remove images from a collection; returns its new size."""
        recipe, rows = self.items(name)
        gone = set(ids)
        keep = [r for r in rows if r[0] not in gone]
        self._write(name, [r[0] for r in keep], [r[1] for r in keep], recipe)
        return len(keep)

    def rename(self, name: str, new_name: str) -> None:
        """Rename a saved collection (its images, scores and recipe stay)."""
        check_name(new_name)
        if new_name in self.names():
            raise PicsiftError(f"a collection named {new_name!r} exists already; delete it or choose another name")
        self.items(name)
        self.catalog.copy_collection(name, new_name)
        self.catalog.delete_collection(name)

    def delete(self, name: str) -> None:
        """Delete a saved collection (its images stay in the library)."""
        if not self.catalog.delete_collection(name):
            raise PicsiftError(f"no collection named {name!r}; collections: {', '.join(self.names()) or '(none)'}")

    def combine(self, name: str, first: str, second: str, how: str = "or") -> ImageSet:
        """Save ``first OR second`` (union), ``AND`` (in both) or ``NOT`` (in first, not in second) as ``name``.

        The order (and scores) follow ``first``, then ``second`` for images only it holds.
        """
        if how not in COMBINE_OPERATORS:
            raise PicsiftError(f"how={how!r}; valid choices: {', '.join(COMBINE_OPERATORS)}")
        a, b = (self.get(n).with_recipe(Recipe(FromCollection(n), {"summary": n})) for n in (first, second))
        found = a.combine(b, how)
        self.write(name, found.ids.tolist(), _scores(found), found.query)
        return self.get(name)

    def rerun(self, name: str) -> ImageSet:
        """Make collection ``name`` again from its recipe, on the library as it is now, and save it.

        Searches run again with their query, model, limit and thresholds, then the recorded score range and
        filters apply; combinations, filtered collections, samples, outliers and near duplicates recompute
        from their sources. Collections made by hand (image ids) have nothing to re-run.
        """
        recipe = self.recipe(name)
        if self._replayer is None:
            raise PicsiftError("these collections have no library to re-run recipes with")
        try:
            found = Recipe.from_dict(recipe).step.replay(self._replayer())
        except PicsiftError as e:
            raise PicsiftError(f"collection {name!r}: {e}") from e
        self._write(name, found.ids.tolist(), _scores(found), {**recipe, "time": time.time(), "rerun": True})
        return self.get(name)


def describe_recipe(recipe: dict[str, Any]) -> str:
    """A collection's recipe in a few words: the prompts of a text search, "similar to 3 images"..."""
    summary = recipe.get("summary")
    if recipe.get("kind") == "text" and isinstance(summary, list):
        return " + ".join(map(str, summary))
    if recipe.get("kind") == "images" and isinstance(summary, list):
        return f"similar to {len(summary)} image{'s' if len(summary) != 1 else ''}"
    return "" if summary is None else str(summary)


def _scores(images: ImageSet) -> list[float | None] | None:
    if images.result_scores is None:
        return None
    return [None if s != s else float(s) for s in images.result_scores.tolist()]


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name.startswith("_"):
        raise PicsiftError(f"invalid collection name {name!r}: it must be non-empty and not start with '_'")
