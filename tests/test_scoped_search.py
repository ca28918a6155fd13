"""A search ``within`` a scope: the scope's images found in the store (:class:`IdIndex`) and scored exactly,
checked against a brute-force numpy search over the vectors written, in float16 and float32 stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import picsift
import picsift.core.id_index
from picsift.core.catalog import Catalog
from picsift.core.id_index import IdIndex
from picsift.core.store import PRECISIONS, EmbeddingStore
from picsift.errors import PicsiftError
from picsift.query.options import SearchOptions
from picsift.query.scope import Scope
from picsift.query.search import Searcher

DIM = 32
N = 6_000


def _no_collections(name: str) -> tuple[dict, list]:
    raise PicsiftError(f"no collection {name!r}")


def _unavailable() -> None:
    raise AssertionError("a search by stored image ids needs neither the model nor the index")


@pytest.fixture(params=["float16", "float32"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Searcher, list[str], np.ndarray]:
    """A real store of clustered unit vectors, a few of them duplicated (exact ties); returns a searcher over it,
    the ids in store order and the vectors as a brute-force search sees them (float32, unit length)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 8, N)] + 0.1 * rng.normal(size=(N, DIM)).astype(np.float32)
    vectors[[40, 41, 4000]] = vectors[7]  # ties with image 7, the query below
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "m", "m", DIM, precision=request.param)
    ids = [f"{i:032x}" for i in rng.permutation(10 * N)[:N]]  # not sorted: store order is not id order
    rows = store.write_vectors(vectors)
    with catalog.transaction() as db:
        store.commit_rows(db, ids, rows)
    kept = vectors.astype(PRECISIONS[request.param][1]).astype(np.float32)
    kept /= np.linalg.norm(kept, axis=1, keepdims=True)
    searcher = Searcher(lambda: store, _unavailable, _unavailable, tmp_path, lambda n: 0, lambda: "m", lambda: "m")
    yield searcher, ids, kept
    catalog.close()


def brute_force(kept: np.ndarray, ids: list[str], scope: list[str], query: int) -> tuple[np.ndarray, np.ndarray]:
    """Store positions of the scope's images (ascending) and their scores, summed in float64."""
    wanted = set(scope)
    positions = np.array([p for p, i in enumerate(ids) if i in wanted], np.int64)
    return positions, kept[positions].astype(np.float64) @ kept[query].astype(np.float64)


def assert_same_as_brute_force(found: picsift.ImageSet, ids: list[str], positions: np.ndarray, scores: np.ndarray,
                               limit: int | None, slack: float = 4e-6) -> None:
    """The results are the ``limit`` best of the scope, best first, ties in store order, with exact scores.

    Two different images whose exact scores are within a float32 rounding of each other may come in either
    order (float64 decides them here, float32 there); exact copies of one vector must tie.
    """
    position = {i: p for p, i in enumerate(ids)}
    reference = dict(zip(positions.tolist(), scores.tolist(), strict=True))
    got = [position[i] for i in found.ids.tolist()]
    assert len(got) == len(set(got)) == min(len(positions), len(positions) if limit is None else limit)
    np.testing.assert_allclose(found.result_scores, [reference[p] for p in got], atol=2e-6)
    for j in range(len(got) - 1):
        (p, s), (q, t) = (got[j], found.result_scores[j]), (got[j + 1], found.result_scores[j + 1])
        assert s > t or (s == t and p < q), f"position {p} ({s}) before {q} ({t})"
    cut = np.sort(scores)[::-1][len(got) - 1] if got else np.inf
    assert {p for p, s in reference.items() if s > cut + slack} <= set(got)
    assert all(reference[p] >= cut - slack for p in got)


@pytest.mark.parametrize("share", [0.0005, 0.01, 0.2, 0.6])  # 0.6: above the share where the whole store is scanned
@pytest.mark.parametrize("limit", [10, None])
def test_a_scoped_search_equals_brute_force_over_the_scope(stored, share: float, limit: int | None) -> None:
    searcher, ids, kept = stored
    rng = np.random.default_rng(int(share * 1e4))
    scope = [ids[i] for i in rng.choice(N, max(1, int(share * N)), replace=False)]
    scope += [ids[7], ids[40], ids[4000], ids[41]]  # the query's image and its exact copies: a tie for first
    foreign = [f"{i:032x}" for i in range(10 * N, 10 * N + 50)] + ["not-an-id", "x" * 40]
    found = searcher.similar(ids[7], SearchOptions(limit=limit), Scope.resolve(scope + foreign, _no_collections))
    positions, scores = brute_force(kept, ids, scope, 7)
    assert_same_as_brute_force(found, ids, positions, scores, limit)
    assert found.ids.tolist()[:4] == [ids[7], ids[40], ids[41], ids[4000]]  # the tie, in store order
    assert found.scope_ids.tolist() == [ids[p] for p in positions]  # foreign ids left out, store order
    np.testing.assert_allclose(found.scores, scores, atol=2e-3)  # a float16 scan is within its error elsewhere


def test_an_empty_scope_or_one_of_foreign_ids_finds_nothing(stored) -> None:
    searcher, ids, _ = stored
    for scope in ([], ["f" * 32, "0" * 31, "y"]):
        found = searcher.similar(ids[7], SearchOptions(limit=10), Scope.resolve(scope, _no_collections))
        assert found.ids.tolist() == [] and len(found.scores) == 0 and len(found.scope_ids) == 0


def test_thresholds_and_negatives_within_a_scope_equal_brute_force(stored) -> None:
    searcher, ids, kept = stored
    scope = ids[::3]
    options = SearchOptions(limit=None, min_score=0.5, negative_images=(ids[1],), negative_weight=0.3)
    found = searcher.similar(ids[7], options, Scope.resolve(scope, _no_collections))
    positions, positive = brute_force(kept, ids, scope, 7)
    scores = positive - 0.3 * brute_force(kept, ids, scope, 1)[1]
    assert (found.result_scores >= 0.5).all()
    passing = scores >= 0.5
    assert_same_as_brute_force(found, ids, positions[passing], scores[passing], None, slack=0)


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


def test_a_search_within_a_tag_filter_equals_brute_force(image_folder: Path, tiny_model: str) -> None:
    lib = picsift.Library(image_folder, model=tiny_model)
    lib.update(progress=False)
    try:
        everything = lib.images()["id"].tolist()
        for image_id in everything[::2]:
            lib.labels.add_tag(image_id, "keep")
        tagged = lib.filter(picsift.ImageTag("keep"), within=None)
        found = lib.similar(everything[1], limit=5, within=tagged)  # the reference is not in scope
        snapshot = lib.store.snapshot()
        kept = np.asarray(snapshot.matrix[snapshot.rows], np.float32)
        kept /= np.linalg.norm(kept, axis=1, keepdims=True)
        query = kept[snapshot.ids.tolist().index(everything[1])]
        in_scope = np.flatnonzero(np.isin(snapshot.ids, tagged.ids))
        scores = kept[in_scope].astype(np.float64) @ query
        assert_same_as_brute_force(found, snapshot.ids.tolist(), in_scope, scores, 5)
        assert sorted(found.scope_ids.tolist()) == sorted(everything[::2])
    finally:
        lib.close()
