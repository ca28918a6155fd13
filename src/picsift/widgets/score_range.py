"""The score range: a histogram of every score in scope, a two-handle slider, presets, a suggestion."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from ..query.imageset import histogram
from ._base import PicsiftWidget
from ._protocol import ARRAY_SERIALIZERS

#: Knee detection works on this many points of the sorted score curve (exact enough, constant time).
KNEE_POINTS = 2048


def suggest_threshold(scores: np.ndarray) -> float | None:
    """A score threshold separating the few strong matches from the bulk, from the shape of the scores.

    If the upper half of the sorted scores has a clear gap (wider than a tenth of the whole range),
    the threshold sits in its middle; otherwise at the knee of the descending score curve: the point
    farthest from the straight line between its ends (the "Kneedle" idea).
    """
    scores = np.asarray(scores)
    if scores.dtype != np.float32:
        scores = scores.astype(np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) < 3 or scores.max() == scores.min():
        return None
    # sorted in float32 when they are (0.6x the time of float64 at 1M), then widened: exact, so the same curve
    curve = np.sort(scores)[::-1].astype(np.float64)
    spread = curve[0] - curve[-1]
    upper = curve[: max(2, len(curve) // 2)]
    gaps = upper[:-1] - upper[1:]
    widest = int(np.argmax(gaps))
    if gaps[widest] > 0.1 * spread:
        return float((upper[widest] + upper[widest + 1]) / 2)
    if len(curve) > KNEE_POINTS:
        curve = curve[np.linspace(0, len(curve) - 1, KNEE_POINTS).astype(np.int64)]
    x = np.linspace(0.0, 1.0, len(curve))
    y = (curve - curve[-1]) / spread
    knee = int(np.argmax(np.abs((1.0 - x) - y)[1:-1])) + 1
    return float(curve[knee])


def count_in_range(scores: np.ndarray, low: float, high: float, top: float) -> int:
    """Scores in ``[low, high)``, or ``[low, high]`` when ``high`` is the top edge (as histogram bins)."""
    keep = scores >= low
    keep &= scores <= high if high >= top else scores < high
    return int(keep.sum())


class ScoreRange(PicsiftWidget):
    """Histogram of scores with a range slider snapping to bin edges, presets and a suggested threshold.

    ``score_range`` is ``[low, high]``; ``[]`` means no filter (nothing searched yet).
    """

    _bundle = "score_range"
    bins = traitlets.Int(50, min=1).tag(sync=True)
    score_range = traitlets.List(traitlets.Float(), default_value=[], maxlen=2).tag(sync=True)
    suggested = traitlets.Float(None, allow_none=True).tag(sync=True)
    _counts = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)
    _edges = traitlets.Any(None).tag(sync=True, **ARRAY_SERIALIZERS)

    def __init__(self, scores: np.ndarray | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.scores = np.zeros(0, np.float32)
        if scores is not None:
            self.set_scores(scores)

    def set_scores(self, scores: np.ndarray | None) -> None:
        """Show the distribution of ``scores`` (None or empty: clear) and reset the range to all of it."""
        scores = np.zeros(0, np.float32) if scores is None else np.asarray(scores, dtype=np.float32)
        scores = scores[np.isfinite(scores)]
        self.scores = scores
        with self.hold_sync():
            if not len(scores):
                self._counts, self._edges, self.suggested, self.score_range = None, None, None, []
                return
            low, high = float(scores.min()), float(scores.max())
            if high == low:
                low, high = low - 0.5e-3, high + 0.5e-3
            counts, edges = histogram(scores, bins=self.bins, range=(low, high))
            self._counts = counts.astype(np.int32)
            self._edges = edges.astype(np.float64)
            suggested = suggest_threshold(scores)
            # snapped to a bin edge, so the histogram's bars count exactly what the gallery shows
            self.suggested = None if suggested is None else float(edges[np.argmin(np.abs(edges - suggested))])
            self.score_range = [float(edges[0]), float(edges[-1])]

    @property
    def count(self) -> int:
        """How many scores lie in the current range."""
        if not len(self.scores) or len(self.score_range) != 2 or self._edges is None:
            return len(self.scores)
        low, high = self.score_range
        return count_in_range(self.scores, low, high, top=float(self._edges[-1]))

    def select_above(self, threshold: float | None = None) -> None:
        """Preset: the most similar images, ``[threshold, max]`` (default: the suggested threshold)."""
        self._preset(threshold, above=True)

    def select_below(self, threshold: float | None = None) -> None:
        """Preset: the edge cases, ``[min, threshold)``."""
        self._preset(threshold, above=False)

    def select_all(self) -> None:
        if self._edges is not None:
            self.score_range = [float(self._edges[0]), float(self._edges[-1])]

    def _preset(self, threshold: float | None, above: bool) -> None:
        if self._edges is None:
            return
        edges = self._edges
        value = self.suggested if threshold is None else threshold
        if value is None:
            value = float(np.median(self.scores))
        self.score_range = [float(value), float(edges[-1])] if above else [float(edges[0]), float(value)]
