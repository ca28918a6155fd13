"""Which scores a search keeps: ``select`` (best first, ties by position), on small and large scopes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from picsift.query.search import select


def _reference(scores: np.ndarray, limit: int | None, lo: float | None, hi: float | None) -> np.ndarray:
    keep = np.ones(len(scores), bool)
    if lo is not None:
        keep &= scores >= lo
    if hi is not None:
        keep &= scores <= hi
    candidates = np.flatnonzero(keep)
    order = np.lexsort((candidates, -scores[candidates]))  # best first, then earlier position first
    return candidates[order][:limit]


@pytest.mark.parametrize("n", [1_000, 300_000])  # below and above the size where torch's top-k takes over
@pytest.mark.parametrize("limit, lo, hi", [(100, None, None), (None, None, None), (50, 0.5, None), (7, None, -1.0)])
def test_select_keeps_the_best_in_order_with_ties_by_position(n: int, limit, lo, hi) -> None:
    rng = np.random.default_rng(n)
    scores = rng.standard_normal(n).astype(np.float32)
    scores[[5, 17, 900]] = 10.0  # a tie at the very top: position decides
    picked = select(scores, limit, lo, hi)
    np.testing.assert_array_equal(picked, _reference(scores, limit, lo, hi))
    if hi is None:  # the tie is in scope: it leads, in position order
        assert picked[:3].tolist() == [5, 17, 900]


def test_select_on_a_read_only_memory_of_scores_is_quiet() -> None:
    scores = np.linspace(0, 1, 100_000, dtype=np.float32)
    scores.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select(scores, 3, None, None).tolist() == [99_999, 99_998, 99_997]
