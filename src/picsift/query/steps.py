"""How an :class:`~picsift.query.imageset.ImageSet` was made: query steps as frozen dataclasses.

A :class:`Recipe` is one step (which may hold others: :class:`Filtered`, :class:`Combined`) plus
provenance (time, summary, how complete the library was). Each step writes itself as plain JSON data
with ``to_dict`` (the dict format saved collections have always held: ``{"kind": "text", ...}``) and
reads itself back with ``from_dict``; :meth:`Step.replay` runs it again on a :class:`Replayer` (the
library's queries, without remembering anything). Recipes saved by earlier versions load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import PicsiftError
from .filters import Filter, Score
from .filters import from_dict as filter_from_dict
from .filters import to_dict as filter_to_dict
from .options import Replayer, SearchOptions

if TYPE_CHECKING:
    from .imageset import ImageSet

COMBINE_OPERATORS = ("or", "and", "not")
#: What ``within`` was when it was neither the library (None) nor a collection: not recorded.
UNRECORDED = "ids"


class Step:
    """One query step. Subclasses are frozen dataclasses named in :data:`STEPS` by their ``kind``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def keys(cls) -> set[str]:
        """The dict keys this step reads (the rest of a recipe is provenance)."""
        return {"kind"} | {f.name for f in fields(cls)}  # type: ignore[arg-type]

    def replay(self, on: Replayer) -> ImageSet:
        raise NotImplementedError

    def filtered(self, filters: tuple[Filter, ...]) -> Step:
        """This step followed by ``filters``."""
        return Filtered(self, filters)

    def headed(self, n: int) -> Step:
        """This step, then its first ``n`` images."""
        return Head(self, n)

    def within_label(self) -> str | None:
        """What this step is as a ``within``: a collection's name, None for the library, else "ids"."""
        return UNRECORDED


def _within(within: str | None, what: str) -> str | None:
    if within == UNRECORDED:
        raise PicsiftError(f"it was {what} within a list of ids, which is not recorded")
    return within


@dataclass(frozen=True)
class _Search(Step):
    """A search; ``filters``, ``score_range`` (``[low, high)``) and ``limit`` apply after it on replay."""

    options: SearchOptions = field(default_factory=SearchOptions)
    within: str | None = None
    model: str | None = None
    filters: tuple[Filter, ...] = ()
    score_range: tuple[float | None, float | None] | None = None
    query_field: ClassVar[str]

    @property
    def query(self) -> list[str]:
        return list(getattr(self, self.query_field))

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        data: dict[str, Any] = {
            "kind": self.kind, self.query_field: self.query, "model": self.model, "limit": o.limit,
            "min_score": o.min_score, "max_score": o.max_score, "combine": o.combine,
            "negative_text": list(o.negative_text) if isinstance(o.negative_text, tuple) else o.negative_text,
            "negative_images": [str(i) for i in o.negative_images], "negative_weight": o.negative_weight,
            "within": self.within,
        }
        if o.objects:
            data["objects"] = True
        if o.regions:
            data["regions"] = True
        if self.filters:
            data["filters"] = [filter_to_dict(f) for f in self.filters]
        if self.score_range is not None:
            data["score_range"] = list(self.score_range)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        negative = data.get("negative_text")
        options = SearchOptions(
            limit=data.get("limit"), min_score=data.get("min_score"), max_score=data.get("max_score"),
            negative_text=tuple(negative) if isinstance(negative, list) else negative,
            negative_images=tuple(data.get("negative_images") or ()),
            negative_weight=data.get("negative_weight", 0.5), combine=data.get("combine") or "mean",
            objects=data.get("objects") is True, regions=data.get("regions") is True)
        score_range = data.get("score_range")
        query = {cls.query_field: tuple(data.get(cls.query_field) or ())}
        filters = tuple(filter_from_dict(f) for f in data.get("filters") or ())
        return cls(**query, options=options, within=data.get("within"), model=data.get("model"),  # type: ignore[arg-type]
                   filters=filters, score_range=None if score_range is None else (score_range[0], score_range[1]))

    @classmethod
    def keys(cls) -> set[str]:
        return {"kind", cls.query_field, "model", "limit", "min_score", "max_score", "combine", "negative_text",
                "negative_images", "negative_weight", "within", "filters", "score_range", "objects", "regions"}

    def filtered(self, filters: tuple[Filter, ...]) -> Step:
        return replace(self, filters=self.filters + tuple(filters))

    def headed(self, n: int) -> Step:  # replaying a search cuts to its limit after the range and filters
        limit = n if self.options.limit is None else min(n, self.options.limit)
        return replace(self, options=replace(self.options, limit=limit))

    def replay(self, on: Replayer) -> ImageSet:
        within = _within(self.within, "searched")
        if self.model and self.model != on.model:
            raise PicsiftError(f"it was made with model {self.model}; open the library with that model to re-run it")
        # every match first: the limit applies after the score range and filters, as in the app
        options = replace(self.options, limit=None, negative_images=(), distribution=True)
        run = on.search if self.query_field == "text" else on.similar
        results = run(self.query, options, within)
        filters = list(self.filters)
        low, high = self.score_range or (None, None)
        if low is not None:
            filters.append(Score(min=low))
        found = on.filter(*filters, within=results) if filters else results
        if high is not None and len(results.scores) and high < float(results.scores.max()):
            found = found.below(high)  # as the app's histogram: [low, high), the top bin closed
        found = found.head(self.options.limit) if self.options.limit is not None else found
        return found.with_recipe(results.recipe.with_step(self))


