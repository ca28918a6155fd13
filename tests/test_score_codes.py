"""The score distribution from one byte per dimension (picsift.core.codes): results stay exact, the histogram
stays close to the exact one, and the codes follow the store through updates, damage and removal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import picsift
import picsift.core.store as store_module
from picsift.core.catalog import Catalog
from picsift.core.codes import TARGET_PER_10K, codes_name
from picsift.core.codes_format import FLAG, Header, encode, encode_reference, fit, header_size
from picsift.core.store import EmbeddingStore, StoreSnapshot
from picsift.query.search import exact_top, score_scope, select

from .conftest import stamp_files


def exact_scores(snapshot: StoreSnapshot, query: np.ndarray) -> np.ndarray:
    return (snapshot.vectors() * query).sum(axis=1)  # one product and pairwise sum per row, as exact search does


def codes_match_vectors(store: EmbeddingStore) -> bool:
    """Whether the codes file holds, for every row of the vectors file, the codes of the vector stored there."""
    snapshot = store.snapshot()
    vectors_file = store._state()[0]
    raw = (store.folder / codes_name(vectors_file)).read_bytes()
    header = Header.from_bytes(raw, store.dim)
    rows = snapshot.matrix.shape[0]
    want = encode(store_module._float32_rows(snapshot.matrix, np.arange(rows)), header).tobytes()
    return raw[header.size : header.size + len(want)] == want and len(raw) >= header.size + len(want)


def assert_exact(lib: picsift.Library, result: picsift.ImageSet, query: np.ndarray, limit: int) -> None:
    snapshot = lib.store.snapshot()
    assert snapshot.codes is not None  # the distribution came from the codes
    exact = exact_scores(snapshot, query)
    want = select(exact, limit, None, None)
    assert result.ids.tolist() == snapshot.ids[want].tolist()
    np.testing.assert_allclose(result.df["score"].to_numpy(), exact[want], atol=1e-6)
    coarse = snapshot.coarse_scan(query[None, :])[:, 0]
    assert np.abs(coarse - exact).max() <= snapshot.coarse_error(len(snapshot))
    assert not np.allclose(coarse, snapshot.scan(query[None, :])[:, 0], atol=1e-6, rtol=0)  # not the float16 scan


def test_searches_over_codes_return_the_exact_results_after_add_change_and_remove(
        tmp_path: Path, tiny_model: str, stamps_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CODES_FROM", 1)  # codes from the first image, not from 50,000
    folder = tmp_path / "images"
    folder.mkdir()
    files = stamp_files(stamps_root, ("animals", "vehicles", "food", "plants"), 12)
    for path in files[:30]:
        shutil.copy2(path, folder / path.name)
    with picsift.Library(folder, workspace=tmp_path / "ws", model=tiny_model, index="exact") as lib:
        lib.update(progress=False)
        query = lib.embedder.embed_text(["a red car"])[0]
        assert_exact(lib, lib.search("a red car", limit=10), query, 10)
        assert codes_match_vectors(lib.store)

        for path in files[30:]:  # add
            shutil.copy2(path, folder / path.name)
        lib.update(progress=False)
        assert len(lib.store) == len(files)
        assert codes_match_vectors(lib.store)
        assert_exact(lib, lib.search("a red car", limit=10), query, 10)

        Image.open(files[1]).rotate(90).save(folder / files[1].name)  # change: new content under the same name
        (folder / files[2].name).unlink()  # remove
        lib.update(progress=False)
        assert codes_match_vectors(lib.store)
        result = lib.search("a red car", limit=10)
        assert_exact(lib, result, query, 10)
        image = lib.store.snapshot().vectors(np.array([5]))[0]
        assert_exact(lib, lib.similar(lib.store.snapshot().ids[5], limit=7), image, 7)


def make_store(tmp_path: Path, n: int = 3000, dim: int = 48) -> tuple[Catalog, EmbeddingStore, np.ndarray]:
    rng = np.random.default_rng(3)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "m", "m", dim)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, n, 1000):
        rows = store.write_vectors(vectors[start : start + 1000])
        with catalog.transaction() as db:
            store.commit_rows(db, [f"{i:032x}" for i in range(start, start + len(rows))], rows)
    return catalog, store, vectors


def reopened(catalog: Catalog, tmp_path: Path, dim: int = 48) -> EmbeddingStore:
    return EmbeddingStore(catalog, tmp_path / "model", "m", "m", dim)  # a new process: no cached snapshot


def test_codes_are_rebuilt_when_missing_short_damaged_or_a_link(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CODES_FROM", 1)
    catalog, store, vectors = make_store(tmp_path)
    path = tmp_path / "model" / "codes-0.i8"
    assert store.snapshot().codes is not None and codes_match_vectors(store)  # built by the first snapshot
    good = path.read_bytes()
    query = vectors[7]
    want = select(exact_scores(store.snapshot(), query), 20, None, None)

    def check() -> None:
        fresh = reopened(catalog, tmp_path)
        snapshot = fresh.snapshot()
        assert snapshot.codes is not None and path.read_bytes() == good and not path.is_symlink()
        scores = exact_top(snapshot, None, score_scope(snapshot, None, query[None]), 20, None, None, query[None],
                           None, "mean", 0.5)
        assert select(scores, 20, None, None).tolist() == want.tolist()

    path.unlink()  # missing (a workspace written before codes)
    check()
    path.write_bytes(good[: len(good) // 2 + 5])  # short, ending inside a row
    check()
    damaged = bytearray(good)
    damaged[: len(good) // 2] = bytes(len(good) // 2)  # zeroed header and rows
    path.write_bytes(bytes(damaged))
    check()
    start = header_size(48)
    damaged = bytearray(good)
    damaged[start : start + 48 * 1500] = bytes(48 * 1500)  # zeroed rows under a good header: scores would be wrong
    path.write_bytes(bytes(damaged))
    check()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    path.unlink()
    path.symlink_to(outside)  # a planted link is replaced, its target untouched
    check()
    assert outside.read_bytes() == b"keep me"
    stray = tmp_path / "model" / ".codes-0.i8.0123456789ab.tmp"  # left by a killed rebuild
    stray.write_bytes(b"x")
    (tmp_path / "model" / "codes-7.i8").write_bytes(b"y")  # of a vectors file no longer used
    store.remove_stray_files()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["codes-0.i8", "vectors-0.f16"]


def old_per_row_codes(vectors: np.ndarray) -> bytes:
    """The codes file of the previous version: per row, int8 codes of x / (max|x| / 127), then that scale and the
    residual norm as float32 (no header)."""
    scale = (np.abs(vectors).max(axis=1) / 127).astype(np.float32)
    codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
    residual = np.linalg.norm(vectors - codes * scale[:, None], axis=1).astype(np.float32)
    return np.concatenate([codes.view(np.uint8), scale[:, None].view(np.uint8), residual[:, None].view(np.uint8)],
                          axis=1).tobytes()


def test_a_codes_file_of_the_previous_version_is_rebuilt_not_misread(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CODES_FROM", 1)
    catalog, store, vectors = make_store(tmp_path)
    path = tmp_path / "model" / "codes-0.i8"
    old = old_per_row_codes(store_module._float32_rows(store.snapshot().matrix, np.arange(3000)))
    path.write_bytes(old)  # a workspace whose codes an earlier picsift wrote
    snapshot = reopened(catalog, tmp_path).snapshot()
    assert snapshot.codes is not None and path.read_bytes() != old and codes_match_vectors(store)
    for query in vectors[:5]:
        exact = exact_scores(snapshot, query)
        coarse = snapshot.coarse_scan(query[None])[:, 0]
        assert np.abs(coarse - exact).max() <= snapshot.coarse_error(len(snapshot))


def test_rows_far_outside_the_fitted_range_keep_a_proven_bound_and_exact_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header is fitted on the first 3,000 rows (one cluster); rows added later from elsewhere (the opposite
    direction, a single huge component) are flagged or clipped, and their scores are still within the bound."""
    monkeypatch.setattr(store_module, "CODES_FROM", 1)
    rng = np.random.default_rng(5)
    clustered = rng.normal(size=(3000, 48)).astype(np.float32)
    clustered[:, 0] += 6.0  # the fitted rows: one cluster around the first axis
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "m", "m", 48)
    rows = store.write_vectors(clustered)
    with catalog.transaction() as db:
        store.commit_rows(db, [f"{i:032x}" for i in range(3000)], rows)
    assert store.snapshot().codes is not None  # the header is fitted on the cluster
    outside = np.concatenate([-clustered[:50], np.eye(48, dtype=np.float32)[1:9],
                              clustered[:50] + 0.05 * rng.normal(size=(50, 48)).astype(np.float32)])
    outside /= np.linalg.norm(outside, axis=1, keepdims=True)
    rows = store.write_vectors(outside)
    with catalog.transaction() as db:
        store.commit_rows(db, [f"{3000 + i:032x}" for i in range(len(outside))], rows)
    snapshot = store.snapshot()
    assert snapshot.codes is not None and codes_match_vectors(store)
    flagged = snapshot.codes.codes[:, 0] == FLAG
    assert flagged[3000:].sum() >= 58 and not flagged[:3000].any()  # the far rows are flagged, the cluster is not
    for query in [clustered[3], -clustered[3], outside[60], np.eye(48, dtype=np.float32)[2]]:
        exact = exact_scores(snapshot, query)
        coarse = snapshot.coarse_scan(query[None])[:, 0]
        assert np.abs(coarse - exact).max() <= snapshot.coarse_error(len(snapshot))
        refined = exact_top(snapshot, None, coarse, 10, None, None, query[None], None, "mean", 0.5)
        assert select(refined, 10, None, None).tolist() == select(exact, 10, None, None).tolist()
        assert refined.min() == pytest.approx(exact.min(), abs=1e-6)  # the histogram's range is exact
        assert refined.max() == pytest.approx(exact.max(), abs=1e-6)


