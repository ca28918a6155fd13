"""Collections: the temporary collection each search replaces, and saved, named ones.

Collections live in the workspace catalog (one row per image, in rank order, with the score it had)
together with a recipe: how the collection was made (query, model, thresholds, time), so it can be
re-run after the data changes. :class:`CollectionsMixin` gives :class:`~picsift.Library` its
collection methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import PicsiftError

if TYPE_CHECKING:
    from .catalog import Catalog

TEMPORARY = "_temporary"  # the collection each search replaces


class CollectionsMixin:
    """Collection methods of :class:`~picsift.Library` (which provides the attributes below)."""

    catalog: Catalog

    if TYPE_CHECKING:

        def paths(self, ids: Sequence[str]) -> dict[str, Path]: ...

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
            "query": [json.loads(r[2]).get("summary") for r in rows],
        })


def _score_or_none(score: Any) -> float | None:
    return None if score is None or pd.isna(score) else float(score)


def _check_name(name: str) -> None:
    if not name or not name.strip() or name.startswith("_"):
        raise PicsiftError(f"invalid collection name {name!r}: it must be non-empty and not start with '_'")
