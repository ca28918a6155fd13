"""Scoring the store against a query, and the :class:`Results` a search returns.

Scores are cosine similarities. For several reference vectors, ``combine="mean"`` scores against the
normalised mean of the references (one direction that sits between them) and ``combine="max"``
takes each image's best similarity to any single reference (finds images like *any* of them).
Negative references subtract: ``score = sim(positives) - negative_weight * sim(negatives)``, with
negatives combined the same way as positives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .store import StoreSnapshot

Combine = Literal["mean", "max"]
COMBINE_CHOICES = ("mean", "max")


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def query_vectors(references: np.ndarray, combine: str) -> np.ndarray:
    """The vectors a set of references is scored with: one for ``mean``, all of them for ``max``."""
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"combine={combine!r}; valid choices: {', '.join(COMBINE_CHOICES)}")
    references = normalise(references)
    return normalise(references.mean(axis=0)) if combine == "mean" else references


def score_scope(
    snapshot: StoreSnapshot,
    positions: np.ndarray | None,
    positives: np.ndarray,
    negatives: np.ndarray | None = None,
    *,
    combine: str = "mean",
    negative_weight: float = 0.5,
) -> np.ndarray:
    """Exact scores of every image in scope (``positions`` into the snapshot; None: all)."""
    rows = snapshot.rows if positions is None else snapshot.rows[positions]
    if not len(rows):
        return np.zeros(0, np.float32)
    # Scoring the whole matrix and picking rows streams memory once; gathering rows first copies them.
    gather = len(rows) < 0.3 * snapshot.matrix.shape[0]
    matrix = np.asarray(snapshot.matrix[rows]) if gather else snapshot.matrix

    def best(vectors: np.ndarray) -> np.ndarray:
        scores = matrix @ query_vectors(vectors, combine).T
        scores = scores.max(axis=1) if scores.shape[1] > 1 else scores[:, 0]
        return scores if gather else scores[rows]

    scores = best(positives)
    if negatives is not None and len(negatives):
        scores = scores - negative_weight * best(negatives)
    return scores.astype(np.float32, copy=False)


def select(scores: np.ndarray, limit: int | None, min_score: float | None, max_score: float | None) -> np.ndarray:
    """Positions of the images that pass the thresholds (both inclusive), best first, at most ``limit``."""
    keep = np.ones(len(scores), dtype=bool)
    if min_score is not None:
        keep &= scores >= min_score
    if max_score is not None:
        keep &= scores <= max_score
    candidates = np.flatnonzero(keep)
    if limit is not None and limit < len(candidates):
        part = np.argpartition(-scores[candidates], limit - 1)[:limit]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


@dataclass
class Results:
    """A search's results and the score distribution it was drawn from.

    Attributes
    ----------
    df
        One row per result, best first: ``rank``, ``id``, ``path``, ``score``.
    scores
        The score of every image in scope (not only the results), for histograms.
    scope_ids
        The image ids those scores belong to, aligned with :attr:`scores`.
    query
        How the search was made (the recipe saved with collections). ``complete`` is False when the
        library still had images to embed: see :attr:`partial`.
    """

    df: pd.DataFrame
    scores: np.ndarray
    scope_ids: np.ndarray
    query: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def partial(self) -> bool:
        """True when some images were not embedded yet at search time (an update was running or pending):
        the results cover ``query["searched_images"]`` of ``query["total_images"]``."""
        return self.query.get("complete") is False

    @property
    def ids(self) -> list[str]:
        return self.df["id"].tolist()

    @property
    def paths(self) -> list[str]:
        return self.df["path"].tolist()

    def to_pandas(self) -> pd.DataFrame:
        """A copy of the result table (``rank``, ``id``, ``path``, ``score``)."""
        return self.df.copy()

    def histogram(self, bins: int = 50, range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Counts and bin edges of the scores of every image in scope."""
        if not len(self.scores):
            return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
        return np.histogram(self.scores, bins=bins, range=range)

    def distribution(self, bins: int = 50) -> dict[str, Any]:
        """Summary statistics and a histogram of all scores in scope, JSON-ready."""
        counts, edges = self.histogram(bins)
        stats: dict[str, Any] = {"count": len(self.scores)}
        if len(self.scores):
            stats.update(
                min=float(self.scores.min()), max=float(self.scores.max()),
                mean=float(self.scores.mean()), median=float(np.median(self.scores)),
            )
        stats["histogram"] = {"counts": counts.tolist(), "edges": [round(float(e), 6) for e in edges]}
        return stats

    def __repr__(self) -> str:
        partial = (f", partial: {self.query.get('searched_images')} of {self.query.get('total_images')} images"
                   if self.partial else "")
        return f"<Results: {len(self)} of {len(self.scores)} images, query={self.query.get('summary')!r}{partial}>"

    def _repr_html_(self) -> str:
        partial = (f" (partial: {self.query.get('searched_images')} of {self.query.get('total_images')} images "
                   "embedded so far)") if self.partial else ""
        return f"<p>{len(self)} of {len(self.scores)} images{partial}</p>" + self.df.head(50).to_html(index=False)
