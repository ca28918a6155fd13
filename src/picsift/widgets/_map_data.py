"""What the explorer draws, in the shape it crosses to the browser: points, colour codes, legends, tooltips.

Points cross as float32 ``(n, 2)`` or ``(n, 3)``; from :data:`QUANTISE_FROM` points on, as uint16 steps
between their bounds (:func:`quantise`: 4 bytes a 2D point). Colours cross as one small code per point:
``uint8`` category slots (a palette entry each) or ``uint16`` steps of a continuous value between
``span[0]`` and ``span[1]`` (:data:`MISSING_STEP` = no value). 1M 2D points with a categorical colour are
5 MB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A colouring by category shows this many categories (most frequent first); the rest share "other".
MAX_CATEGORIES = 10
#: Continuous values are quantised to this many steps (uint16); the last code means "no value".
MISSING_STEP = 65535
#: From this many points on, coordinates cross as uint16 steps (:func:`quantise`) instead of float32.
QUANTISE_FROM = 100_000
#: Coordinate steps per axis: 0..QUANTISE_STEPS.
QUANTISE_STEPS = 65535


@dataclass(frozen=True)
class Colors:
    """One colouring: ``codes`` per point, and how the legend reads them.

    ``kind`` is ``"category"`` (``codes`` are uint8 palette slots, ``legend`` their ``"name (count)"``
    entries) or ``"continuous"`` (``codes`` are uint16 steps from ``span[0]`` to ``span[1]``; ``legend``
    holds at most one ``"(no value) (count)"`` entry for the missing ones). ``label`` names what is shown.
    """

    kind: str
    codes: np.ndarray
    legend: list[str] = field(default_factory=list)
    span: tuple[float, float] = (0.0, 1.0)
    label: str = ""


def categories(labels: Sequence[Any] | np.ndarray | pd.Series) -> tuple[list[str], np.ndarray]:
    """Legend entries (``"name (count)"``) and each point's category slot (its palette colour).

    Categories come most frequent first (ties by name); past :data:`MAX_CATEGORIES` - 1 of them, the
    rarer ones share one entry, ``other``. A label in parentheses means "no value" (``(no objects)``): it
    takes the last slot, the palette's grey, so that labelled points stand out; the legend is padded with
    ``""`` up to it. Missing values (None, NaN) read as ``(no value)``. Slots are float32 (what older
    callers expect); :func:`category_colors` makes them uint8.
    """
    codes, uniques = pd.factorize(labels if isinstance(labels, pd.Series) else np.asarray(labels, dtype=object))
    names = [str(u) for u in uniques]
    if (codes < 0).any():  # None / NaN
        names.append("(no value)")
        codes = np.where(codes < 0, len(names) - 1, codes)
    return _legend_slots(names, codes)


def _legend_slots(names: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    counts = np.bincount(codes, minlength=len(names)) if len(codes) else np.zeros(len(names), np.int64)
    merged: dict[str, list[int]] = {}  # values that read the same (1 and "1") share an entry
    for i, name in enumerate(names):
        merged.setdefault(name, []).append(i)
    unique = sorted(merged)
    total = {name: int(counts[merged[name]].sum()) for name in unique}
    order = sorted(unique, key=lambda name: -total[name])  # stable: ties stay in name order
    none = [n for n in order if n.startswith("(") and n.endswith(")")]
    regular = [n for n in order if n not in none]
    slots = MAX_CATEGORIES - (1 if none else 0)  # the last (grey) slot is kept for "no value"
    shown, rest = (regular[: slots - 1], regular[slots - 1 :]) if len(regular) > slots else (regular, [])
    slot_of = {name: k for k, name in enumerate(shown)}
    legend = [f"{name} ({total[name]:,})" for name in shown]
    if rest:
        slot_of.update({name: len(shown) for name in rest})
        legend.append(f"other ({sum(total[n] for n in rest):,})")
    if none:  # one label in practice; several would share the slot
        slot_of.update({name: MAX_CATEGORIES - 1 for name in none})
        legend += [""] * (MAX_CATEGORIES - 1 - len(legend)) + [f"{' / '.join(none)} ({sum(total[n] for n in none):,})"]
    table = np.array([slot_of[name] for name in names], dtype=np.float32)
    return legend, table[codes] if len(codes) else np.zeros(0, np.float32)


def category_colors(labels: Sequence[Any] | np.ndarray | pd.Series, label: str = "") -> Colors:
    """A categorical colouring of ``labels`` (names in the legend, with counts)."""
    legend, slots = categories(labels)
    return Colors("category", slots.astype(np.uint8), legend, label=label)


def continuous_colors(values: np.ndarray | Sequence[float], label: str = "") -> Colors:
    """A continuous colouring: values quantised to uint16 steps over their range (NaN: no value)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Colors("continuous", np.full(len(values), MISSING_STEP, np.uint16),
                      [f"(no value) ({len(values):,})"] if len(values) else [], (0.0, 1.0), label)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    steps = np.full(len(values), MISSING_STEP, np.uint16)
    scale = (MISSING_STEP - 1) / (hi - lo) if hi > lo else 0.0
    steps[finite] = np.rint((values[finite] - lo) * scale).astype(np.uint16)
    missing = int((~finite).sum())
    return Colors("continuous", steps, [f"(no value) ({missing:,})"] if missing else [], (lo, hi), label)