@dataclass(frozen=True)
class TextSearch(_Search):
    """Images matching text prompts."""

    text: tuple[str, ...] = ()
    kind: ClassVar[str] = "text"
    query_field: ClassVar[str] = "text"


@dataclass(frozen=True)
class ImageSearch(_Search):
    """Images similar to reference images (ids or paths; a PIL image is recorded by its size only)."""

    images: tuple[str, ...] = ()
    kind: ClassVar[str] = "images"
    query_field: ClassVar[str] = "images"


@dataclass(frozen=True)
class Sample(Step):
    """A diverse sample (see :meth:`picsift.Library.sample`)."""

    method: str = "random"
    n_clusters: int | None = None
    size: int = 50
    seed: int = 0
    within: str | None = None
    exclude: str | None = None
    exclude_labelled: bool = False
    uncertainty: bool = False
    kind: ClassVar[str] = "sample"

    def replay(self, on: Replayer) -> ImageSet:
        _within(self.within, "sampled")
        if self.exclude == UNRECORDED or self.uncertainty:
            raise PicsiftError("it excluded a list of ids or used uncertainty scores, which are not recorded")
        return on.sample(self.size, method=self.method, clusters=self.n_clusters, seed=self.seed, within=self.within,
                         exclude=self.exclude, exclude_labelled=self.exclude_labelled)


@dataclass(frozen=True)
class Outliers(Step):
    """The ``n`` images farthest from their ``k`` nearest neighbours."""

    n: int = 50
    k: int = 10
    within: str | None = None
    kind: ClassVar[str] = "outliers"

    def replay(self, on: Replayer) -> ImageSet:
        return on.outliers(self.n, self.k, _within(self.within, "found"))


@dataclass(frozen=True)
class NearDuplicates(Step):
    """Groups of near-identical images (similarity at least ``threshold``)."""

    threshold: float = 0.95
    within: str | None = None
    kind: ClassVar[str] = "near_duplicates"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold, "within": self.within}

    def replay(self, on: Replayer) -> ImageSet:
        return on.near_duplicates(self.threshold, _within(self.within, "found"))


@dataclass(frozen=True)
class LabelMistakes(Step):
    """Labelled images of ``field`` ranked most likely wrong first (``limit``: the first so many)."""

    field: str = "folder"
    limit: int | None = 50
    within: str | None = None
    kind: ClassVar[str] = "label_mistakes"

    def replay(self, on: Replayer) -> ImageSet:
        return on.label_mistakes(self.field, limit=self.limit, within=_within(self.within, "checked"))


@dataclass(frozen=True)
class ByHand(Step):
    """Images chosen by hand (or made by a step this version does not know: ``made`` names it)."""

    made: str = "ids"
    kind: ClassVar[str] = "ids"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.made}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(str(data.get("kind", "ids")))

    def replay(self, on: Replayer) -> ImageSet:
        raise PicsiftError(f"it was made by hand ({self.made}); there is nothing to re-run")


@dataclass(frozen=True)
class FromCollection(Step):
    """The images of a saved collection, as it is when replayed."""

    name: str = ""
    kind: ClassVar[str] = "collection"

    def replay(self, on: Replayer) -> ImageSet:
        return on.collection(self.name)

    def within_label(self) -> str | None:
        return self.name


@dataclass(frozen=True)
class WholeLibrary(Step):
    """Every image of the library."""

    kind: ClassVar[str] = "library"

    def replay(self, on: Replayer) -> ImageSet:
        return on.filter(within=None)

    def within_label(self) -> str | None:
        return None


