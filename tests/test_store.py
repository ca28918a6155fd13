"""The embedding store: two-phase writes, garbage collection, compaction, float16 and float32 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picsift.core.catalog import Catalog, FileRow
from picsift.core.store import PRECISIONS, EmbeddingStore
from picsift.errors import ModelMismatchError
from picsift.query.search import exact_top, score_scope, select

DIM = 16
SUFFIX = {name: tag for name, (tag, _) in PRECISIONS.items()}


@pytest.fixture(params=["float32", "float16"])
def precision(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def populate(
    tmp_path: Path, n: int, precision: str = "float32"
) -> tuple[Catalog, EmbeddingStore, dict[str, np.ndarray]]:
    """A store of ``n`` random vectors; returns them as the store gives them back (float16: rounded, unit length)."""
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "test:model", "test:model", DIM, precision=precision)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = [f"{i:032x}" for i in range(n)]
    rows = store.write_vectors(vectors)
    with catalog.transaction() as db:
        store.commit_rows(db, ids, rows)
        Catalog.upsert_files(db, [FileRow(f"{i}.png", 1, 1, image_id, 8, 8, None) for i, image_id in enumerate(ids)])
    return catalog, store, dict(zip(ids, kept_as(vectors, precision), strict=True))


def kept_as(vectors: np.ndarray, precision: str) -> np.ndarray:
    kept = vectors.astype(PRECISIONS[precision][1]).astype(np.float32)
    if precision == "float16":
        kept /= np.linalg.norm(kept, axis=-1, keepdims=True)
    return kept


def test_uncommitted_vectors_are_invisible_and_get_overwritten(tmp_path: Path, precision: str) -> None:
    catalog, store, _expected = populate(tmp_path, 10, precision)
    version = store.version
    store.write_vectors(np.ones((5, DIM), np.float32))  # phase 1 only: as if killed before the commit
    snapshot = store.snapshot()
    assert len(snapshot) == 10 and snapshot.matrix.shape == (10, DIM) and store.version == version
    rows = store.write_vectors(np.full((2, DIM), 2.0, np.float32))
    assert rows.tolist() == [10, 11]  # the orphaned rows are reused
    with catalog.transaction() as db:
        store.commit_rows(db, ["a" * 32, "b" * 32], rows)
    snapshot = store.snapshot()
    assert len(snapshot) == 12 and store.version == version + 1
    np.testing.assert_array_equal(snapshot.vectors(np.array([10, 11])), kept_as(np.full((2, DIM), 2.0), precision))


def test_sparse_stores_are_compacted_without_changing_any_vector(tmp_path: Path, precision: str) -> None:
    catalog, store, expected = populate(tmp_path, 3000, precision)
    with catalog.transaction() as db:
        Catalog.delete_files(db, [f"{i}.png" for i in range(0, 3000, 2)])
        assert EmbeddingStore.drop_unreferenced(db) == 1500
    before = store.snapshot()
    assert len(before) == 1500 and before.matrix.shape[0] == 3000
    assert store.compact_if_sparse()
    after = store.snapshot()
    assert after.matrix.shape[0] == 1500 and sorted(after.ids.tolist()) == sorted(before.ids.tolist())
    for image_id, vector in zip(after.ids.tolist(), after.vectors(), strict=True):
        np.testing.assert_array_equal(vector, expected[image_id])
    assert [p.name for p in (tmp_path / "model").glob("vectors-*")] == [f"vectors-1.{SUFFIX[precision]}"]
    assert not store.compact_if_sparse()  # dense now


def test_a_compaction_killed_before_its_commit_leaves_the_store_intact(tmp_path: Path, precision: str) -> None:
    _catalog, store, expected = populate(tmp_path, 50, precision)
    tag = SUFFIX[precision]
    (tmp_path / "model" / f"vectors-1.{tag}").write_bytes(b"half-written")  # what a killed compaction leaves
    store.remove_stray_files()
    assert [p.name for p in (tmp_path / "model").glob("vectors-*")] == [f"vectors-0.{tag}"]
    snapshot = store.snapshot()
    for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
        np.testing.assert_array_equal(vector, expected[image_id])


def test_a_store_refuses_vectors_of_another_dimension(tmp_path: Path) -> None:
    catalog, store, _ = populate(tmp_path, 3)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        store.write_vectors(np.zeros((1, 8), np.float32))
    with pytest.raises(ModelMismatchError, match="produced 8-d vectors but its store holds 16-d"):
        EmbeddingStore(catalog, tmp_path / "model", "test:model", "test:model", 8)


def test_new_stores_are_float16_and_a_float32_store_opens_then_converts_on_the_next_write(tmp_path: Path) -> None:
    catalog, _old, expected = populate(tmp_path, 200, "float32")  # a workspace written before float16
    assert [p.name for p in (tmp_path / "model").glob("vectors-*")] == ["vectors-0.f32"]
    store = EmbeddingStore(catalog, tmp_path / "model", "test:model", "test:model", DIM)  # today's default
    assert store.precision == "float16"
    snapshot = store.snapshot()
    assert snapshot.matrix.dtype == np.float32 and snapshot.scan_error == 0
    for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
        np.testing.assert_array_equal(vector, expected[image_id])  # read as it is: exact
    rows = store.write_vectors(np.ones((2, DIM), np.float32))  # the next update converts it first
    assert rows.tolist() == [200, 201]
    with catalog.transaction() as db:
        store.commit_rows(db, ["a" * 32, "b" * 32], rows)
    assert [p.name for p in (tmp_path / "model").glob("vectors-*")] == ["vectors-1.f16"]
    snapshot = store.snapshot()
    assert snapshot.matrix.dtype == np.float16 and len(snapshot) == 202
    for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
        want = np.ones(DIM, np.float32) if image_id in ("a" * 32, "b" * 32) else expected[image_id]
        np.testing.assert_allclose(vector, kept_as(want, "float16"), rtol=1e-6)
    assert (tmp_path / "model" / "vectors-1.f16").stat().st_size == 202 * DIM * 2


def test_a_float16_scan_is_within_its_error_and_searches_show_exact_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "m", "m", 64)
    centres = rng.normal(size=(5, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 5, 70_000)] + 0.05 * rng.normal(size=(70_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # many near-ties, as in real collections
    rows = store.write_vectors(vectors)
    with catalog.transaction() as db:
        store.commit_rows(db, [f"{i:032x}" for i in range(70_000)], rows)
    snapshot = store.snapshot()
    kept = snapshot.vectors()
    query = centres[:1] / np.linalg.norm(centres[0])
    # float32, as an exact search computes them: one product and pairwise sum per row, so copies of a vector tie
    # (BLAS's ``kept @ query.T`` sums a block's last rows in another order)
    exact = (kept * query).sum(axis=1)
    scanned = snapshot.scan(query)[:, 0]
    assert 0 < np.abs(scanned - exact).max() <= snapshot.scan_error
    np.testing.assert_allclose(snapshot.scores(query)[:, 0], exact, atol=1e-6)
    for limit, low, high in ((100, None, None), (None, 0.9, None), (50, None, 0.8)):
        scores = exact_top(snapshot, None, score_scope(snapshot, None, query), limit, low, high, query, None,
                           "mean", 0.5)
        picked = select(scores, limit, low, high)
        want = select(exact, limit, low, high)
        assert picked.tolist() == want.tolist()  # same images, same order as an exact float32 search
        np.testing.assert_allclose(scores[picked], exact[want], atol=1e-6)
