"""The :class:`ImageSet`: every set of images picsift hands back (a search, a sample, a collection...).

An image set is an immutable value: ids in order, their scores when there was a query, the score of
every image in scope (for the histogram) and the :class:`~picsift.query.steps.Recipe` that made it. It is
bound to the library that made it, which gives it paths (:attr:`ImageSet.df`) and lets it
:meth:`~ImageSet.filter` and :meth:`~ImageSet.save`; :attr:`ImageSet.df` is the one place the
``rank, id, path, score`` table is built.

>>> found = lib.search("a red car", limit=None)
>>> found.filter(ObjectCount("car", min=2)).head(20).save("red cars")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..errors import PicsiftError
from .filters import Filter
from .steps import ByHand, Combined, Recipe

#: The bins a histogram of scores has by default (over the scores' own range), as the score range widget draws it.
HISTOGRAM_BINS = 50


def histogram(scores: np.ndarray, bins: int = HISTOGRAM_BINS,
              range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(scores, bins, range)``: the same counts and edges (and the same errors), counted by one compiled
    pass on every core (:func:`~picsift.core.codes_kernel.edge_counts`; numpy's takes 2-4x the time at 1M scores)."""
    scores = np.asarray(scores)
    edges = np.histogram_bin_edges(scores, bins=bins, range=range)
    if scores.ndim != 1 or scores.dtype not in (np.float32, np.float64):
        return np.histogram(scores, bins=edges)
    from ..core.codes_kernel import LOCK, edge_counts

    with LOCK:
        return edge_counts(scores, edges), edges


class Owner(Protocol):
    """What an image set asks of the library that made it."""

    def paths(self, ids: Sequence[str]) -> dict[str, Path]: ...
    def _moments(self, ids: Sequence[str]) -> dict[str, tuple[Path, float]] | None: ...
    def filter(self, *filters: Filter, within: Any = ...) -> ImageSet: ...
    def _save_set(self, name: str, images: ImageSet) -> None: ...
    def bind(self, images: ImageSet) -> ImageSet: ...