@dataclass(frozen=True)
class Filtered(Step):
    """``source``'s images that pass every filter (AND), in ``source``'s order."""

    source: Step = field(default_factory=WholeLibrary)
    filters: tuple[Filter, ...] = ()
    kind: ClassVar[str] = "filter"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "within": self.source.within_label()}
        if not isinstance(self.source, (FromCollection, WholeLibrary, ByHand)):
            data["source"] = self.source.to_dict()
        return {**data, "filters": [filter_to_dict(f) for f in self.filters]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        within = data.get("within")
        if data.get("source") is not None:
            source = step_from_dict(data["source"])
        else:
            source = WholeLibrary() if within is None else ByHand() if within == UNRECORDED else FromCollection(within)
        return cls(source, tuple(filter_from_dict(f) for f in data.get("filters") or ()))

    @classmethod
    def keys(cls) -> set[str]:
        return {"kind", "within", "source", "filters"}

    def filtered(self, filters: tuple[Filter, ...]) -> Step:
        return Filtered(self.source, self.filters + tuple(filters))

    def replay(self, on: Replayer) -> ImageSet:
        if isinstance(self.source, ByHand):
            raise PicsiftError("it was filtered within a list of ids, which is not recorded")
        if isinstance(self.source, (FromCollection, WholeLibrary)):  # filtered in SQL, in the collection's order
            return on.filter(*self.filters, within=self.source.within_label())
        return on.filter(*self.filters, within=self.source.replay(on))


@dataclass(frozen=True)
class Combined(Step):
    """``first OR second`` (union), ``AND`` (in both) or ``NOT`` (in first, not in second)."""

    how: str = "or"
    first: Step = field(default_factory=WholeLibrary)
    second: Step = field(default_factory=WholeLibrary)
    kind: ClassVar[str] = "combine"

    def __post_init__(self) -> None:
        if self.how not in COMBINE_OPERATORS:
            raise PicsiftError(f"how={self.how!r}; valid choices: {', '.join(COMBINE_OPERATORS)}")

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.first, FromCollection) and isinstance(self.second, FromCollection):
            return {"kind": self.kind, "how": self.how, "of": [self.first.name, self.second.name]}
        return {"kind": self.kind, "how": self.how, "first": self.first.to_dict(), "second": self.second.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        if "of" in data:
            first, second = (FromCollection(str(n)) for n in data["of"])
        else:
            first, second = step_from_dict(data["first"]), step_from_dict(data["second"])
        return cls(str(data.get("how", "or")), first, second)

    @classmethod
    def keys(cls) -> set[str]:
        return {"kind", "how", "of", "first", "second"}

    def replay(self, on: Replayer) -> ImageSet:
        return self.first.replay(on).combine(self.second.replay(on), self.how)


@dataclass(frozen=True)
class Head(Step):
    """The first ``n`` images of ``source``."""

    source: Step = field(default_factory=WholeLibrary)
    n: int = 0
    kind: ClassVar[str] = "head"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "source": self.source.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(step_from_dict(data.get("source") or {}), int(data.get("n", 0)))

    def headed(self, n: int) -> Step:
        return Head(self.source, min(n, self.n))

    def replay(self, on: Replayer) -> ImageSet:
        return self.source.replay(on).head(self.n)


#: Every step, by the ``kind`` its dict carries; an unknown kind loads as :class:`ByHand`.
STEPS: dict[str, type[Step]] = {cls.kind: cls for cls in (
    TextSearch, ImageSearch, Sample, Outliers, NearDuplicates, ByHand, FromCollection, WholeLibrary, Filtered, Combined,
    Head, LabelMistakes,
)}


def step_from_dict(data: Mapping[str, Any]) -> Step:
    """The step ``data`` describes (a dict written by :meth:`Step.to_dict`, or by an earlier picsift)."""
    if not isinstance(data, Mapping):
        raise PicsiftError(f"a recipe step is a dict with a 'kind', got {data!r}")
    return STEPS.get(str(data.get("kind")), ByHand).from_dict(data)


@dataclass(frozen=True)
class Recipe:
    """A step and its provenance: ``time``, ``summary``, ``complete``, ``searched_images``, ``total_images``,
    ``rerun``, and any key an earlier or later picsift wrote (kept, so that saving loses nothing)."""

    step: Step = field(default_factory=ByHand)
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready data (the format collections are saved with)."""
        return {**self.step.to_dict(), **self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe ``data`` describes, including those saved by earlier versions."""
        step = step_from_dict(data)
        known = type(step).keys()
        return cls(step, {k: v for k, v in data.items() if k not in known})

    def with_step(self, step: Step) -> Recipe:
        return Recipe(step, self.info)

    def with_info(self, **info: Any) -> Recipe:
        return Recipe(self.step, {**self.info, **info})

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)
