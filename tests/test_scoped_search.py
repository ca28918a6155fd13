"""A search ``within`` a scope: the scope's images found in the store (:class:`IdIndex`)."""

from __future__ import annotations

import numpy as np
import pytest

import picsift
import picsift.core.id_index
from picsift.core.id_index import IdIndex


def _reference_positions(ids: np.ndarray, wanted: list[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(np.asarray(ids, dtype=str), np.asarray(wanted, dtype=str)))


@pytest.mark.parametrize("seed", range(20))
def test_the_id_index_finds_exactly_the_ids_it_holds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    alphabet = list("ab") if seed % 2 else list("0123456789abcdef")  # "ab": many ids that share prefixes
    width = int(rng.integers(1, 40))
    held = sorted({"".join(rng.choice(alphabet, int(rng.integers(1, width + 1)))) for _ in range(500)})
    ids = np.array(held, dtype=object if seed % 5 == 0 else str)
    rng.shuffle(ids)
    wanted = list(rng.choice(held, 200)) + ["".join(rng.choice(alphabet, int(rng.integers(1, width + 10))))
                                            for _ in range(200)]  # repeats, and ids longer than any held
    positions = IdIndex(ids).positions(np.array(wanted))
    assert positions.dtype == np.int64
    np.testing.assert_array_equal(positions, _reference_positions(ids, wanted))
    assert IdIndex(ids).positions([]).tolist() == [] and IdIndex(np.array([], str)).positions(wanted).tolist() == []


def test_the_id_index_is_exact_when_two_held_ids_share_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picsift.core.id_index, "_keys", lambda ids: np.zeros(len(ids), np.uint64))
    ids = np.array([f"{i:032x}" for i in range(0, 3000, 3)])
    wanted = [f"{i:032x}" for i in range(0, 3000, 2)]
    index = IdIndex(ids)
    assert not index._hashed  # every key collides: it searches the ids themselves
    np.testing.assert_array_equal(index.positions(wanted), _reference_positions(ids, wanted))
