"""Collections: the temporary collection each search replaces, and saved, named ones.

Collections live in the workspace catalog (one row per image, in rank order, with the score it had)
together with a recipe: how the collection was made (query, model, thresholds, time), so it can be
re-run after the data changes. :class:`CollectionsMixin` gives :class:`~picsift.Library` its
collection methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import PicsiftError

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from ..embedding.spec import ModelSpec
    from .filters import Filter
    from .search import Results

TEMPORARY = "_temporary"  # the collection each search replaces
COMBINE_OPERATORS = ("or", "and", "not")


class CollectionsMixin:
    """Collection methods of :class:`~picsift.Library` (which provides the attributes below)."""

    catalog: Catalog

    if TYPE_CHECKING:

        @property
        def spec(self) -> ModelSpec: ...

        def paths(self, ids: Sequence[str]) -> dict[str, Path]: ...

        search: Callable[..., Results]
        similar: Callable[..., Results]

    def _collection_items(self, name: str) -> tuple[dict[str, Any], list[tuple[str, float | None, int]]]:
        """A collection's recipe and (id, score, rank) rows; an unknown name is an error listing the valid ones."""
        try:
            return self.catalog.collection_items(name)
        except KeyError:
            raise PicsiftError(
                f"no collection named {name!r}; collections: {', '.join(self.collection_names()) or '(none)'}"
            ) from None

    def collection(self, name: str = TEMPORARY) -> pd.DataFrame:
        """A saved collection (or the temporary one, from the last search) as a DataFrame."""
        _, items = self._collection_items(name)
        paths = self.paths([i[0] for i in items])
        return pd.DataFrame({
            "rank": [i[2] for i in items],
            "id": [i[0] for i in items],
            "path": [str(paths[i[0]]) if i[0] in paths else None for i in items],
            "score": [i[1] for i in items],
        })

    def collection_recipe(self, name: str = TEMPORARY) -> dict[str, Any]:
        """How a collection was made: query, model, thresholds, time."""
        return self._collection_items(name)[0]

    def save_collection(self, name: str, source: str = TEMPORARY) -> None:
        """Save the temporary collection (the last search) under ``name``, replacing one of that name."""
        _check_name(name)
        try:
            self.catalog.copy_collection(source, name)
        except KeyError:
            raise PicsiftError(f"no collection named {source!r} to save (run a search first)") from None

    def write_collection(
        self, name: str, ids: Sequence[str], scores: Sequence[float | None] | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        """Create or replace collection ``name`` from ids in rank order (with their scores, if any).

        ``name`` may be :data:`TEMPORARY` to replace the temporary collection, as a search does.
        """
        if name != TEMPORARY:
            _check_name(name)
        recipe = {"kind": "ids", "summary": name, "time": time.time(), **(recipe or {})}
        self.catalog.write_collection(name, list(ids), None if scores is None else list(scores), recipe)

    def add_to_collection(self, name: str, ids: Sequence[str]) -> int:
        """Append images to a collection (created if missing); returns its new size."""
        exists = name in self.collection_names()
        existing = self.collection(name) if exists else pd.DataFrame({"id": [], "score": []})
        known = set(existing["id"])
        new = [i for i in dict.fromkeys(ids) if i not in known]
        scores = [_score_or_none(s) for s in existing["score"]] + [None] * len(new)
        self.write_collection(name, existing["id"].tolist() + new, scores,
                              self.collection_recipe(name) if exists else None)
        return len(known) + len(new)

    def remove_from_collection(self, name: str, ids: Sequence[str]) -> int:
        """Remove images from a collection; returns its new size."""
        existing = self.collection(name)
        keep = existing[~existing["id"].isin(set(ids))]
        self.write_collection(name, keep["id"].tolist(), [_score_or_none(s) for s in keep["score"]],
                              self.collection_recipe(name))
        return len(keep)

    def rename_collection(self, name: str, new_name: str) -> None:
        """Rename a saved collection (its images, scores and recipe stay)."""
        _check_name(new_name)
        if new_name in self.collection_names():
            raise PicsiftError(f"a collection named {new_name!r} exists already; delete it or choose another name")
        self._collection_items(name)
        self.catalog.copy_collection(name, new_name)
        self.catalog.delete_collection(name)

    def combine_collections(self, name: str, first: str, second: str, how: str = "or") -> pd.DataFrame:
        """Save ``first OR second`` (union), ``AND`` (in both) or ``NOT`` (in first, not in second) as ``name``.

        The order (and scores) follow ``first``, then ``second`` for images only it holds.
        """
        if how not in COMBINE_OPERATORS:
            raise PicsiftError(f"how={how!r}; valid choices: {', '.join(COMBINE_OPERATORS)}")
        a, b = self.collection(first), self.collection(second)
        in_b = set(b["id"])
        if how == "or":
            rows = pd.concat([a, b[~b["id"].isin(set(a["id"]))]])
        elif how == "and":
            rows = a[a["id"].isin(in_b)]
        else:
            rows = a[~a["id"].isin(in_b)]
        recipe = {"kind": "combine", "how": how, "of": [first, second],
                  "summary": f"{first} {how.upper()} {second}"}
        self.write_collection(name, rows["id"].tolist(), [_score_or_none(s) for s in rows["score"]], recipe)
        return self.collection(name)

    def filter(self, *filters: Filter, within: Any = TEMPORARY, save_as: str | None = None) -> pd.DataFrame:
        """The images of ``within`` that pass every filter (AND), in ``within``'s order, with their scores.

        Parameters
        ----------
        filters
            Filters from :mod:`picsift.query.filters` (``Score``, ``ObjectCount``, ``ImageTag``...).
        within
            A collection's name (default: the temporary one, the last search), a
            :class:`~picsift.Results`, image ids, or ``None`` for the whole library.
        save_as
            Also save the result as this collection, with a recipe that can be re-run.
        """
        from .filters import apply_filters, to_dict

        ids = apply_filters(self.catalog, filters, within)
        scores = self._scores_in(within, ids)
        if save_as is not None:
            recorded = [to_dict(f) for f in filters]
            search = self._search_recipe(within)
            if search is not None:  # filters on a search: re-running searches again, then filters
                recipe = {**search, "filters": search.get("filters", []) + recorded, "time": time.time()}
            else:
                source = within if isinstance(within, str) or within is None else "ids"
                recipe = {"kind": "filter", "within": source, "filters": recorded,
                          "summary": f"{source or 'library'} filtered"}
            self.write_collection(save_as, ids, scores, recipe)
        paths = self.paths(ids)
        return pd.DataFrame({
            "rank": range(1, len(ids) + 1),
            "id": ids,
            "path": [str(paths[i]) if i in paths else None for i in ids],
            "score": [float("nan") if s is None else s for s in scores],
        })

    def _search_recipe(self, within: Any) -> dict[str, Any] | None:
        """The recipe of the search behind ``within`` (a Results, or a collection a search made)."""
        if hasattr(within, "query") and hasattr(within, "scope_ids"):
            recipe = dict(within.query)
        elif isinstance(within, str):
            recipe = dict(self.collection_recipe(within))
        else:
            return None
        return recipe if recipe.get("kind") in ("text", "images") else None

    def _scores_in(self, within: Any, ids: list[str]) -> list[float | None]:
        if isinstance(within, str):
            known = {i[0]: i[1] for i in self._collection_items(within)[1]}
        elif hasattr(within, "scope_ids") and len(within.scope_ids):
            known = dict(zip(within.scope_ids.tolist(), within.scores.tolist(), strict=True))
        elif hasattr(within, "df"):
            known = dict(zip(within.df["id"], within.df["score"], strict=True))
        else:
            return [None] * len(ids)
        return [_score_or_none(known.get(i)) for i in ids]

    def rerun_collection(self, name: str) -> pd.DataFrame:
        """Make collection ``name`` again from its recipe, on the library as it is now, and save it.

        Searches run again with their query, model, limit and thresholds, then the recorded score
        range and filters apply; combinations and filtered collections recompute from their sources.
        Collections made by hand (image ids) have nothing to re-run.
        """
        from .filters import from_dict

        recipe = self.collection_recipe(name)
        kind = recipe.get("kind")
        if kind in ("text", "images"):
            rows = self._rerun_search(name, recipe)
        elif kind == "combine":
            first, second = recipe["of"]
            rows = self.combine_collections(TEMPORARY, first, second, how=recipe["how"])
        elif kind == "filter":
            within = recipe.get("within")
            if within == "ids":
                raise PicsiftError(f"collection {name!r} was filtered within a list of ids, which is not recorded")
            rows = self.filter(*[from_dict(f) for f in recipe["filters"]], within=within)
        else:
            raise PicsiftError(f"collection {name!r} was made by hand ({kind}); there is nothing to re-run")
        self.write_collection(name, rows["id"].tolist(), [_score_or_none(s) for s in rows["score"]],
                              {**recipe, "time": time.time(), "rerun": True})
        return self.collection(name)

    def _rerun_search(self, name: str, recipe: dict[str, Any]) -> pd.DataFrame:
        """A recorded search run again, then cut to its recorded score range and filters."""
        from .filters import Score, from_dict

        within = recipe.get("within")
        if within == "ids":
            raise PicsiftError(f"collection {name!r} was searched within a list of ids, which is not recorded")
        if recipe.get("model") and recipe["model"] != self.spec.text:
            raise PicsiftError(f"collection {name!r} was made with model {recipe['model']}; open the library"
                               " with that model to re-run it")
        options = {k: recipe.get(k) for k in ("min_score", "max_score", "negative_text")}
        options.update(combine=recipe.get("combine") or "mean", negative_weight=recipe.get("negative_weight", 0.5))
        # every match first: the limit applies after the score range and filters, as in the app
        run = self.search if recipe["kind"] == "text" else self.similar
        results = run(recipe["text"] if recipe["kind"] == "text" else recipe["images"], limit=None, within=within,
                      **options)
        filters = [from_dict(f) for f in recipe.get("filters") or []]
        low, high = recipe.get("score_range") or (None, None)
        if low is not None:
            filters.append(Score(min=low))
        rows = self.filter(*filters, within=results) if filters else results.df
        if high is not None and len(results.scores) and high < float(results.scores.max()):
            rows = rows[rows["score"] < high]  # as the app's histogram: [low, high), the top bin closed
        return rows.head(recipe["limit"]) if recipe.get("limit") is not None else rows

    def delete_collection(self, name: str) -> None:
        if not self.catalog.delete_collection(name):
            raise PicsiftError(f"no collection named {name!r}")

    def collection_names(self) -> list[str]:
        return [row[0] for row in self.catalog.collection_names() if row[0] != TEMPORARY]

    def collections(self) -> pd.DataFrame:
        """Saved collections: name, size, creation time and the query that made them."""
        rows = [r for r in self.catalog.collection_names() if r[0] != TEMPORARY]
        return pd.DataFrame({
            "name": [r[0] for r in rows],
            "size": [r[3] for r in rows],
            "created": pd.to_datetime([r[1] for r in rows], unit="s"),
            "query": [describe_recipe(json.loads(r[2])) for r in rows],
        })


def describe_recipe(recipe: dict[str, Any]) -> str:
    """A collection's recipe in a few words: the prompts of a text search, "similar to 3 images"..."""
    summary = recipe.get("summary")
    if recipe.get("kind") == "text" and isinstance(summary, list):
        return " + ".join(map(str, summary))
    if recipe.get("kind") == "images" and isinstance(summary, list):
        return f"similar to {len(summary)} image{'s' if len(summary) != 1 else ''}"
    return "" if summary is None else str(summary)


def _score_or_none(score: Any) -> float | None:
    return None if score is None or pd.isna(score) else float(score)


def _check_name(name: str) -> None:
    if not name or not name.strip() or name.startswith("_"):
        raise PicsiftError(f"invalid collection name {name!r}: it must be non-empty and not start with '_'")