def test_the_encoding_kernel_writes_the_reference_codes_and_keeps_every_unflagged_row_within_its_caps() -> None:
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(4000, 64)).astype(np.float32)
    rows[:, 5] += 4.0
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    header = fit(rows[:1000], 1000)  # later rows may fall outside the fitted range
    odd = np.stack([-rows[0], np.eye(64, dtype=np.float32)[9], np.zeros(64, np.float32),
                    np.full(64, np.nan, np.float32)])
    vectors = np.concatenate([rows, odd])
    codes = encode(vectors, header)
    assert np.array_equal(codes, encode_reference(vectors, header))
    flagged = codes[:, 0] == FLAG
    assert flagged[-4:].all() and 0 < flagged[1000:4000].sum() < 400 and not flagged[:1000].any()
    kept = ~flagged
    decoded = header.centre + header.scale * codes[kept].astype(np.float32)
    assert np.linalg.norm(vectors[kept] - decoded, axis=1).max() <= header.residual_cap
    assert np.linalg.norm(codes[kept].astype(np.float64), axis=1).max() <= header.norm_cap


def test_every_compiled_kernel_has_a_disk_cache_entry_of_its_own() -> None:
    """numba's disk cache names a compiled function by its source's name and line: two dispatchers of one function
    (``njit(kernel.py_func)``, as the serial scan once was) shared an entry, and the one compiled first ran for both,
    so the histogram's parallel scan ran on one core (2026-12-07: 22.7 ms at 1M instead of 16.9)."""
    import numba

    from picsift.analysis import projection_umap
    from picsift.core import codes_kernel

    cached = [d for module in (codes_kernel, projection_umap) for d in vars(module).values()
              if isinstance(d, numba.core.registry.CPUDispatcher) and d._cache._name != "NullCache"]
    names = [d._cache._cache_file._index_name for d in cached if hasattr(d._cache, "_cache_file")]
    assert len(names) >= 8 and len(set(names)) == len(names), sorted(names)
    assert codes_kernel.scan_codes.targetoptions.get("parallel") and not \
        codes_kernel.scan_codes_serial.targetoptions.get("parallel")


