"""What the search steps and replaying them take: the options ``search`` and ``similar`` share, and the
:class:`Replayer` a step runs on (see :mod:`picsift.query.steps`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .filters import Filter
    from .imageset import ImageSet


@dataclass(frozen=True)
class SearchOptions:
    """The options ``search`` and ``similar`` share (see :meth:`picsift.Library.search`)."""

    limit: int | None = 100
    min_score: float | None = None
    max_score: float | None = None
    negative_text: str | tuple[str, ...] | None = None
    negative_images: tuple[Any, ...] = ()
    negative_weight: float = 0.5
    combine: str = "mean"
    distribution: bool = True
    objects: bool = False  # search the labelled objects' crops, not the images (see picsift.query.object_search)
    regions: bool = False  # score images by their best region too (see picsift.query.region_search)

    @classmethod
    def of(cls, limit: int | None, min_score: float | None, max_score: float | None,
           negative_text: str | Sequence[str] | None, negative_images: Sequence[Any] | None, negative_weight: float,
           combine: str, distribution: bool, objects: bool = False, regions: bool = False) -> SearchOptions:
        """The options as ``search`` and ``similar`` take them (sequences become tuples)."""
        negative = negative_text if negative_text is None or isinstance(negative_text, str) else tuple(negative_text)
        return cls(limit, min_score, max_score, negative, tuple(negative_images or ()), negative_weight, combine,
                   distribution, bool(objects), bool(regions))


class Replayer(Protocol):
    """What replaying a step needs: the library's queries, none of which remembers its result."""

    model: str

    def search(self, text: list[str], options: SearchOptions, within: Any) -> ImageSet: ...
    def similar(self, images: list[str], options: SearchOptions, within: Any) -> ImageSet: ...
    def sample(self, n: int, *, method: str, clusters: int | None, seed: int, within: Any, exclude: Any,
               exclude_labelled: bool) -> ImageSet: ...
    def outliers(self, n: int, k: int, within: Any) -> ImageSet: ...
    def near_duplicates(self, threshold: float, within: Any) -> ImageSet: ...
    def label_mistakes(self, field: str, *, limit: int | None, within: Any) -> ImageSet: ...
    def collection(self, name: str) -> ImageSet: ...
    def filter(self, *filters: Filter, within: Any) -> ImageSet: ...
