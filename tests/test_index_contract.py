"""The same contract, run against every index backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picsift.errors import MissingDependencyError
from picsift.index import available_backends, backend_class, open_index
from picsift.index.base import VectorIndex

DIM = 32
# (backend, persisted?) - qdrant runs both in memory and in local mode on disk
CASES = [("exact", False), ("exact", True), ("hnsw", False), ("hnsw", True), ("qdrant", False), ("qdrant", True),
         ("qdrant-edge", False), ("qdrant-edge", True)]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ids_for(n: int, offset: int = 0) -> list[str]:
    return [f"{i + offset:032x}" for i in range(n)]


def make(name: str, persisted: bool, tmp_path: Path) -> VectorIndex:
    return open_index(name, DIM, tmp_path / name if persisted else None)


@pytest.fixture(params=CASES, ids=[f"{n}-{'disk' if p else 'memory'}" for n, p in CASES])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool, Path]:
    return request.param[0], request.param[1], tmp_path


def brute(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ query), kind="stable")[:k])


def test_search_returns_the_nearest_ids_best_first(case: tuple[str, bool, Path]) -> None:
    index = make(*case)
    rng = np.random.default_rng(0)
    vectors = unit(rng, 300)
    ids = ids_for(300)
    index.add(ids, vectors)
    assert len(index) == 300 and index.ids() == set(ids)
    for query in unit(rng, 5):
        found, scores = index.search(query, 10)
        assert found == [ids[i] for i in brute(vectors, query, 10)]
        assert np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, vectors[brute(vectors, query, 10)] @ query, atol=1e-4)
    index.close()


def test_k_larger_than_the_index_returns_everything(case: tuple[str, bool, Path]) -> None:
    index = make(*case)
    empty_ids, empty_scores = index.search(np.ones(DIM, np.float32) / np.sqrt(DIM), 5)
    assert empty_ids == [] and len(empty_scores) == 0
    index.add(ids_for(7), unit(np.random.default_rng(1), 7))
    found, scores = index.search(unit(np.random.default_rng(2), 1)[0], 100)
    assert sorted(found) == ids_for(7) and len(scores) == 7
    index.close()


def test_add_replaces_an_existing_id_and_remove_forgets_it(case: tuple[str, bool, Path]) -> None:
    index = make(*case)
    rng = np.random.default_rng(3)
    vectors = unit(rng, 50)
    ids = ids_for(50)
    index.add(ids, vectors)
    target = unit(rng, 1)[0]
    index.add([ids[10]], target[None, :])  # upsert: same id, new vector
    assert len(index) == 50
    found, scores = index.search(target, 1)
    assert found == [ids[10]] and scores[0] == pytest.approx(1.0, abs=1e-4)
    index.remove([ids[10], ids[11], "f" * 32])  # unknown ids are ignored
    assert len(index) == 48 and ids[10] not in index.ids()
    found, _ = index.search(target, 48)
    assert ids[10] not in found and ids[11] not in found and len(found) == 48
    index.add([ids[10]], target[None, :])  # and it can come back
    assert index.search(target, 1)[0] == [ids[10]]
    index.close()


def test_search_can_be_restricted_to_a_set_of_ids(case: tuple[str, bool, Path]) -> None:
    index = make(*case)
    rng = np.random.default_rng(4)
    vectors = unit(rng, 400)
    ids = ids_for(400)
    index.add(ids, vectors)
    allowed = [ids[i] for i in range(0, 400, 7)]
    allowed_rows = list(range(0, 400, 7))
    query = unit(rng, 1)[0]
    found, _ = index.search(query, 5, restrict_to=allowed)
    expected = [allowed_rows[i] for i in brute(vectors[allowed_rows], query, 5)]
    assert found == [ids[i] for i in expected]
    found, _ = index.search(query, 500, restrict_to=[*allowed[:3], "e" * 32])
    assert sorted(found) == sorted(allowed[:3])
    assert index.search(query, 5, restrict_to=[])[0] == []
    index.close()


def test_a_saved_index_reopens_with_the_same_content(tmp_path: Path) -> None:
    for name in available_backends():
        if backend_class(name).follows_store:
            continue  # ivf holds no vectors: tests/test_index_ivf.py reopens it over a store
        path = tmp_path / name
        index = open_index(name, DIM, path)
        rng = np.random.default_rng(5)
        vectors = unit(rng, 120)
        index.add(ids_for(120), vectors)
        index.remove(ids_for(3))
        query = unit(rng, 1)[0]
        before = index.search(query, 10)
        index.save()
        index.close()
        reopened = open_index(name, DIM, path)
        assert len(reopened) == 117 and reopened.ids() == set(ids_for(117, 3))
        after = reopened.search(query, 10)
        assert after[0] == before[0], name
        np.testing.assert_allclose(after[1], before[1], atol=1e-5)
        reopened.close()


def test_wrong_vector_shapes_are_rejected(case: tuple[str, bool, Path]) -> None:
    index = make(*case)
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        index.add(ids_for(2), np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        index.add(ids_for(2), np.zeros((3, DIM), np.float32))
    index.close()


def test_unknown_backend_names_list_the_valid_ones() -> None:
    valid = "exact, hnsw, ivf, qdrant, qdrant-edge"
    with pytest.raises(ValueError, match=f"unknown index backend 'faiss'; valid backends: {valid}"):
        backend_class("faiss")


def test_a_missing_optional_dependency_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "hnswlib", None)  # as if hnswlib were not installed
    monkeypatch.delitem(sys.modules, "picsift.index.hnsw", raising=False)
    with pytest.raises(MissingDependencyError, match=r'pip install "picsift\[hnsw\]"'):
        backend_class("hnsw")


def test_hnsw_calibrated_ef_reaches_the_recall_target_on_clustered_data() -> None:
    rng = np.random.default_rng(6)
    centres = unit(rng, 40, 64)

    def sample(n: int) -> np.ndarray:
        v = centres[rng.integers(0, 40, n)] + 0.15 * rng.normal(size=(n, 64)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vectors = sample(20_000)
    ids = ids_for(len(vectors))
    index = open_index("hnsw", 64, None, ef=10)
    index.add(ids, vectors)

    def recall(queries: np.ndarray) -> float:
        hits = 0
        for q in queries:
            found, _ = index.search(q, 100)
            hits += len(set(found) & {ids[i] for i in brute(vectors, q, 100)})
        return hits / (100 * len(queries))

    tuning, held_out = vectors[rng.choice(len(vectors), 30)], sample(30)  # held-out: new points
    truth = [[ids[i] for i in brute(vectors, q, 100)] for q in tuning]
    index.calibrate(tuning, truth, k=100, target=0.95)  # type: ignore[attr-defined]
    assert recall(held_out) >= 0.95


def test_library_calibration_holds_recall_for_text_like_queries_far_from_every_image() -> None:
    """Text prompts sit far from all images (cosine ~0.3); ef tuned on stored vectors would flatter recall."""
    from picsift.core.store import StoreSnapshot
    from picsift.index.sync import calibrate_for_text_queries

    rng = np.random.default_rng(7)
    dim, n = 128, 30_000
    centres = unit(rng, 300, dim)
    vectors = centres[rng.integers(0, 300, n)] + 0.08 * rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.array(ids_for(n), dtype="<U32")
    snapshot = StoreSnapshot(ids, np.arange(n), vectors, version=1)
    index = open_index("hnsw", dim, None, ef=10, M=16, ef_construction=100)
    index.add(ids.tolist(), vectors)
    calibrate_for_text_queries(index, snapshot)
    queries = 0.35 * centres[rng.integers(0, 300, 40)] + np.sqrt(1 - 0.35**2) * unit(rng, 40, dim)
    hits = 0
    for q in queries / np.linalg.norm(queries, axis=1, keepdims=True):
        truth = {ids[i] for i in brute(vectors, q, 100)}
        hits += len(set(index.search(q, 100)[0]) & truth)
    assert hits / (100 * len(queries)) >= 0.93  # calibrated to 0.95 on 50 sampled queries
