"""Maps for the explorer: saved with their fitted model, updated incrementally, refitted on request."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from picsift import Library
from picsift.analysis import projection
from picsift.analysis.projection import PcaModel, UmapModel, load_map, map_files, update_map
from picsift.core.store import StoreSnapshot

from .conftest import stamp_files

pytest.importorskip("umap")

DIM, CLUSTERS = 32, 8


def clustered(n: int, seed: int, centres_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around CLUSTERS well separated centres (the same centres for every seed), and their labels."""
    centres = np.random.default_rng(centres_seed).normal(size=(CLUSTERS, DIM))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLUSTERS, n)
    vectors = centres[labels] + 0.25 * rng.normal(size=(n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels


def snapshot(vectors: np.ndarray, ids: list[str], version: int) -> StoreSnapshot:
    return StoreSnapshot(np.array(ids, dtype="<U32"), np.arange(len(ids), dtype=np.int64), vectors, version)


def ids_for(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:031d}"[:32] for i in range(n)]


def forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the saved map should have been reused")

    for name in names:
        owner, attribute = name.split(".")
        monkeypatch.setattr(getattr(projection, owner), attribute, boom)


@pytest.fixture(scope="module")
def umap_maps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One UMAP fit on 400 images, then an update that removes 10 and adds 40 (one fit for the module)."""
    folder = tmp_path_factory.mktemp("maps")
    old, old_labels = clustered(400, seed=1)
    new, new_labels = clustered(40, seed=2)
    old_ids, new_ids = ids_for(400, "a"), ids_for(40, "b")
    first = update_map(folder, snapshot(old, old_ids, 1), "umap", 2)
    kept = np.arange(10, 400)
    matrix = np.concatenate([old[kept], new])
    second = update_map(folder, snapshot(matrix, [old_ids[i] for i in kept] + new_ids, 2), "umap", 2)
    return {"folder": folder, "first": first, "second": second, "old": old, "old_labels": old_labels, "new": new,
            "new_labels": new_labels, "kept": kept, "matrix": matrix, "old_ids": old_ids, "new_ids": new_ids}


def test_a_fit_is_saved_with_its_model_and_scaled_into_the_unit_box(umap_maps: dict[str, Any]) -> None:
    first = umap_maps["first"]
    assert first.refitted and first.fitted == 400 and first.coords.shape == (400, 2)
    assert np.abs(first.coords).max() == pytest.approx(1.0, abs=1e-5)
    coords_file, model_file = map_files(umap_maps["folder"], "umap", 2)
    assert coords_file.exists() and model_file.exists()
    # the map separates the clusters: a point's nearest neighbour on the map is almost always in its cluster
    coords, labels = first.coords, umap_maps["old_labels"]
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=2) + np.eye(len(coords)) * 9
    assert np.mean(labels[distances.argmin(axis=1)] == labels) > 0.95


def test_an_update_keeps_old_points_and_places_new_ones_near_their_neighbours(umap_maps: dict[str, Any]) -> None:
    first, second, kept = umap_maps["first"], umap_maps["second"], umap_maps["kept"]
    assert not second.refitted and second.added == 40 and second.fitted == 400
    assert second.token == first.token and second.version == 2
    assert second.ids.tolist() == [umap_maps["old_ids"][i] for i in kept] + umap_maps["new_ids"]
    np.testing.assert_array_equal(second.coords[:390], first.coords[kept])  # not one point moved
    np.testing.assert_array_equal(second.centre, first.centre)
    assert second.extent == first.extent

    placed, old_coords = second.coords[390:], first.coords[kept]
    nearest_in_space = np.argmax(umap_maps["new"] @ umap_maps["old"][kept].T, axis=1)
    gap = np.linalg.norm(placed - old_coords[nearest_in_space], axis=1)
    spread = np.linalg.norm(old_coords[:, None] - old_coords[None], axis=2).mean()
    assert np.median(gap) < 0.1 * spread, (np.median(gap), spread)
    nearest_on_map = np.linalg.norm(placed[:, None] - old_coords[None], axis=2).argmin(axis=1)
    assert np.mean(umap_maps["old_labels"][kept][nearest_on_map] == umap_maps["new_labels"]) >= 0.9


def test_the_saved_map_is_reused_without_fitting_or_transforming(umap_maps: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    forbid(monkeypatch, "UmapModel.fit", "UmapModel.transform", "PcaModel.fit")
    second = umap_maps["second"]
    again = update_map(umap_maps["folder"], snapshot(umap_maps["matrix"], second.ids.tolist(), 2), "umap", 2)
    assert not again.refitted and again.added == 0
    np.testing.assert_array_equal(again.coords, second.coords)
    # removing images needs no model either: the others keep their places
    fewer = update_map(umap_maps["folder"], snapshot(umap_maps["matrix"][5:], second.ids[5:].tolist(), 3), "umap", 2)
    assert fewer.added == 0 and fewer.version == 3
    np.testing.assert_array_equal(fewer.coords, second.coords[5:])


def test_refit_recomputes_everything(umap_maps: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "maps"
    shutil.copytree(umap_maps["folder"], folder)
    second = umap_maps["second"]
    snap = snapshot(umap_maps["matrix"], second.ids.tolist(), 2)
    refitted = update_map(folder, snap, "umap", 2, refit=True)
    assert refitted.refitted and refitted.fitted == 430 and refitted.token != second.token
    assert not np.allclose(refitted.coords, second.coords, atol=1e-3)
    assert load_map(folder, "umap", 2).token == refitted.token  # type: ignore[union-attr]


def test_large_sets_are_fitted_on_a_sample_and_placed_in_chunks(tmp_path: Path) -> None:
    vectors, labels = clustered(300, seed=3)
    state = update_map(tmp_path, snapshot(vectors, ids_for(300, "c"), 1), "umap", 3, fit_rows=120, chunk=50,
                       progress=False)
    assert state.refitted and state.fitted == 120 and state.added == 180 and state.coords.shape == (300, 3)
    distances = np.linalg.norm(state.coords[:, None] - state.coords[None], axis=2) + np.eye(300) * 9
    assert np.mean(labels[distances.argmin(axis=1)] == labels) > 0.9


def test_a_model_fitted_on_a_few_images_is_refitted_once_the_set_has_grown(tmp_path: Path) -> None:
    vectors, _ = clustered(100, seed=4)
    ids = ids_for(100, "d")
    small = update_map(tmp_path, snapshot(vectors[:10], ids[:10], 1), "pca", 3)
    kept = update_map(tmp_path, snapshot(vectors, ids, 2), "pca", 3, refit=False)
    assert not kept.refitted and kept.added == 90
    np.testing.assert_array_equal(kept.coords[:10], small.coords)
    grown = update_map(tmp_path, snapshot(vectors, ids, 3), "pca", 3)  # refit=None: 10 of 100 is too few
    assert grown.refitted and grown.fitted == 100


def test_a_map_whose_model_is_lost_is_refitted(tmp_path: Path) -> None:
    vectors, _ = clustered(60, seed=5)
    ids = ids_for(60, "e")
    update_map(tmp_path, snapshot(vectors[:50], ids[:50], 1), "pca", 2)
    map_files(tmp_path, "pca", 2)[1].write_bytes(b"not a pickle")
    state = update_map(tmp_path, snapshot(vectors, ids, 2), "pca", 2)
    assert state.refitted and state.fitted == 60


def test_pca_never_touches_umap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PCA map is plain PCA of every vector (its speed is measured by bench/projection.py, not here)."""
    forbid(monkeypatch, "UmapModel.fit")
    vectors = np.random.default_rng(0).normal(size=(20_000, 512)).astype(np.float32)
    state = update_map(tmp_path, snapshot(vectors, ids_for(20_000, "f"), 1), "pca", 3)
    assert state.coords.shape == (20_000, 3) and isinstance(state, projection.ProjectionMap)
    np.testing.assert_allclose(state.coords, projection.pca(vectors, 3), atol=1e-5)


def test_sample_search_finds_the_true_neighbours_exactly_and_with_hnsw(monkeypatch: pytest.MonkeyPatch) -> None:
    """UMAP.transform's neighbour search for fits on >= 4096 images (pynndescent's misses whole clusters)."""
    import pickle

    sample, _ = clustered(3000, seed=7)
    queries, _ = clustered(200, seed=8)
    truth = np.argsort(-(queries @ sample.T), axis=1)[:, :15]
    search = projection.SampleSearch(sample)
    indices, distances = search.query(queries * 3.0, 15)  # any length: cosine
    assert np.mean(indices == truth) > 0.995  # rounding may swap near-equal neighbours
    np.testing.assert_allclose(distances, 1 - np.take_along_axis(queries @ sample.T, truth, axis=1), atol=1e-5)
    monkeypatch.setattr(projection.SampleSearch, "EXACT_PAIRS", 0)  # large batches go through hnswlib
    approximate, _ = search.query(queries, 15)
    assert search._graph is not None
    assert np.mean([len(set(a) & set(b)) / 15 for a, b in zip(approximate, truth, strict=True)]) > 0.95
    restored = pickle.loads(pickle.dumps(search))
    assert restored._graph is None and np.array_equal(restored.sample, sample)


def test_models_place_vectors_consistently() -> None:
    vectors, _ = clustered(50, seed=6)
    model = PcaModel.fit(vectors, 3)
    np.testing.assert_allclose(model.transform(vectors[:5]), model.transform(vectors)[:5], atol=1e-6)
    assert UmapModel.fit(vectors[:20], 2, seed=0)[1].shape == (20, 2)
    with pytest.raises(ValueError, match="valid choices: pca, umap"):
        update_map(None, snapshot(vectors, ids_for(50, "g"), 1), "tsne", 2)


# -- the explorer on a real library -----------------------------------------------------------------
def test_explorer_reuses_its_umap_map_for_new_images_and_refits_on_request(image_folder: Path, tiny_model: str,
                                                                           stamps_root: Path) -> None:
    pytest.importorskip("anywidget")
    from picsift.widgets import Explorer
    from picsift.widgets._source import ImageSource

    library = Library(image_folder, model=tiny_model, index="exact")
    library.update(progress=False)
    explorer = Explorer(ImageSource(library), dims=2)
    assert explorer.projection == "pca"
    explorer.compute_umap(background=False)
    assert explorer.projection == "umap" and explorer.projection_state == "umap"
    before = dict(zip(explorer.ids.tolist(), explorer._points.tolist(), strict=True))
    library.close()

    for path in stamp_files(stamps_root, ("space",), 3):
        shutil.copy2(path, image_folder / path.name)
    reopened = Library(image_folder, model=tiny_model, index="exact")
    reopened.update(progress=False)
    explorer = Explorer(ImageSource(reopened), dims=2)  # PCA at once; the 3 new images are placed in a thread
    assert explorer._job is not None
    explorer._job.thread.join(timeout=300)
    assert explorer.projection == "umap" and len(explorer.ids) == 27 and not explorer.error
    after = dict(zip(explorer.ids.tolist(), explorer._points.tolist(), strict=True))
    assert all(after[i] == before[i] for i in before)  # the 24 old images did not move

    explorer._dispatch(explorer, {"type": "compute_umap", "refit": True}, [])
    assert explorer._job is not None
    explorer._job.thread.join(timeout=300)
    assert explorer.projection == "umap" and not explorer.error
    refitted = dict(zip(explorer.ids.tolist(), explorer._points.tolist(), strict=True))
    assert any(refitted[i] != before[i] for i in before)
    third = Explorer(ImageSource(reopened), dims=2)  # reopening now shows the saved UMAP at once
    assert third.projection == "umap" and np.array_equal(third._points, explorer._points)
