"""The ``ivf`` index: inverted lists over the store's own score codes, kept by the store, searched by the library."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import picsift
import picsift.core.store as store_module
from picsift.core.catalog import Catalog
from picsift.core.code_lists import lists_name
from picsift.core.store import EmbeddingStore, StoreSnapshot
from picsift.index import open_index
from picsift.index.ivf import IvfIndex
from picsift.index.sync import calibrate_for_text_queries, wider_k

from .conftest import stamp_files

DIM = 32


def clustered(n: int, seed: int = 0, clusters: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.7 * rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_store(root: Path, vectors: np.ndarray) -> tuple[Catalog, EmbeddingStore]:
    catalog = Catalog(root / "catalog.sqlite")
    store = EmbeddingStore(catalog, root / "model", "m", "m", DIM)
    add(catalog, store, vectors, 0)
    return catalog, store


def add(catalog: Catalog, store: EmbeddingStore, vectors: np.ndarray, first: int) -> None:
    for start in range(0, len(vectors), 4000):
        rows = store.write_vectors(vectors[start : start + 4000])
        with catalog.transaction() as db:
            store.commit_rows(db, [f"{i:032x}" for i in range(first + start, first + start + len(rows))], rows)


def lists_match_vectors(snapshot: StoreSnapshot) -> bool:
    """Whether every live row is in the list of its nearest centroid (within the lists' tie tolerance)."""
    lists = snapshot.lists
    assert lists is not None
    scores = snapshot.vectors() @ lists.centroids.T
    held = np.asarray(lists.of_row)[snapshot.rows].astype(int)
    return bool((scores[np.arange(len(held)), held] >= scores.max(axis=1) - 1e-4).all())


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> set[str]:
    return {f"{i:032x}" for i in np.argsort(-(vectors @ query), kind="stable")[:k]}


@pytest.fixture
def codes_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CODES_FROM", 1)  # codes (and so lists) from the first image, not from 50,000


def test_probing_every_list_finds_what_a_scan_of_every_code_finds(tmp_path: Path, codes_everywhere: None) -> None:
    vectors = clustered(6000)
    _, store = make_store(tmp_path, vectors)
    snapshot = store.snapshot()
    index = IvfIndex(DIM)
    index.attach(snapshot)
    assert snapshot.lists is not None and snapshot.lists.count == round(4 * np.sqrt(6000))
    assert lists_match_vectors(snapshot)
    assert index.score_error == snapshot.codes.error > 0  # type: ignore[union-attr]  # the library rescores
    for query in clustered(5, seed=1):
        found, scores = index.search(query, 40, nprobe=10**6)
        codes = snapshot.codes.scan(query, snapshot.rows)[:, 0]  # type: ignore[union-attr]
        order = np.argsort(-codes, kind="stable")[:40]
        assert found == snapshot.ids[order].tolist()
        np.testing.assert_array_equal(scores, codes[order])
        few, _ = index.search(query, 40, nprobe=1)  # one list, and more only while they hold fewer than 40
        assert len(few) == 40 and len(set(few) & set(found)) < 40


def test_calibrated_lists_reach_the_recall_target_on_held_out_queries_scanning_a_fraction(
        tmp_path: Path, codes_everywhere: None, caplog: pytest.LogCaptureFixture) -> None:
    vectors = clustered(20_000, clusters=120)
    _, store = make_store(tmp_path, vectors)
    snapshot = store.snapshot()
    index = IvfIndex(DIM, tmp_path / "model" / "ivf")
    index.attach(snapshot)
    with caplog.at_level(logging.INFO, logger="picsift.index.ivf"):
        calibrate_for_text_queries(index, snapshot)
    assert "ivf: nprobe=" in caplog.text
    lists = snapshot.lists
    assert lists is not None and index.nprobe is not None and index.nprobe <= lists.count // 3
    rng = np.random.default_rng(7)  # held out: near stored images, and text-like (far from every image)
    near = vectors[rng.integers(0, len(vectors), 40)] + 0.3 * rng.normal(size=(40, DIM)).astype(np.float32)
    away = clustered(40, seed=8, clusters=120) + 1.5 * rng.normal(size=(40, DIM)).astype(np.float32)
    for queries in (near, away):
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        recall = np.mean([len(set(index.search(q, wider_k(100))[0]) & exact_top(vectors, q, 100)) / 100
                          for q in queries])
        assert recall >= IvfIndex.recall_target == 0.97  # the library path's goal (issue 25, item 5)
    index.save()
    assert IvfIndex(DIM, tmp_path / "model" / "ivf").nprobe == index.nprobe  # kept for the next process
    asked = IvfIndex(DIM, nprobe=3)  # index_options={"nprobe": 3}: what a person asked for is kept
    asked.attach(snapshot)
    calibrate_for_text_queries(asked, snapshot)
    assert asked.nprobe == 3


def test_the_store_keeps_the_lists_as_it_writes_and_a_library_searches_them_exactly(
        tmp_path: Path, tiny_model: str, stamps_root: Path, codes_everywhere: None) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    files = stamp_files(stamps_root, ("animals", "vehicles", "food", "plants"), 12)
    for path in files[:30]:
        shutil.copy2(path, folder / path.name)

    def same_as_exact(lib: picsift.Library, exact: picsift.Library) -> None:
        for text in ("a red car", "a green plant"):
            got, want = lib.search(text, limit=10), exact.search(text, limit=10)
            assert got.ids.tolist() == want.ids.tolist()
            np.testing.assert_allclose(got.df["score"], want.df["score"], atol=1e-6)
        snapshot = lib.store.snapshot()
        assert snapshot.lists is not None and lists_match_vectors(snapshot)
        assert len(np.asarray(snapshot.lists.of_row)) == snapshot.matrix.shape[0]

    options = {"nprobe": 10**6}  # every list: a few dozen images give each list a handful
    with picsift.Library(folder, workspace=tmp_path / "ws", model=tiny_model, index="ivf",
                         index_options=options) as lib, \
            picsift.Library(folder, workspace=tmp_path / "ws-exact", model=tiny_model, index="exact") as exact:
        lib.update(progress=False)
        exact.update(progress=False)
        assert isinstance(lib.index, IvfIndex) and len(lib.index) == 30
        same_as_exact(lib, exact)
        for path in files[30:]:  # add
            shutil.copy2(path, folder / path.name)
        Image.open(files[1]).rotate(90).save(folder / files[1].name)  # change
        (folder / files[2].name).unlink()  # remove
        lib.update(progress=False)
        exact.update(progress=False)
        assert len(lib.index) == len(files) - 1
        same_as_exact(lib, exact)
        image = lib.store.snapshot().ids[5]
        assert lib.similar(image, limit=7).ids.tolist() == exact.similar(image, limit=7).ids.tolist()


def test_a_damaged_or_planted_lists_file_is_rebuilt_and_nothing_outside_is_touched(
        tmp_path: Path, codes_everywhere: None) -> None:
    vectors = clustered(3000)
    catalog, store = make_store(tmp_path, vectors)
    path = tmp_path / "model" / lists_name("vectors-0.f16")
    assert not path.exists()  # no ivf search yet: a workspace that never uses the ivf index never gets the file
    assert store.snapshot().lists is not None and path.exists()
    good = path.read_bytes()
    query = clustered(1, seed=3)[0]

    def fresh_search() -> list[str]:
        snapshot = EmbeddingStore(catalog, tmp_path / "model", "m", "m", DIM).snapshot()  # a new process
        index = IvfIndex(DIM, nprobe=4)
        index.attach(snapshot)
        assert lists_match_vectors(snapshot) and not path.is_symlink()
        return index.search(query, 20)[0]

    want = fresh_search()
    head = len(good) - 2 * 3000
    cases = {
        "zeroed header": bytes(64) + good[64:],
        "a list past the last": good[:head] + b"\xff\xff" * 3000,
        "rows in the wrong lists": good[:head] + bytes(2 * 3000),
        "one row past the last list": good[: head + 2 * 1001] + b"\xff\xff" + good[head + 2 * 1002 :],
        "cut short": good[: head + 100],
    }
    for case, data in cases.items():
        path.write_bytes(data)
        assert fresh_search() == want, case
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    path.unlink()
    path.symlink_to(outside)  # a planted link is replaced, its target untouched
    assert fresh_search() == want
    assert outside.read_bytes() == b"keep me"
    (tmp_path / "model" / ".lists-0.u2.0123456789ab.tmp").write_bytes(b"x")  # left by a killed rebuild
    (tmp_path / "model" / "lists-7.u2").write_bytes(b"y")  # of a vectors file no longer used
    store.remove_stray_files()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["codes-0.i8", "lists-0.u2", "vectors-0.f16"]


def test_lists_grow_with_the_store_and_are_refitted_when_it_outgrows_them(tmp_path: Path,
                                                                          codes_everywhere: None) -> None:
    vectors = clustered(16_000)
    catalog, store = make_store(tmp_path, vectors[:1000])
    first = store.snapshot().lists
    assert first is not None and first.count == round(4 * np.sqrt(1000)) and first.fitted_rows == 1000
    add(catalog, store, vectors[1000:7000], 1000)  # appended as written: the same centroids
    grown = store.snapshot()
    assert grown.lists is not None and grown.lists.count == first.count and lists_match_vectors(grown)
    add(catalog, store, vectors[7000:], 7000)  # 16x the rows fitted on: fitted again, with more lists
    refitted = store.snapshot()
    assert refitted.lists is not None and refitted.lists.fitted_rows == 16_000
    assert refitted.lists.count == round(4 * np.sqrt(16_000)) and lists_match_vectors(refitted)


def test_the_ivf_index_takes_no_vectors_and_ignores_planted_settings(tmp_path: Path) -> None:
    index = open_index("ivf", DIM, tmp_path / "ivf")
    with pytest.raises(NotImplementedError, match="follows an embedding store"):
        index.add(["0" * 32], np.zeros((1, DIM), np.float32))
    with pytest.raises(RuntimeError, match=r"attach\(snapshot\)"):
        index.search(np.ones(DIM, np.float32), 3)
    for planted in ('{"nprobe": "all"}', '{"nprobe": -4}', "[1, 2]", "not json"):
        (tmp_path / "ivf").mkdir(exist_ok=True)
        (tmp_path / "ivf" / "settings.json").write_text(planted)
        assert IvfIndex(DIM, tmp_path / "ivf").nprobe is None  # tuned again, never trusted as given


def test_after_a_compaction_the_lists_are_built_for_the_new_vectors_file(tmp_path: Path,
                                                                         codes_everywhere: None) -> None:
    vectors = clustered(3000)
    catalog, store = make_store(tmp_path, vectors)
    assert store.snapshot().lists is not None
    with catalog.transaction() as db:
        store_module.EmbeddingTables.drop_ids(db, "m", [f"{i:032x}" for i in range(0, 3000, 2)])
    assert store.compact_if_sparse()
    snapshot = store.snapshot()
    index = IvfIndex(DIM)
    index.attach(snapshot)
    assert snapshot.lists is not None and len(index) == 1500 and lists_match_vectors(snapshot)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["codes-1.i8", "lists-1.u2", "vectors-1.f16"]
    query = vectors[7]  # a removed image's vector: its neighbours among those kept
    found, _ = index.search(query, 10, nprobe=10**6)
    kept = np.arange(1, 3000, 2)
    exact = {f"{i:032x}" for i in kept[np.argsort(-(vectors[kept] @ query))[:10]]}
    assert len(set(found) & exact) >= 9  # ranked by one-byte codes: the 10th may trade places with the 11th
