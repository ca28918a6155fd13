"""The library's queries in one place, pure: each resolves its scope with :class:`~picsift.query.scope.Scope`,
returns an :class:`~picsift.query.imageset.ImageSet` bound to them, and writes nothing (the library's
:meth:`~picsift.Library.remember` keeps a result). They are what recipes replay on
(:class:`~picsift.query.steps.Replayer`) and what image sets ask for paths, filters and saving."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import PicsiftError
from ..query.filtering import filter_scope
from ..query.filters import Filter
from ..query.imageset import ImageSet
from ..query.object_sets import image_ids, is_object_set, made_of_objects, with_object_columns
from ..query.object_sets import image_of as object_images
from ..query.options import SearchOptions
from ..query.scope import TEMPORARY, Scope
from ..query.search import ImageRef, Searcher
from ..query.steps import Recipe
from .health.mistakes import LabelChecks
from .verbs import Analysis

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from ..core.objects import LiveObject
    from ..core.video import Videos


class CollectionStore(Protocol):
    """What queries need of the library's collections (:class:`~picsift.query.collections.Collections`)."""

    def items(self, name: str) -> tuple[dict[str, Any], list[tuple[str, float | None, int]]]: ...
    def get(self, name: str) -> ImageSet: ...
    def recipe(self, name: str) -> dict[str, Any]: ...
    def save(self, name: str, source: str | ImageSet) -> None: ...


