"""The checks every label goes through before it is written, whether it comes from the :class:`Metadata` API or
from an imported project (:mod:`picsift.labels.formats`): names are text, tag values are text, finite numbers or
nothing, job statuses are known, objects have a known geometry with enough finite points.

Each check raises :class:`~picsift.errors.PicsiftError` naming the bad value; ``about`` is a prefix saying
where it came from (``"project/ann/a.png.json: image 'a.png': "``), empty for a call of the API.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import PicsiftError

#: Statuses an image can have in a labelling job.
JOB_STATUSES = ("pending", "in_progress", "labelled", "in_review", "accepted", "rejected", "skipped")
ISSUE_STATUSES = ("open", "closed")
GEOMETRIES = ("rectangle", "polygon")
#: The fewest points each geometry needs (a rectangle is two corners).
MIN_POINTS = {"rectangle": 2, "polygon": 3}
_INT64 = 2**63

TagValue = str | int | float | None


def check_text(value: object, what: str, *, empty: bool = False) -> str:
    """``value`` when it is text SQLite can hold (UTF-8, not empty unless ``empty``)."""
    problem = None
    if not isinstance(value, str):
        problem = "is not text"
    elif not empty and not value.strip():
        problem = "is empty"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid UTF-8"
    if problem:
        raise PicsiftError(f"{what} {short(value)} {problem}")
    return value  # type: ignore[return-value]


def check_tag(name: object, value: object, about: str = "") -> None:
    """A tag: a name, and a value that is text, a finite 64-bit number or nothing."""
    check_text(name, f"{about}tag name")
    if isinstance(value, str):
        check_text(value, f"{about}value of tag {name!r}", empty=True)
    elif not (value is None or (isinstance(value, int) and -_INT64 <= value < _INT64)
              or (isinstance(value, float) and math.isfinite(value))):
        raise PicsiftError(f"{about}tag {name!r} has the value {short(value)}; "
                           "a tag value is text, a finite number or nothing")


def check_tags(tags: Iterable[tuple[Any, Any]], about: str = "") -> list[tuple[str, TagValue]]:
    """Every tag of ``tags`` checked with :func:`check_tag`; returns them as a list."""
    checked = []
    for name, value in tags:
        check_tag(name, value, about)
        checked.append((name, value))
    return checked


def check_author(author: object, about: str = "") -> None:
    if author is not None:
        check_text(author, f"{about}author")


def check_status(status: str) -> None:
    if status not in JOB_STATUSES:
        raise PicsiftError(f"job status {status!r}; valid choices: {', '.join(JOB_STATUSES)}")


def check_object(cls: object, geometry: object, points: object, about: str = "") -> list[list[float]]:
    """An object's class, geometry and pixel points; returns the points as ``[[x, y], ...]`` floats."""
    check_text(cls, f"{about}object class")
    if geometry not in GEOMETRIES:
        raise PicsiftError(f"{about}geometry {short(geometry)}; valid choices: {', '.join(GEOMETRIES)}")
    minimum = MIN_POINTS[str(geometry)]
    checked = _points(points)
    if checked is None or len(checked) < minimum:
        raise PicsiftError(f"{about}a {geometry} of class {cls!r} needs at least {minimum} points "
                           f"of two finite numbers, got {short(points)}")
    return checked


def _points(points: object) -> list[list[float]] | None:
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        return None
    checked = []
    for point in points:
        if isinstance(point, (str, bytes)) or not isinstance(point, Sequence) or len(point) != 2:
            return None
        x, y = _coordinate(point[0]), _coordinate(point[1])
        if x is None or y is None:
            return None
        checked.append([x, y])
    return checked


def _coordinate(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of thousands of digits, a structure nested too deep
        return f"(a {type(value).__name__} too large to show)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