def _ids(values: Any) -> np.ndarray:
    """Ids as a read-only string array: a view of a string array as given (no copy of a store's 1M ids)."""
    array = np.asarray(values if len(values) else np.zeros(0, "<U32"))
    return array.view() if array.dtype.kind == "U" else array.astype(str)


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A set of images in order, with their scores and how they were made.

    Attributes
    ----------
    ids
        Image ids in order (best first for a query).
    result_scores
        The score of each of :attr:`ids` (float32), or None when there was no query (a sample, by hand).
    scores
        The score of every image in scope (not only the results), for :meth:`histogram`; empty when the
        index answered alone (``distribution=False``).
    scope_ids
        The image ids those scores belong to, aligned with :attr:`scores`.
    recipe
        How the set was made (see :mod:`picsift.query.steps`); :attr:`query` is it as a dict.
    columns
        More columns for :attr:`df`, aligned with :attr:`ids` (``group`` and ``similarity`` of near duplicates).
    """

    ids: np.ndarray
    result_scores: np.ndarray | None = None
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    scope_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U32"))
    recipe: Recipe = field(default_factory=Recipe)
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    _owner: Owner | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "ids", _ids(self.ids))
        if self.result_scores is not None:
            set_(self, "result_scores", np.asarray(self.result_scores, np.float32))
            if len(self.result_scores) != len(self.ids):
                raise PicsiftError(f"{len(self.result_scores)} result scores for {len(self.ids)} ids")
        set_(self, "scores", np.asarray(self.scores, np.float32))
        set_(self, "scope_ids", _ids(self.scope_ids))
        for array in (self.ids, self.result_scores, self.scores, self.scope_ids, *self.columns.values()):
            if array is not None:
                array.flags.writeable = False  # immutable all the way down

    # -- the value ----------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageSet):
            return NotImplemented
        same = (np.array_equal(self.ids, other.ids) and np.array_equal(self.scope_ids, other.scope_ids)
                and np.array_equal(self.scores, other.scores) and self.recipe == other.recipe
                and (self.result_scores is None) == (other.result_scores is None)
                and self.columns.keys() == other.columns.keys())
        return same and (self.result_scores is None or np.array_equal(self.result_scores, other.result_scores)) and all(
            np.array_equal(v, other.columns[k]) for k, v in self.columns.items())

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def __contains__(self, image_id: object) -> bool:
        return bool(np.isin(image_id, self.ids).any())

    @property
    def query(self) -> dict[str, Any]:
        """The recipe as a dict (the format saved collections hold)."""
        return self.recipe.to_dict()

    @property
    def partial(self) -> bool:
        """True when some images were not embedded yet at search time (an update was running or pending):
        the results cover ``query["searched_images"]`` of ``query["total_images"]``."""
        return self.recipe.info.get("complete") is False

    # -- the table ----------------------------------------------------------------------------------
    @cached_property
    def df(self) -> pd.DataFrame:
        """One row per image, in order: ``rank``, ``id``, ``path`` (None when unknown), ``score`` (NaN without
        a query), then :attr:`columns` (an object's: ``image_id``, whose ``path`` it is, ``class``, ``box``)
        and, in a library holding videos, ``video`` and ``t`` (see :meth:`picsift.core.video.Videos.moment`)."""
        ids = self.ids.tolist()
        # an object's row shows its image's path (its id is the object's; see picsift.query.object_search)
        images = self.columns["image_id"].tolist() if "image_id" in self.columns else ids
        known = [i for i in images if i is not None]  # an object no longer labelled has no image
        paths = self._owner.paths(known) if self._owner is not None and known else {}
        df = pd.DataFrame({
            "rank": np.arange(1, len(ids) + 1),
            "id": pd.Series(ids, dtype=object),
            "path": [str(paths[i]) if i in paths else None for i in images],
            "score": self.result_scores if self.result_scores is not None else np.full(len(ids), np.nan, np.float32),
        })
        for name, values in self.columns.items():
            df[name] = values
        found = self._owner._moments(known) if self._owner is not None and known else None
        if found is not None:
            df["video"] = [str(found[i][0]) if i in found else None for i in images]
            df["t"] = [found[i][1] if i in found else np.nan for i in images]
        return df

    @property
    def paths(self) -> list[str | None]:
        return self.df["path"].tolist()

    def to_pandas(self) -> pd.DataFrame:
        """A copy of :attr:`df`."""
        return self.df.copy()

    # -- scores -------------------------------------------------------------------------------------
    def histogram(self, bins: int = HISTOGRAM_BINS,
                  range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Counts and bin edges of the scores of every image in scope."""
        if not len(self.scores):
            return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
        return histogram(self.scores, bins=bins, range=range)

    def distribution(self, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
        """Summary statistics and a histogram of all scores in scope, JSON-ready."""
        counts, edges = self.histogram(bins)
        stats: dict[str, Any] = {"count": len(self.scores)}
        if len(self.scores):
            stats.update(min=float(self.scores.min()), max=float(self.scores.max()),
                         mean=float(self.scores.mean()), median=float(np.median(self.scores)))
        stats["histogram"] = {"counts": counts.tolist(), "edges": [round(float(e), 6) for e in edges]}
        return stats

    # -- new sets from this one ---------------------------------------------------------------------
    def _take(self, keep: np.ndarray) -> ImageSet:
        return replace(self, ids=self.ids[keep],
                       result_scores=None if self.result_scores is None else self.result_scores[keep],
                       columns={k: v[keep] for k, v in self.columns.items()})

    def head(self, n: int) -> ImageSet:
        """The first ``n`` images (the recipe records it: a search's limit becomes ``n``)."""
        if n < 0:
            raise PicsiftError(f"head(n) needs n >= 0, got {n}")
        return self._take(np.arange(min(n, len(self)))).with_recipe(self.recipe.with_step(self.recipe.step.headed(n)))

    def below(self, high: float) -> ImageSet:
        """The images scoring below ``high`` (all of them when there are no scores)."""
        if self.result_scores is None:
            return self
        return self._take(np.flatnonzero(self.result_scores < high))

    def without(self, ids: Sequence[str]) -> ImageSet:
        """This set less ``ids`` (in it and in its scope), e.g. images just deleted."""
        gone = list(ids)
        in_scope = ~np.isin(self.scope_ids, gone)
        kept = self._take(np.flatnonzero(~np.isin(self.ids, gone)))
        return replace(kept, scores=self.scores[in_scope], scope_ids=self.scope_ids[in_scope])

    def filter(self, *filters: Filter) -> ImageSet:
        """The images that pass every filter (AND; see :mod:`picsift.query.filters`), in this set's order.

        For a search, the filters run over every image it scored (so :class:`~picsift.Score` sees the full
        distribution); the recipe records them after this set's own steps.
        """
        return self._library().filter(*filters, within=self)

    def combine(self, other: ImageSet, how: str = "or") -> ImageSet:
        """``self OR other`` (union), ``AND`` (in both) or ``NOT`` (in self, not in other).

        The order (and scores) follow ``self``, then ``other`` for images only it holds.
        """
        step = Combined(how, self.recipe.step, other.recipe.step)  # checks ``how``
        # two object sets make one (its owner adds the objects' columns: picsift.query.object_sets)
        objects = {"objects": True} if "image_id" in self.columns and "image_id" in other.columns else {}
        in_other = np.isin(self.ids, other.ids)
        if how == "or":
            extra = ~np.isin(other.ids, self.ids)
            ids = np.concatenate([self.ids, other.ids[extra]])
            scores = None
            if self.result_scores is not None or other.result_scores is not None:
                scores = np.concatenate([_or_nan(self.result_scores, len(self)), _or_nan(other.result_scores,
                                                                                           len(other))[extra]])
            return ImageSet(ids, scores, recipe=Recipe(step, {"summary": f"{_name(self)} OR {_name(other)}",
                                                               **objects}), _owner=self._owner)._bound_again()
        keep = in_other if how == "and" else ~in_other
        return ImageSet(self.ids[keep], None if self.result_scores is None else self.result_scores[keep],
                        recipe=Recipe(step, {"summary": f"{_name(self)} {how.upper()} {_name(other)}", **objects}),
                        _owner=self._owner)._bound_again()

    def with_recipe(self, recipe: Recipe) -> ImageSet:
        return replace(self, recipe=recipe)

    def bound(self, owner: Owner | None) -> ImageSet:
        """This set, bound to ``owner`` (the library that gives it paths, filters and saves it)."""
        return replace(self, _owner=owner)

    def _bound_again(self) -> ImageSet:
        """This set as its owner binds it (an object set gets its objects' columns)."""
        return self if self._owner is None else self._owner.bind(self)

    def save(self, name: str) -> ImageSet:
        """Save this set as collection ``name`` (with its recipe, so it can be re-run); returns it."""
        self._library()._save_set(name, self)
        return self

    def _library(self) -> Owner:
        if self._owner is None:
            raise PicsiftError("this image set belongs to no library; make it with a Library's methods")
        return self._owner

    # -- compatibility ------------------------------------------------------------------------------
    @classmethod
    def from_frame(cls, df: pd.DataFrame, scores: np.ndarray | None = None, scope_ids: np.ndarray | None = None,
                   query: Mapping[str, Any] | None = None) -> ImageSet:
        """An image set from a table with ``id`` (and ``score``) columns, the way ``Results`` was made."""
        result_scores = None
        if "score" in df and len(df) and not df["score"].isna().any():
            result_scores = df["score"].to_numpy(np.float32)
        elif "score" in df and not len(df):
            result_scores = np.zeros(0, np.float32)
        return cls(df["id"].to_numpy(), result_scores, np.zeros(0, np.float32) if scores is None else scores,
                   np.zeros(0, "<U32") if scope_ids is None else scope_ids, Recipe.from_dict(query or {}))

    def __getitem__(self, key: Any) -> Any:
        warnings.warn("this is an ImageSet, no longer a DataFrame: index its table, .df[...]", DeprecationWarning,
                      stacklevel=2)
        return self.df[key]

    def __repr__(self) -> str:
        info = self.recipe.info
        partial = f", partial: {info.get('searched_images')} of {info.get('total_images')} images" if self.partial \
            else ""
        return f"<ImageSet: {len(self)} of {len(self.scores) or len(self)} images, query={_name(self)!r}{partial}>"

    def _repr_html_(self) -> str:
        info = self.recipe.info
        partial = (f" (partial: {info.get('searched_images')} of {info.get('total_images')} images "
                   "embedded so far)") if self.partial else ""
        return (f"<p>{len(self)} of {len(self.scores) or len(self)} images{partial}</p>"
                + self.df.head(50).to_html(index=False))


def _or_nan(scores: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, np.nan, np.float32) if scores is None else scores


def _name(images: ImageSet) -> str:
    summary = images.recipe.info.get("summary")
    return str(summary) if summary is not None else images.recipe.step.kind


def by_hand(ids: Sequence[str], scores: Sequence[float | None] | None = None, owner: Owner | None = None,
            **info: Any) -> ImageSet:
    """Images chosen by hand (ids in order, with their scores when known)."""
    result_scores = None
    if scores is not None and any(s is not None and s == s for s in scores):
        result_scores = np.array([np.nan if s is None else s for s in scores], np.float32)
    return ImageSet(np.asarray(list(ids), dtype=object), result_scores, recipe=Recipe(ByHand(), info), _owner=owner)
