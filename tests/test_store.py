"""The embedding store: two-phase writes, garbage collection and compaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picsift.catalog import Catalog, FileRow
from picsift.errors import ModelMismatchError
from picsift.store import EmbeddingStore

DIM = 16


def populate(tmp_path: Path, n: int) -> tuple[Catalog, EmbeddingStore, dict[str, np.ndarray]]:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "test:model", "test:model", DIM)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = [f"{i:032x}" for i in range(n)]
    rows = store.write_vectors(vectors)
    with catalog.transaction() as db:
        store.commit_rows(db, ids, rows)
        Catalog.upsert_files(db, [FileRow(f"{i}.png", 1, 1, image_id, 8, 8, None) for i, image_id in enumerate(ids)])
    return catalog, store, dict(zip(ids, vectors, strict=True))


def test_uncommitted_vectors_are_invisible_and_get_overwritten(tmp_path: Path) -> None:
    catalog, store, _expected = populate(tmp_path, 10)
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
    assert np.all(snapshot.vectors(np.array([10, 11])) == 2.0)


def test_sparse_stores_are_compacted_without_changing_any_vector(tmp_path: Path) -> None:
    catalog, store, expected = populate(tmp_path, 3000)
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
    assert [p.name for p in (tmp_path / "model").glob("vectors-*.f32")] == ["vectors-1.f32"]
    assert not store.compact_if_sparse()  # dense now


def test_a_compaction_killed_before_its_commit_leaves_the_store_intact(tmp_path: Path) -> None:
    _catalog, store, expected = populate(tmp_path, 50)
    (tmp_path / "model" / "vectors-1.f32").write_bytes(b"half-written")  # what a killed compaction leaves
    store.remove_stray_files()
    assert [p.name for p in (tmp_path / "model").glob("*.f32")] == ["vectors-0.f32"]
    snapshot = store.snapshot()
    for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
        np.testing.assert_array_equal(vector, expected[image_id])


def test_a_store_refuses_vectors_of_another_dimension(tmp_path: Path) -> None:
    catalog, store, _ = populate(tmp_path, 3)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        store.write_vectors(np.zeros((1, 8), np.float32))
    with pytest.raises(ModelMismatchError, match="produced 8-d vectors but its store holds 16-d"):
        EmbeddingStore(catalog, tmp_path / "model", "test:model", "test:model", 8)