def test_compaction_builds_the_codes_of_the_new_vectors_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CODES_FROM", 1)
    catalog, store, _ = make_store(tmp_path)
    with catalog.transaction() as db:
        store_module.EmbeddingTables.drop_ids(db, "m", [f"{i:032x}" for i in range(0, 3000, 2)])
    assert store.compact_if_sparse()
    names = sorted(p.name for p in (tmp_path / "model").iterdir())
    snapshot = store.snapshot()
    assert snapshot.codes is not None and len(snapshot) == 1500
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["codes-1.i8", "vectors-1.f16"], names
    assert codes_match_vectors(store)


@pytest.fixture(scope="module")
def real_embeddings(stamps_root: Path) -> np.ndarray:
    """Tux Paint stamps of every category embedded by the default offline model (real image embeddings)."""
    from picsift.embedding.decode import decode_image
    from picsift.embedding.openclip import Embedder

    embedder = Embedder("picsift-offline", device="cpu")
    files = sorted(stamps_root.rglob("*.png"))[::4]
    images = [decode_image(p.read_bytes(), embedder.image_size).image for p in files]
    return embedder.embed_images(images), embedder.embed_text(["a bird", "a red car", "a flower", "a house"])


@pytest.mark.offline_model
@pytest.mark.parametrize("n", [200_000, 30_000], ids=["codes", "float16 scan"])
def test_the_histogram_from_codes_is_within_its_bound_of_the_exact_one_on_real_embeddings(
        tmp_path: Path, real_embeddings: tuple[np.ndarray, np.ndarray], n: int) -> None:
    """200,000 images made from real embeddings (each a real one plus 0.3 of two others, renormalised), scored
    against real prompts and real images: every bin of the scanned scores' histogram within 5 counts per 10,000 of
    the exact one's, and, as the app bins the scores after exact_top (which rescores those near an edge), within
    the target of 1 per 10,000; the top 100 exactly those of an exact search. So with 30,000 images, scanned in
    float16 (below CODES_FROM), whose scores are rounded to float16 (about 10 per 10,000 off before exact_top)."""
    images, prompts = real_embeddings
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(images), (3, n))
    data = images[picks[0]] + 0.3 * (images[picks[1]] + images[picks[2]])
    data += 0.02 * rng.standard_normal(data.shape, np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = EmbeddingStore(catalog, tmp_path / "model", "m", "m", images.shape[1])
    rows = store.write_vectors(data)
    with catalog.transaction() as db:
        store.commit_rows(db, [f"{i:032x}" for i in range(n)], rows)
    snapshot = store.snapshot()
    assert (snapshot.codes is not None) == (n >= store_module.CODES_FROM)
    for query in [*prompts, *images[:4]]:
        exact = exact_scores(snapshot, query)
        coarse = score_scope(snapshot, None, query[None])
        exact_counts, edges = np.histogram(exact, 50)
        if snapshot.codes is not None:
            assert np.abs(np.histogram(coarse, edges)[0] - exact_counts).max() <= 5 * n / 10_000
        refined = exact_top(snapshot, None, coarse, 100, None, None, query[None], None, "mean", 0.5)
        # as ImageSet.histogram and the score range widget bin them: 50 bins over the scores' own range
        assert np.abs(np.histogram(refined, 50)[0] - exact_counts).max() <= TARGET_PER_10K * n / 10_000
        picked = select(refined, 100, None, None)
        assert picked.tolist() == select(exact, 100, None, None).tolist()
        np.testing.assert_allclose(refined[picked], exact[picked], atol=1e-6)
