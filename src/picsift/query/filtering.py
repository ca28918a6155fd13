"""Filtering a scope into an :class:`~picsift.query.imageset.ImageSet`: the one meaning of ``filter``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .filters import Filter, apply_filters
from .imageset import ImageSet
from .scope import Scope
from .steps import FromCollection, Recipe, Step, _Search

if TYPE_CHECKING:
    from ..core.catalog import Catalog


def filter_scope(catalog: Catalog, filters: tuple[Filter, ...], scope: Scope,
                 source: ImageSet | None = None, stored: Recipe | None = None,
                 image_of: Mapping[str, str] | None = None) -> ImageSet:
    """The images of ``scope`` (resolved with ``scored=True``) that pass every filter, in scope order (a
    search's best first), with their scores and a recipe that runs the scope's steps, then the filters.

    Parameters
    ----------
    source
        The image set the scope came from, if any: the result keeps its score distribution and provenance.
    stored
        The recipe of the collection the scope came from, if any: filters on a collection a search made
        re-run that search.
    image_of
        For an object set's scope: each object's image (see :func:`~picsift.query.filters.apply_filters`).
    """
    ids = apply_filters(catalog, filters, scope, image_of)
    scores = scope.score_of(ids) if scope.scores is not None else None
    step: Step = scope.source
    info: dict[str, object] = {}
    if source is not None:
        info = dict(source.recipe.info)
    elif stored is not None and isinstance(stored.step, _Search):
        step, info = stored.step, dict(stored.info)
    if not isinstance(step, _Search):
        name = step.name if isinstance(step, FromCollection) else None if scope.whole_library else "ids"
        info = {**info, "summary": f"{name or 'library'} filtered"}
    recipe = Recipe(step.filtered(tuple(filters)), {**info, "time": time.time()})
    kept = ImageSet(ids, None if scores is None else [float("nan") if s is None else s for s in scores],
                    recipe=recipe)
    if source is not None:
        kept = ImageSet(kept.ids, kept.result_scores, source.scores, source.scope_ids, recipe)
    return kept
