"""Filters over labelled data, combined with AND, within a collection, search results or the whole library.

Each filter is a small dataclass that asks the catalog for the image ids it selects
(:mod:`picsift.core.catalog.selections`: one query over an indexed table each), so a filter costs one index
range scan, not a pass over Python objects. :func:`apply_filters` ANDs them inside a resolved
:class:`~picsift.query.scope.Scope` and returns image ids in scope order.

>>> from picsift.query.filters import Score, ObjectCount, ImageTag, JobStatus
>>> results = lib.search("a red car", limit=None)
>>> results.filter(Score(min=0.25), ObjectCount("car", min=2), ImageTag("weather", "rain"))
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core.catalog import selections
from ..core.catalog.selections import Selection
from ..core.objects import bounding_box, object_id
from ..errors import PicsiftError
from ..labels.metadata import check_status

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from .scope import Scope


class Filter(Protocol):
    def selection(self) -> Selection | None:
        """The image ids the filter keeps (or, negated, drops), as the catalog looks them up; None when it
        keeps every image as far as labels go (a :class:`Score` filter, which looks at scores)."""
        ...


class _LabelFilter:
    """A filter on labels: the catalog selects the image ids it keeps (or, negated, the ones it drops)."""

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if item.name in ("name", "cls", "job", "author") and value is not None and (
                    not isinstance(value, str) or not value.strip()):
                raise PicsiftError(f"{type(self).__name__}: {item.name} must be a non-empty string, got {value!r}")
            if item.name in ("min", "max") and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int)):
                raise PicsiftError(f"{type(self).__name__}: {item.name} must be a whole number, got {value!r}")

    def selection(self) -> Selection | None:
        """The ids this filter selects; ``None`` when every image passes."""
        raise NotImplementedError


@dataclass(frozen=True)
class Score:
    """Search score in ``[min, max]`` (either end open). Needs a scope with scores: a Results or collection."""

    min: float | None = None
    max: float | None = None

    def selection(self) -> Selection | None:
        """None: a score filter selects by score, not by label (it checks its bounds)."""
        if self.min is None and self.max is None:
            raise PicsiftError("Score() needs min, max or both")
        return None


@dataclass(frozen=True)
class ObjectCount(_LabelFilter):
    """Images with between ``min`` and ``max`` (inclusive; ``None``: no upper bound) objects of class ``cls``."""

    cls: str
    min: int = 1
    max: int | None = None

    def selection(self) -> Selection | None:
        if self.min < 0 or (self.max is not None and self.max < self.min):
            raise PicsiftError(f"ObjectCount({self.cls!r}): need 0 <= min <= max, got min={self.min}, max={self.max}")
        return selections.object_count(self.cls, self.min, self.max)


@dataclass(frozen=True)
class ImageTag(_LabelFilter):
    """Image tag ``name`` is present (with ``value``, when given); ``negate``: is not."""

    name: str
    value: str | int | float | None = None
    negate: bool = False

    def selection(self) -> Selection | None:
        return selections.image_tag(self.name, self.value, self.negate)


@dataclass(frozen=True)
class ObjectTag(_LabelFilter):
    """Some object (of class ``cls``, when given) has tag ``name`` (= ``value``); ``negate``: no object has."""

    name: str
    value: str | int | float | None = None
    negate: bool = False
    cls: str | None = None

    def selection(self) -> Selection | None:
        return selections.object_tag(self.name, self.value, self.cls, self.negate)

    def object_selection(self) -> Selection:
        """In an object set: the objects themselves tagged so (``negate``: not tagged so)."""
        return replace(selections.objects_tagged(self.name, self.value, self.cls), negated=self.negate)


@dataclass(frozen=True)
class ObjectClass(_LabelFilter):
    """Objects of class ``cls`` in an object set (see :mod:`picsift.query.object_sets`); images with such an
    object in an image set. ``negate``: objects of another class (images without such an object)."""

    cls: str
    negate: bool = False

    def selection(self) -> Selection | None:
        found = selections.object_count(self.cls, 1, None)
        return None if found is None else replace(found, negated=self.negate)

    def object_selection(self) -> Selection:
        return replace(selections.objects_of_class(self.cls), negated=self.negate)


@dataclass(frozen=True)
class JobStatus(_LabelFilter):
    """Images of labelling job ``job`` with one of these statuses (all statuses when ``status`` is None)."""

    job: str
    status: str | Sequence[str] | None = None

    def selection(self) -> Selection | None:
        if self.status is None:
            return selections.job_status(self.job)
        statuses = [self.status] if isinstance(self.status, str) else list(self.status)
        for status in statuses:
            check_status(status)
        return selections.job_status(self.job, statuses)


@dataclass(frozen=True)
class ObjectAuthor(_LabelFilter):
    """Images with at least one object made by ``author`` (a labeller login)."""

    author: str

    def selection(self) -> Selection | None:
        return selections.object_author(self.author)

    def object_selection(self) -> Selection:
        """In an object set: the objects ``author`` made."""
        return selections.objects_by(self.author)


@dataclass(frozen=True)
class HasOpenIssues(_LabelFilter):
    """Images with at least one open issue (``False``: with none)."""

    value: bool = True

    def selection(self) -> Selection | None:
        return selections.open_issues(self.value)


FILTER_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Score, ObjectCount, ObjectClass, ImageTag, ObjectTag, JobStatus, ObjectAuthor,
                                  HasOpenIssues)
}


def to_dict(item: Filter) -> dict[str, Any]:
    """A filter as plain JSON data (``{"type": "ObjectCount", "cls": "car", "min": 2, "max": None}``)."""
    name = type(item).__name__
    if FILTER_TYPES.get(name) is not type(item):
        raise PicsiftError(f"{item!r} is not a picsift filter; valid types: {', '.join(FILTER_TYPES)}")
    data = asdict(item)  # type: ignore[call-overload]
    if isinstance(data.get("status"), tuple):
        data["status"] = list(data["status"])
    return {"type": name, **data}


def from_dict(data: dict[str, Any]) -> Filter:
    """The filter :func:`to_dict` wrote; unknown types or fields are errors naming the valid ones."""
    data = dict(data)
    name = data.pop("type", None)
    cls = FILTER_TYPES.get(str(name))
    if cls is None:
        raise PicsiftError(f"unknown filter type {name!r}; valid types: {', '.join(FILTER_TYPES)}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise PicsiftError(f"{name} has no field {unknown[0]!r}; valid fields: {', '.join(valid)}")
    try:
        item: Filter = cls(**data)
    except TypeError as e:
        raise PicsiftError(f"bad {name} filter {data!r}: {e}") from e
    item.selection()  # validates values now, not when the filter first runs
    return item


def describe(item: Filter) -> str:
    """A short human description, e.g. ``2-5 × car`` or ``tag weather = rain``."""
    if isinstance(item, Score):
        low = "" if item.min is None else f"{item.min:.3f} ≤ "
        high = "" if item.max is None else f" ≤ {item.max:.3f}"
        return f"{low}score{high}"
    if isinstance(item, ObjectCount):
        upper = "+" if item.max is None else ("" if item.max == item.min else f"–{item.max}")
        return f"{item.min}{upper} × {item.cls}"
    if isinstance(item, (ImageTag, ObjectTag)):
        what = "tag" if isinstance(item, ImageTag) else f"object{'' if item.cls is None else ' ' + item.cls} tag"
        value = "" if item.value is None else f" = {item.value}"
        return f"{what} {item.name}{value}" if not item.negate else f"no {what} {item.name}{value}"
    if isinstance(item, ObjectClass):
        return f"class {item.cls}" if not item.negate else f"class not {item.cls}"
    if isinstance(item, JobStatus):
        status = "any status" if item.status is None else (
            item.status if isinstance(item.status, str) else " or ".join(item.status))
        return f"job {item.job}: {status}"
    if isinstance(item, ObjectAuthor):
        return f"objects by {item.author}"
    if isinstance(item, HasOpenIssues):
        return "has open issues" if item.value else "no open issues"
    return repr(item)


def apply_filters(catalog: Catalog, filters: Iterable[Filter], scope: Scope,
                  image_of: Mapping[str, str] | None = None) -> list[str]:
    """Ids of the images in ``scope`` that pass every filter, in scope order.

    Parameters
    ----------
    catalog
        The workspace catalog.
    filters
        Filters from this module (or any object with a ``selection()`` method), ANDed.
    scope
        An already resolved :class:`~picsift.query.scope.Scope`: the whole library (catalogued files and
        dataset items), a collection, a search's scored scope (so :class:`Score` sees the full distribution;
        results go best score first), or ids (no scores).

    Scopes held in SQLite (the library, collections) are filtered by one query. Scopes held in
    memory (a search's results, ids) are not copied into SQLite: each label filter fetches the ids it
    selects (as many as carry that label, not as many as the scope holds) and marks them in a boolean
    mask over the scope, so editing filters on a search of 1M images costs milliseconds.

    ``image_of`` makes the scope an object set's (its ids are object ids; see :mod:`picsift.query.object_sets`):
    it gives each object's image. Then a filter with an ``object_selection`` (:class:`ObjectClass`,
    :class:`ObjectTag`, :class:`ObjectAuthor`) keeps the objects it picks, and every other label filter keeps
    the objects of the images it picks.
    """
    filters = list(filters)
    for item in filters:
        if not hasattr(item, "selection"):
            raise PicsiftError(f"{item!r} is not a filter; use the classes of picsift.query.filters "
                               "(Score, ObjectCount, ObjectClass, ImageTag, ObjectTag, JobStatus, ObjectAuthor, "
                               "HasOpenIssues)")
    if image_of is None and (scope.ids is None or scope.collection is not None):
        return _catalog_filter(catalog, filters, scope.collection)
    if scope.ids is None:
        raise PicsiftError("an object set's filters need its object ids")
    memory = _MemoryScope(scope.ids, np.full(len(scope.ids), np.nan) if scope.scores is None else scope.scores,
                          scope.ranked)
    keep = np.ones(len(memory.ids), bool)
    for item in filters:
        if isinstance(item, Score):
            item.selection()  # validates
            with np.errstate(invalid="ignore"):
                keep &= ~np.isnan(memory.scores)
                if item.min is not None:
                    keep &= memory.scores >= item.min
                if item.max is not None:
                    keep &= memory.scores <= item.max
        elif image_of is not None and hasattr(item, "object_selection"):
            selected = item.object_selection()
            marked = memory.mark(object_id(image_id, bounding_box(points))
                                 for image_id, points in catalog.selections.objects(selected))
            keep &= ~marked if selected.negated else marked
        else:
            selected = item.selection()
            if selected is not None:
                marked = (memory.mark(catalog.selections.ids(selected)) if image_of is None
                          else memory.mark_images(set(catalog.selections.ids(selected)), image_of))
                keep &= ~marked if selected.negated else marked
    return memory.ordered(keep)


def _catalog_filter(catalog: Catalog, filters: list[Filter], within: str | None) -> list[str]:
    """Filter the library (``within=None``) or a collection in the catalog, by one query."""
    scores = [(item.min, item.max) for item in filters if isinstance(item, Score)]
    selected = [s for s in (item.selection() for item in filters) if s is not None]
    try:
        return catalog.selections.filter(within, selected, scores)
    except KeyError:
        names = [r[0] for r in catalog.collection_names()]
        raise PicsiftError(f"no collection named {within!r}; collections: {', '.join(names) or '(none)'}") from None


class _MemoryScope:
    """An in-memory scope: ids and scores as given (not copied), and whether results go best first."""

    def __init__(self, ids: np.ndarray, scores: np.ndarray, ranked: bool):
        self.ids, self.scores, self.ranked = ids, scores, ranked

    def mark(self, ids: Iterable[str]) -> np.ndarray:
        """A mask over the scope, True where the id is one of ``ids``."""
        positions = _positions(self.ids)
        mask = np.zeros(len(self.ids), bool)
        mask[[p for p in (positions.get(i) for i in ids) if p is not None]] = True
        return mask

    def mark_images(self, ids: set[str], image_of: Mapping[str, str]) -> np.ndarray:
        """A mask over a scope of objects, True where the object's image is one of ``ids``."""
        return np.fromiter((image_of.get(i) in ids for i in self.ids.tolist()), bool, len(self.ids))

    def ordered(self, keep: np.ndarray) -> list[str]:
        """The kept ids, best score first (ties in scope order) for a search, else in scope order."""
        kept = np.flatnonzero(keep)
        if self.ranked:
            kept = kept[np.argsort(-self.scores[kept], kind="stable")]
        return self.ids[kept].astype(str).tolist()


#: id -> position maps of recent scopes, keyed by the ids array itself: every search of a library shares
#: its store snapshot's ids array, so the 1M-entry map is built once per snapshot, not once per search.
_POSITION_MAPS: dict[int, tuple[weakref.ref[np.ndarray], dict[str, int]]] = {}


def _positions(ids: np.ndarray) -> dict[str, int]:
    if isinstance(ids.base, np.ndarray) and ids.base.shape == ids.shape and ids.base.dtype == ids.dtype:
        ids = ids.base  # a read-only view (an ImageSet's) of the same ids
    key = id(ids)
    cached = _POSITION_MAPS.get(key)
    if cached is not None and cached[0]() is ids:
        return cached[1]
    positions = {image_id: i for i, image_id in enumerate(ids.tolist())}
    for stale in [k for k, (ref, _) in _POSITION_MAPS.items() if ref() is None]:
        del _POSITION_MAPS[stale]
    while len(_POSITION_MAPS) >= 4:
        del _POSITION_MAPS[next(iter(_POSITION_MAPS))]
    _POSITION_MAPS[key] = (weakref.ref(ids), positions)
    return positions