class Queries:
    """Search, similar, sample, outliers, near duplicates, filter and collections of one library, pure.

    Parameters
    ----------
    catalog
        The workspace catalog.
    searcher, analysis, videos
        The services that run the queries and know the video frames.
    collections
        The library's collections (read for scopes, written by :meth:`ImageSet.save`).
    paths
        Absolute paths of image ids.
    model
        The model spec's text (recipes made with another model do not re-run).
    live_objects
        The objects labelled now, by object id, for object sets (see :mod:`picsift.query.object_sets`).
    """

    def __init__(self, catalog: Catalog, searcher: Searcher, analysis: Analysis, collections: CollectionStore,
                 videos: Videos, paths: Callable[[Sequence[str]], dict[str, Path]], model: Callable[[], str],
                 label_checks: LabelChecks | None = None, object_checks: LabelChecks | None = None,
                 live_objects: Callable[[], Mapping[str, LiveObject]] | None = None):
        self.catalog, self.searcher, self.analysis = catalog, searcher, analysis
        self.collections, self.videos, self._paths, self._model = collections, videos, paths, model
        self.label_checks = label_checks
        self.object_checks = object_checks  # label_mistakes("objects"): one row per labelled object
        self._live_objects = live_objects or (lambda: {})

    @property
    def model(self) -> str:
        return self._model()

    def scope(self, within: Any, *, scored: bool = False, what: str = "within") -> Scope:
        """``within`` resolved (see :class:`~picsift.query.scope.Scope`)."""
        return Scope.resolve(within, self.collections.items, scored=scored, what=what)

    def ids(self, images: Any, what: str = "images") -> list[str]:
        """The image ids of ``images`` (anything :meth:`scope` accepts except None); an object set's images, each
        once."""
        if images is None:
            raise self._no_scope(what)
        objects = self._object_set(images)
        if objects is not None:
            return image_ids(objects)
        found = self.scope(images, what=what).ids
        return [] if found is None else found.tolist()

    def image_set(self, images: Any, what: str = "images") -> ImageSet:
        """``images`` as an image set: itself, a collection's, or ids (with a DataFrame's scores)."""
        if isinstance(images, ImageSet):
            return self.bind(images)
        if images is None:
            raise self._no_scope(what)
        if isinstance(images, str):
            return self.collection(images)
        scope = self.scope(images, what=what)
        assert scope.ids is not None
        return ImageSet(scope.ids, None if scope.scores is None else scope.scores, recipe=Recipe(scope.source),
                        _owner=self)

    @staticmethod
    def _no_scope(what: str) -> Exception:
        return PicsiftError(f"{what}=None: give a collection name, an ImageSet, a DataFrame or image ids")

    # -- queries (the Replayer protocol) ------------------------------------------------------------
    def search(self, text: str | Sequence[str], options: SearchOptions, within: Any = None) -> ImageSet:
        return self.searcher.search(text, options, self.scope(within)).bound(self)

    def similar(self, images: ImageRef | Sequence[ImageRef], options: SearchOptions, within: Any = None,
                exclude_references: bool = False) -> ImageSet:
        return self.searcher.similar(images, options, self.scope(within), exclude_references).bound(self)

    def sample(self, n: int = 50, *, method: str = "random", clusters: int | None = None, seed: int = 0,
               within: Any = None, exclude: Any = None, exclude_labelled: bool = False,
               uncertainty: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
               pool: int | None = None) -> ImageSet:
        left_out = None if exclude is None else self.scope(exclude, what="exclude")
        return self.analysis.sample(n, method=method, clusters=clusters, seed=seed, scope=self.scope(within),
                                    exclude=left_out, exclude_labelled=exclude_labelled, uncertainty=uncertainty,
                                    pool=pool).bound(self)

    def outliers(self, n: int = 50, k: int = 10, within: Any = None, *, progress: bool = True) -> ImageSet:
        return self.analysis.outliers(n, k, self.scope(within), progress=progress).bound(self)

    def near_duplicates(self, threshold: float, within: Any = None, *, progress: bool = True) -> ImageSet:
        return self.analysis.near_duplicates(threshold, self.scope(within), progress=progress).bound(self)

    def label_mistakes(self, field: str, *, limit: int | None = 50, within: Any = None) -> ImageSet:
        checks = self.object_checks if field == "objects" else self.label_checks
        if checks is None:
            raise PicsiftError("label checks need a library (picsift.Library)")
        return checks.mistakes(field, limit, self.scope(within)).bound(self)

    def collection(self, name: str = TEMPORARY) -> ImageSet:
        return self.collections.get(name)

    def filter(self, *filters: Filter, within: Any = TEMPORARY) -> ImageSet:
        """The images of ``within`` that pass every filter (AND), in its order (a search's best first)."""
        objects = self._object_set(within)
        if objects is not None:
            scope = self.scope(objects, scored=True)
            image_of = object_images(self._live_objects())
            return self.bind(filter_scope(self.catalog, tuple(filters), scope, objects, None, image_of))
        scope = self.scope(within, scored=True)
        stored = None
        if isinstance(within, str):
            stored = Recipe.from_dict(self.collections.recipe(within))
        source = within.bound(self) if isinstance(within, ImageSet) else None
        return filter_scope(self.catalog, tuple(filters), scope, source, stored).bound(self)

    def _object_set(self, images: Any) -> ImageSet | None:
        """``images`` as an object set (a saved one read back) when it is one, else None."""
        if isinstance(images, str):
            try:
                recipe = self.collections.recipe(images)
            except PicsiftError:  # no such collection: the caller says so
                return None
            return self.collection(images) if made_of_objects(Recipe.from_dict(recipe)) else None
        if isinstance(images, ImageSet) and is_object_set(images):
            return self.bind(images)
        return None

    # -- what image sets ask (the Owner protocol) ---------------------------------------------------
    def bind(self, images: ImageSet) -> ImageSet:
        """``images`` bound to these queries; an object set with its objects' columns."""
        images = images.bound(self)
        return with_object_columns(images, self._live_objects()) if is_object_set(images) else images

    def paths(self, ids: Sequence[str]) -> dict[str, Path]:
        return self._paths(ids)

    def _moments(self, ids: Sequence[str]) -> dict[str, tuple[Path, float]] | None:
        return self.videos.moments(list(ids))

    def _save_set(self, name: str, images: ImageSet) -> None:
        self.collections.save(name, images)
