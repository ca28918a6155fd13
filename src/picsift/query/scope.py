"""The :class:`Scope`: what a user passes as ``within=`` (or ``images=``), resolved in one place.

Every caller (search, filters, sampling, outliers, near duplicates, exports, file actions, active learning)
resolves its ``within`` with :meth:`Scope.resolve`, which accepts:

- ``None``: every image of the library;
- a collection's name (``str``);
- an :class:`~picsift.query.imageset.ImageSet` (a search, sample, collection, filtered set...);
- a :class:`pandas.DataFrame` with an ``id`` column (and a ``score`` column, when it has scores);
- image ids (a list, tuple, set, numpy array or pandas Series of strings).

Anything else is an error naming the value and these kinds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import PicsiftError
from .imageset import ImageSet
from .steps import ByHand, FromCollection, Step, WholeLibrary, _Search

if TYPE_CHECKING:
    from ..core.store import StoreSnapshot

#: The name of the temporary collection: the last result the library remembered.
TEMPORARY = "_temporary"
#: Reads a collection: ``name -> (recipe, [(id, score, rank), ...])``; an unknown name raises PicsiftError.
CollectionItems = Callable[[str], tuple[Mapping[str, Any], list[tuple[str, float | None, int]]]]

ACCEPTED = ("None (the whole library), a collection name, an ImageSet, a DataFrame with an 'id' column, "
            "or image ids (a list, tuple, set, array or Series of strings)")


@dataclass(frozen=True, eq=False)
class Scope:
    """A resolved scope: ids in order (None: the whole library) and their scores when it has them.

    Attributes
    ----------
    ids
        Image ids in scope order; None for the whole library.
    scores
        float64 scores aligned with :attr:`ids` (NaN where unknown), or None when the scope has none.
    ranked
        The scope is a search's: what is kept of it goes best score first.
    collection
        The collection it was read from (filters then run as one SQL query over it).
    source
        The recipe step that makes this scope again (:class:`~picsift.query.steps.FromCollection`, a search...).
    """

    ids: np.ndarray | None = None
    scores: np.ndarray | None = None
    ranked: bool = False
    collection: str | None = None
    source: Step = field(default_factory=WholeLibrary)

    @classmethod
    def resolve(cls, within: Any, items: CollectionItems, *, scored: bool = False, what: str = "within") -> Scope:
        """Resolve ``within`` (see the module docstring for what it may be).

        Parameters
        ----------
        items
            Reads a collection by name (``Collections.items``).
        scored
            For an image set from a search: every image the search scored, with its score (what filters run
            within, so that a score filter sees the whole distribution), rather than its results alone.
        what
            The argument's name, for errors.
        """
        if within is None:
            return cls()
        if isinstance(within, str):
            _, rows = items(within)
            return cls(_ids([r[0] for r in rows]), np.array([np.nan if r[1] is None else r[1] for r in rows],
                                                            np.float64), collection=within,
                       source=FromCollection(within))
        if isinstance(within, ImageSet):
            return cls._of_set(within, scored)
        if isinstance(within, pd.DataFrame):
            if "id" not in within.columns:
                raise PicsiftError(f"{what}: a DataFrame needs an 'id' column, got columns {list(within.columns)}; "
                                   f"give {ACCEPTED}")
            scores = within["score"].to_numpy(np.float64) if "score" in within.columns else None
            return cls(_ids(within["id"].astype(str).tolist()), scores, source=ByHand())
        if isinstance(within, (bytes, os.PathLike, Mapping)) or not isinstance(within, Iterable):
            raise PicsiftError(f"{what}={within!r} is not a scope; give {ACCEPTED}")
        ids = list(within)
        bad = next((i for i in ids if not isinstance(i, str)), None)
        if bad is not None:
            raise PicsiftError(f"{what}: image ids are strings, got {bad!r} ({type(bad).__name__}); give {ACCEPTED}")
        unique = list(dict.fromkeys(ids))
        return cls(_ids(unique), None, source=ByHand())

    @classmethod
    def _of_set(cls, images: ImageSet, scored: bool) -> Scope:
        if scored and len(images.scope_ids):
            return cls(images.scope_ids, images.scores.astype(np.float64), True, source=images.recipe.step)
        scores = None if images.result_scores is None else images.result_scores.astype(np.float64)
        return cls(images.ids, scores, isinstance(images.recipe.step, _Search), source=images.recipe.step)

    @property
    def whole_library(self) -> bool:
        return self.ids is None

    @property
    def label(self) -> str | None:
        """What the scope is in a recipe's ``within``: a collection's name, None (library) or ``"ids"``."""
        return self.source.within_label()

    def positions(self, snapshot: StoreSnapshot) -> np.ndarray | None:
        """Positions of the scope's images in ``snapshot`` (store order); None for the whole library."""
        if self.ids is None:
            return None
        return snapshot.positions_of(self.ids)

    def score_of(self, ids: Iterable[str]) -> list[float | None]:
        """The scope's score of each of ``ids`` (None where it has none)."""
        if self.ids is None or self.scores is None:
            return [None for _ in ids]
        known = dict(zip(self.ids.tolist(), self.scores.tolist(), strict=True))
        return [None if (s := known.get(i)) is None or s != s else float(s) for i in ids]


def _ids(values: list[str]) -> np.ndarray:
    return np.asarray(values, dtype=str) if values else np.zeros(0, "<U32")
