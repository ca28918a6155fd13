"""The filters panel: metadata filters (AND) on the current view, shown as removable chips.

``filters`` holds the active filters as :func:`picsift.query.filters.to_dict` data, so they can be set from
Python too (``app.filters.filters = [ObjectCount("car", 2)]``); every value is validated by
:func:`picsift.query.filters.from_dict` first, and a bad one is an error that changes nothing. The score
range has its own widget (:class:`~picsift.widgets.ScoreRange`), so the panel offers the other fields.
"""

from __future__ import annotations

from typing import Any, Protocol

import traitlets

from ..errors import PicsiftError
from ..library import Library
from ..query.filters import Filter, describe, from_dict, to_dict
from ._base import PicsiftWidget

JOB_STATUSES = Library.JOB_STATUSES


class LabelSource(Protocol):
    """What the pickers read from a library's labels (``library.labels``)."""

    def classes(self) -> Any: ...

    def tag_values(self, *, objects: bool = False, limit: int = 50) -> Any: ...

    def job_names(self) -> list[str]: ...

    def authors(self) -> list[str]: ...

#: Fields that name something (a class, tag, job, author): an empty one would silently match nothing.
REQUIRED_TEXT = {"ObjectCount": "cls", "ImageTag": "name", "ObjectTag": "name", "JobStatus": "job",
                 "ObjectAuthor": "author"}
#: At most this many known values per tag name are offered as suggestions.
MAX_TAG_VALUES = 200


def normalise(item: Filter | dict[str, Any]) -> dict[str, Any]:
    """A filter (object or dict) as validated :func:`~picsift.query.filters.to_dict` data, or PicsiftError."""
    if not isinstance(item, dict):
        return to_dict(item)
    kind = str(item.get("type"))
    field = REQUIRED_TEXT.get(kind)
    if field is not None and field in item and not str(item[field] or "").strip():
        raise PicsiftError(f"{kind} filter: choose a {field} (it is empty)")
    if kind == "ObjectCount":  # typed into number inputs: say what is wrong rather than fail in a comparison
        item = dict(item)
        for bound in ("min", "max"):
            value = item.get(bound)
            if isinstance(value, float) and value.is_integer():
                item[bound] = int(value)
            elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise PicsiftError(f"ObjectCount {bound} must be a whole number, got {value!r}")
    return to_dict(from_dict(item))


class FiltersPanel(PicsiftWidget):
    """Active metadata filters (chips) and an "Add filter" row: field, condition, Add.

    Public traits: ``filters`` (list of filter dicts, see :func:`picsift.query.filters.to_dict`), ``summary``
    (set by the app, e.g. "24 of 36 images pass 2 filters"). ``_choices`` holds the pickers' options
    (classes, tag names and their known values, jobs, statuses, authors), refreshed by :meth:`refresh`.
    """

    _bundle = "filters"
    filters: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)  # filter objects become dicts
    summary = traitlets.Unicode("").tag(sync=True)
    _descriptions = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _choices = traitlets.Dict().tag(sync=True)
    _passing = traitlets.Int(-1).tag(sync=True)  # images passing the filters (-1: nothing shown)
    _total = traitlets.Int(-1).tag(sync=True)  # images in the view before filtering

    def __init__(self, metadata: LabelSource | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.metadata = metadata
        self.observe(self._describe, "filters")
        self._describe()
        self.refresh()

    @traitlets.validate("filters")
    def _validate(self, proposal: Any) -> list[dict[str, Any]]:
        return [normalise(item) for item in proposal["value"]]

    def _describe(self, _change: Any = None) -> None:
        self._descriptions = [describe(item) for item in self.active]

    @property
    def active(self) -> list[Filter]:
        """The active filters as :mod:`picsift.query.filters` objects (ANDed)."""
        return [from_dict(item) for item in self.filters]

    def add(self, item: Filter | dict[str, Any]) -> None:
        """Add a filter (a :mod:`picsift.query.filters` object or its dict); an invalid one changes nothing."""
        self.filters = [*self.filters, normalise(item)]

    def remove(self, index: int) -> None:
        """Remove the filter at ``index`` (as listed in :attr:`filters`)."""
        if not 0 <= index < len(self.filters):
            raise IndexError(f"no filter at position {index}; valid positions: 0..{len(self.filters) - 1}"
                             if self.filters else f"no filter at position {index}: there are no filters")
        self.filters = [f for i, f in enumerate(self.filters) if i != index]

    def clear(self) -> None:
        self.filters = []

    def set_counts(self, passing: int, total: int) -> None:
        """Say how many of the ``total`` images in view pass the active filters (the app calls this)."""
        n = len(self.filters)
        with self.hold_sync():
            self._passing, self._total = passing, total
            self.summary = f"{passing} of {total} images pass {n} filter{'s' if n != 1 else ''}" if n else ""

    def refresh(self) -> None:
        """Reload the pickers' options from the library's labelled data."""
        if self.metadata is None:
            self._choices = {"statuses": list(JOB_STATUSES)}
            return
        meta = self.metadata
        self._choices = {
            "classes": [c[0] for c in meta.classes()],
            "tags": meta.tag_values(limit=MAX_TAG_VALUES),
            "object_tags": meta.tag_values(objects=True, limit=MAX_TAG_VALUES),
            "jobs": meta.job_names(),
            "statuses": list(JOB_STATUSES),
            "authors": meta.authors(),
        }

    # -- messages ---------------------------------------------------------------------------------
    def _on_add_filter(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        item = content.get("filter")
        if not isinstance(item, dict):
            raise PicsiftError(f"add_filter needs a filter dict, got {item!r}")
        self.add(item)

    def _on_remove_filter(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.remove(int(content.get("index", -1)))

    def _on_refresh_choices(self, _content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.refresh()