def is_categorical(values: pd.Series) -> bool:
    """Whether a column reads as categories: text, booleans, pandas categories, or integers with few values."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_integer_dtype(dtype):
        return int(values.nunique(dropna=True)) <= MAX_CATEGORIES
    return not pd.api.types.is_numeric_dtype(dtype)


def column_colors(values: pd.Series, label: str) -> Colors:
    """Colour by a DataFrame column: categories for text/booleans/few integers, a colour bar for numbers."""
    if is_categorical(values):
        return category_colors(values, label)
    return continuous_colors(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
                             label)


def frame_points(data: pd.DataFrame, x: str, y: str, z: str | None = None) -> np.ndarray:
    """Columns ``x``, ``y`` (and ``z``) of ``data`` as float32 ``(n, 2|3)``; names a missing or bad column."""
    names = [x, y] if z is None else [x, y, z]
    missing = [name for name in names if name not in data.columns]
    if missing:
        raise KeyError(f"no column {missing[0]!r} in the data; columns: {', '.join(map(str, data.columns))}")
    try:
        points = data[names].to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"columns {names} must hold numbers to be drawn as coordinates") from e
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum()):,} rows have a missing or infinite coordinate in {names}"
                         f" (the first is row {int(np.flatnonzero(bad)[0])}); drop or fill them first")
    return points


def quantise(points: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """``points`` as uint16 steps from their minimum to their maximum on each axis, and those bounds.

    A coordinate comes back as ``lo + step * (hi - lo) / QUANTISE_STEPS``, at most half a step from the
    original: the browser caps the 2D zoom where half a step is half a pixel (see ``js/explorer/camera.js``),
    so no point is drawn more than a pixel from where float32 would put it.
    """
    lo = points.min(axis=0).astype(np.float64)
    hi = points.max(axis=0).astype(np.float64)
    span = np.where(hi > lo, hi - lo, 1.0)
    steps = np.rint((points - lo) * (QUANTISE_STEPS / span))
    return steps.astype(np.uint16), [lo.tolist(), hi.tolist()]


def format_value(value: Any) -> str:
    """A tooltip's text for one value: numbers rounded to what a reader needs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        return f"{number:.4g}" if abs(number) < 1e5 else f"{number:,.0f}"
    text = str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def bounds(points: np.ndarray) -> list[list[float]]:
    """``[[min...], [max...]]`` of ``points`` (what the front-end fits its view to)."""
    if not len(points):
        return []
    return [points.min(axis=0).astype(float).tolist(), points.max(axis=0).astype(float).tolist()]


#: With ``equal_axes=None``, a DataFrame's x and y get their own scales when their ranges differ more than this.
STRETCH_ABOVE = 4.0


def equal_ranges(points: np.ndarray) -> bool:
    """Whether x and y span similar ranges (within :data:`STRETCH_ABOVE` times): then they share one scale."""
    if len(points) < 2:
        return True
    spans = np.ptp(points[:, :2], axis=0).astype(float)
    if spans.min() <= 0:
        return True
    return bool(spans.max() / spans.min() <= STRETCH_ABOVE)
