"""The neighbour graph: incremental refreshes match a graph rebuilt from scratch, it survives a killed update and
an untrusted file, and the analyses that moved onto it return what they returned before."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.analysis import graph as graph_module
from picsift.analysis import graph_partitions
from picsift.analysis.graph import MIN_RECALL, SIMILARITY_TOLERANCE, build, graph_typicality, measure_recall, refresh
from picsift.analysis.neighbours import near_duplicates, outliers
from picsift.analysis.sampling import sample_positions
from picsift.errors import PicsiftError
from picsift.index import open_index

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER
from .test_neighbours import clustered, plant_duplicates, relative


def ids_of(n: int, offset: int = 0) -> np.ndarray:
    return np.array([f"{i + offset:032x}" for i in range(n)], dtype=object)


def assert_same_graph(graph: graph_module.NeighbourGraph, expected: graph_module.NeighbourGraph) -> None:
    assert graph.ids.tolist() == expected.ids.tolist() and graph.k == expected.k
    np.testing.assert_allclose(graph.similarities, expected.similarities, atol=SIMILARITY_TOLERANCE)

    def canonical(g: graph_module.NeighbourGraph) -> np.ndarray:  # equal float16 similarities are ties
        return np.take_along_axis(g.positions, np.lexsort((g.positions, -g.similarities), axis=1), axis=1)

    assert np.mean(canonical(graph) == canonical(expected)) > 0.999  # float ties at the k-th place aside


# -- the numpy core ---------------------------------------------------------------------------------------
def test_an_exact_graph_patched_after_adds_and_removals_equals_one_built_from_scratch() -> None:
    vectors, ids = clustered(900, seed=4), ids_of(900)
    old = build(ids[:800], vectors[:800], k=12)
    # remove 40 (some of them everyone's neighbours), add the last 100 (interleaved into store order)
    keep = np.setdiff1d(np.arange(900), np.arange(0, 400, 10))
    order = np.random.default_rng(0).permutation(keep)
    patched = refresh(old, ids[order], vectors[order])
    assert patched.exact and patched.recall == 1.0
    assert_same_graph(patched, build(ids[order], vectors[order], k=12))
    assert not np.isin(patched.positions, np.flatnonzero(~np.isin(ids[order], ids[keep]))).any()


def test_a_graph_from_the_index_stays_within_its_stated_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_module, "EXACT_UP_TO", 100)  # the index path, on a set small enough to check
    vectors, ids = clustered(3000, seed=5), ids_of(3000)
    index = open_index("hnsw", dim=vectors.shape[1], path=None)
    index.add(ids[:2900].tolist(), vectors[:2900])
    old = build(ids[:2900], vectors[:2900], k=16, index=index)
    assert not old.exact and old.recall >= MIN_RECALL
    index.remove(ids[:50].tolist())
    index.add(ids[2900:].tolist(), vectors[2900:])
    patched = refresh(old, ids[50:], vectors[50:], index=index)
    exact = build(ids[50:], vectors[50:], k=16)
    hits = np.mean([len(np.intersect1d(a, b)) / 16 for a, b in zip(patched.positions, exact.positions, strict=True)])
    assert hits >= MIN_RECALL and patched.recall >= MIN_RECALL
    assert abs(measure_recall(patched, vectors[50:], sample=3000 - 50) - hits) < 1e-9


@pytest.fixture
def partitioned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The partitioned build on a set small enough to check against an exact graph: partitions of ~64 images,
    a first reach of 128 candidates (of 2,000+), so the search really leaves most images out."""
    monkeypatch.setattr(graph_module, "EXACT_UP_TO", 100)
    monkeypatch.setattr(graph_partitions, "PARTITION", 64)
    monkeypatch.setattr(graph_partitions, "FIRST_REACH", 128)


def test_a_partitioned_graph_holds_its_stated_recall_and_keeps_it_through_a_refresh(partitioned: None) -> None:
    vectors, ids = clustered(2600, seed=8, clusters=30), ids_of(2600)
    graph = build(ids[:2400], vectors[:2400], k=16)
    assert not graph.exact and graph.partitions is not None
    assert graph.partitions.reach < 2400 / 2  # most images were never compared
    truth = graph_partitions.exact_few(vectors[:2400], np.arange(2400), 16)
    measured = graph_partitions.recall_at(graph.positions, truth)
    assert measured >= MIN_RECALL and abs(measured - graph.recall) < 0.03, (measured, graph.recall)
    # remove 100 (among them neighbours of many), add 200 (their partitions found by their centres)
    keep = np.setdiff1d(np.arange(2600), np.arange(0, 1000, 10))
    patched = refresh(graph, ids[keep], vectors[keep])
    assert patched.partitions is not None and len(patched.partitions.of) == len(keep)
    truth = graph_partitions.exact_few(vectors[keep], np.arange(len(keep)), 16)
    assert graph_partitions.recall_at(patched.positions, truth) >= MIN_RECALL
    added = np.arange(len(keep) - 200, len(keep))  # the new images found their own neighbours
    assert graph_partitions.recall_at(patched.positions[added], truth[added]) >= MIN_RECALL
    assert patched.positions.max() < len(keep)


def test_a_partitioned_graph_round_trips_and_refuses_broken_partitions(partitioned: None) -> None:
    graph = build(ids_of(600), clustered(600, seed=9), k=8)
    assert graph.partitions is not None
    loaded = graph_module.NeighbourGraph.from_arrays(graph.arrays())
    assert loaded.partitions is not None and loaded.partitions.reach == graph.partitions.reach
    np.testing.assert_array_equal(loaded.partitions.of, graph.partitions.of)
    np.testing.assert_array_equal(loaded.distances, graph.distances)
    broken = {
        "partition_of": {"partition_of": graph.partitions.of + 1000},
        "partition_reach": {"partition_reach": np.array([0])},
        "partition_centres": {"partition_centres": graph.partitions.centres * np.nan},
        "expected all of": {"partition_of": None},
    }
    for message, change in broken.items():
        arrays = {key: value for key, value in {**graph.arrays(), **change}.items() if value is not None}
        with pytest.raises(ValueError, match=message):
            graph_module.NeighbourGraph.from_arrays(arrays)


def test_an_untrusted_graph_is_refused_for_what_is_wrong() -> None:
    graph = build(ids_of(50), clustered(50, seed=6), k=5)
    broken = {
        "positions out of range": {"positions": np.full_like(graph.positions, 50)},
        "positions": {"positions": graph.positions.astype(np.int64)},
        "distances out of range": {"distances": graph.distances + np.float16(3)},
        "ids": {"ids": np.array(["a"] * 50)},
        "lacks": {"info": None},
    }
    for message, change in broken.items():
        arrays = {**graph.arrays(), **change}
        arrays = {key: value for key, value in arrays.items() if value is not None}
        with pytest.raises(ValueError, match=message):
            graph_module.NeighbourGraph.from_arrays(arrays)


def test_a_graph_file_from_before_float16_still_loads_and_a_new_one_is_smaller() -> None:
    graph = build(ids_of(300), clustered(300, seed=7), k=8)
    arrays = graph.arrays()
    assert arrays["distances"].dtype == np.float16 and arrays["positions"].dtype == np.int32
    written_before = {key: value for key, value in arrays.items() if key != "distances"}
    written_before["similarities"] = graph.similarities.astype(np.float32)  # the float32 file of earlier versions
    loaded = graph_module.NeighbourGraph.from_arrays(written_before)
    assert_same_graph(loaded, graph)
    np.testing.assert_array_equal(loaded.positions, graph.positions)
    with pytest.raises(ValueError, match="similarities"):
        graph_module.NeighbourGraph.from_arrays({**written_before, "similarities": written_before["similarities"] + 3})
    assert graph.positions.nbytes + graph.distances.nbytes == 300 * 8 * 6  # 6 bytes per neighbour


# -- in a library --------------------------------------------------------------------------------------------
def add_stamps(folder: Path, stamps_root: Path, category: str, n: int) -> None:
    for path in stamp_files(stamps_root, (category,), n):
        shutil.copy2(path, folder / f"{category}-{path.name}")


def from_scratch(library: Library) -> graph_module.NeighbourGraph:
    snapshot = library.store.snapshot()
    return build(snapshot.ids, snapshot.vectors(), k=library.neighbours.k)


def test_update_keeps_the_graph_equal_to_an_exact_one_after_add_change_and_remove(
    image_folder: Path, stamps_root: Path, tiny_model: str
) -> None:
    with Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        assert library.neighbours.path.is_file()
        assert_same_graph(library.neighbours.graph(), from_scratch(library))
        add_stamps(image_folder, stamps_root, "space", 6)  # add
        changed = sorted(image_folder.rglob("*.png"))[3]  # change: new pixels, new id
        image = Image.open(changed).convert("RGB")
        image.rotate(90).save(changed)
        sorted(image_folder.rglob("*.png"))[7].unlink()  # remove
        library.update(progress=False)
        graph = library.neighbours.graph()
        assert_same_graph(graph, from_scratch(library))
    with Library(image_folder, model=tiny_model, index="exact") as reopened:  # read back from the workspace
        assert_same_graph(reopened.neighbours.graph(), graph)
        df = reopened.neighbours.of(graph.ids[:2], k=3)
        assert list(df.columns) == ["id", "rank", "neighbour", "similarity"] and len(df) == 6
        assert df["neighbour"].tolist()[:3] == graph.ids[graph.positions[0, :3]].tolist()
        with pytest.raises(PicsiftError, match="valid: 1 to 32"):
            reopened.neighbours.of(graph.ids[:1], k=33)
        with pytest.raises(PicsiftError, match="not embedded"):
            reopened.neighbours.of(["f" * 32])


def test_a_planted_graph_file_is_rebuilt_with_one_warning(
    image_folder: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        expected = library.neighbours.graph()
        path = library.neighbours.path
    arrays = expected.arrays()
    arrays["positions"] = np.full_like(arrays["positions"], 10**6)  # would index far outside the store
    path.unlink()
    np.savez(path, **arrays)
    with caplog.at_level(logging.WARNING), Library(image_folder, model=tiny_model, index="exact") as library:
        assert_same_graph(library.neighbours.graph(), expected)
        library.neighbours.graph()
    assert sum("neighbour graph" in r.getMessage() for r in caplog.records) == 1
    path.unlink()
    path.symlink_to(image_folder)  # a link planted at the graph's name is never followed
    with Library(image_folder, model=tiny_model, index="exact") as library:
        assert_same_graph(library.neighbours.graph(), expected)
    assert not path.is_symlink()


KILLED_REFRESH = KILL_AFTER + textwrap.dedent(
    """
    import sys
    import picsift, picsift.analysis.graph_service as service
    folder, spec = sys.argv[1], sys.argv[2]
    kill_after(service, "refresh", 1, static=True)  # the new graph computed, not yet written
    picsift.Library(folder, model=spec, index="exact").update(progress=False)
    """
)


def test_an_update_killed_before_writing_the_graph_leaves_the_old_one_and_the_next_read_catches_up(
    image_folder: Path, stamps_root: Path, tiny_model: str
) -> None:
    with Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        before = library.neighbours.graph()
    add_stamps(image_folder, stamps_root, "space", 5)
    child = fast_python.run([sys.executable, "-c", KILLED_REFRESH, str(image_folder), tiny_model],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with Library(image_folder, model=tiny_model, index="exact") as library:
        saved = graph_module.NeighbourGraph.from_arrays(library.neighbours.files.load_arrays(library.neighbours.path))
        assert saved.ids.tolist() == before.ids.tolist()  # the old graph, whole
        assert len(library.store.snapshot()) == len(before) + 5
        assert_same_graph(library.neighbours.graph(), from_scratch(library))


# -- the analyses that moved onto the graph --------------------------------------------------------------------
def test_outliers_and_near_duplicates_from_the_graph_are_what_the_exact_computation_gave(
    image_folder: Path, tiny_model: str
) -> None:
    pairs = plant_duplicates(image_folder)
    with Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        snapshot = library.store.snapshot()
        vectors = snapshot.vectors()
        for k in (3, 10):
            expected, scores = outliers(vectors, k=k, n=None)
            found = library.outliers(n=len(snapshot), k=k, progress=False).df
            assert found["id"].tolist() == snapshot.ids[expected].tolist()
            np.testing.assert_allclose(found["score"], scores, atol=SIMILARITY_TOLERANCE)  # float16 similarities
        for threshold in (0.999, 0.99):
            groups = near_duplicates(vectors, threshold)
            df = library.near_duplicates(threshold=threshold, progress=False).df
            assert df["id"].tolist() == [snapshot.ids[p] for members, _ in groups for p in members]
            np.testing.assert_allclose(df["similarity"], np.concatenate([s for _, s in groups]), atol=1e-6)
        copies = library.near_duplicates(threshold=0.999, progress=False).df
        found_pairs = {frozenset(relative(library, g["path"].tolist())) for _, g in copies.groupby("group")}
        assert found_pairs == {frozenset(pair) for pair in pairs}


def test_typical_sampling_picks_each_clusters_most_typical_image_by_the_graph(
    image_folder: Path, stamps_root: Path, tiny_model: str
) -> None:
    add_stamps(image_folder, stamps_root, "space", 16)
    with Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        snapshot, graph = library.store.snapshot(), library.neighbours.graph()
        typicality = graph_typicality(graph.similarities)
        picked = library.sample(5, method="typical").df["id"].tolist()
        vectors = snapshot.vectors()
        before = sample_positions(vectors, 5, method="typical")  # within-cluster typicality (no graph)
        after = sample_positions(vectors, 5, method="typical", typicality=typicality)
        assert picked == snapshot.ids[after].tolist() and len(set(picked)) == 5
        # the same clusters in the same order: the graph's pick is at least as typical as the old one, each time
        assert np.all(typicality[after] >= typicality[before] - 1e-6)
        assert typicality[after].mean() >= typicality[before].mean()


def test_umap_from_the_graph_keeps_the_trustworthiness_of_umaps_own_neighbours() -> None:
    pytest.importorskip("umap")
    from sklearn.manifold import trustworthiness

    from picsift.analysis.projection import update_map

    from .test_projection import clustered as well_separated
    from .test_projection import ids_for, snapshot

    vectors, _ = well_separated(600, seed=3)
    ids = ids_for(600, "u")
    graph = build(np.array(ids, dtype=object), vectors, k=32)
    own = update_map(None, snapshot(vectors, ids, 1), "umap", 2)
    from_graph = update_map(None, snapshot(vectors, ids, 1), "umap", 2, knn=graph.nearest)
    assert not np.allclose(own.coords, from_graph.coords)  # the graph was used
    t_own = trustworthiness(vectors, own.coords, n_neighbors=10, metric="cosine")
    t_graph = trustworthiness(vectors, from_graph.coords, n_neighbors=10, metric="cosine")
    assert t_graph >= t_own - 0.01, (t_graph, t_own)


def test_a_map_with_the_graph_fits_every_image_beyond_the_sample_size(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("umap")
    from picsift.analysis import projection

    from .test_projection import clustered as well_separated
    from .test_projection import ids_for, snapshot

    monkeypatch.setattr(projection, "UMAP_FIT_ROWS", 200)  # a "large" set: more images than the sample size
    monkeypatch.setattr(projection, "UMAP_GRAPH_FIT_ROWS", 1000)
    vectors, _ = well_separated(500, seed=4)
    ids = ids_for(500, "f")
    graph = build(np.array(ids, dtype=object), vectors, k=32)
    assert projection.update_map(None, snapshot(vectors, ids, 1), "umap", 2).fitted == 200  # a sample, no graph
    assert projection.update_map(None, snapshot(vectors, ids, 1), "umap", 2, knn=graph.nearest).fitted == 500
    monkeypatch.setattr(projection, "UMAP_GRAPH_FIT_ROWS", 400)  # beyond it, the sample again
    assert projection.update_map(None, snapshot(vectors, ids, 1), "umap", 2, knn=graph.nearest).fitted == 200


def test_a_few_rows_searched_partition_by_partition_get_the_same_neighbours(partitioned: None,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clustered(2400, seed=11, clusters=30)
    parts = graph_partitions.partition(vectors)
    parts.reach = 64
    rows = np.sort(np.random.default_rng(1).choice(2400, 60, replace=False))
    monkeypatch.setattr(graph_partitions, "FEW_ROWS", 0.0)  # a query partition at a time (the build's way)
    by_query = graph_partitions.search(vectors, rows, parts, 16)
    monkeypatch.setattr(graph_partitions, "FEW_ROWS", 1.0)  # a candidate partition at a time (a refresh's way)
    by_candidates = graph_partitions.search(vectors, rows, parts, 16)
    np.testing.assert_allclose(by_candidates[1], by_query[1], atol=1e-6)
    assert np.mean(by_candidates[0] == by_query[0]) > 0.999 and (by_candidates[0] != rows[:, None]).all()
    truth = graph_partitions.exact_few(vectors, rows, 16)
    assert graph_partitions.recall_at(by_candidates[0], truth) < 1.0  # the reach really left neighbours out


def test_a_map_fitted_from_a_partition_built_graph_puts_near_duplicates_together(
    partitioned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("umap")
    from picsift.analysis.projection import update_map

    from .test_projection import clustered as well_separated
    from .test_projection import ids_for, snapshot

    vectors, labels = well_separated(900, seed=6)
    rng = np.random.default_rng(2)
    originals = rng.choice(880, 20, replace=False)
    copies = np.arange(880, 900)  # near copies (cosine ~0.999) of 20 images
    noisy = vectors[originals] + rng.normal(0, 0.002, (20, vectors.shape[1])).astype(np.float32)
    vectors[copies], labels[copies] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True), labels[originals]
    ids = ids_for(900, "p")
    graph = build(np.array(ids, dtype=object), vectors, k=32)
    assert graph.partitions is not None  # built through partitions, as above 50k images

    def map_from(knn: object) -> tuple[float, float]:
        """(share of copies whose original is among their 5 nearest points, share of points nearest their cluster)"""
        fitted = update_map(None, snapshot(vectors, ids, 1), "umap", 2, knn=knn)
        assert fitted.fitted == 900 and np.isfinite(fitted.coords).all()
        apart = np.linalg.norm(fitted.coords[:, None] - fitted.coords[None], axis=2)
        np.fill_diagonal(apart, np.inf)
        together = np.mean([original in np.argsort(apart[copy])[:5]
                            for copy, original in zip(copies, originals, strict=True)])
        return float(together), float(np.mean(labels[apart.argmin(axis=1)] == labels))

    together, clusters = map_from(graph.nearest)
    monkeypatch.setattr(graph_module, "EXACT_UP_TO", 10_000)
    exact = build(np.array(ids, dtype=object), vectors, k=32)
    assert exact.exact
    exact_together, exact_clusters = map_from(exact.nearest)
    # as good as the map from the exact graph (the layout's last digits depend on the machine's thread count)
    assert together >= min(0.9, exact_together - 0.05) and clusters >= min(0.98, exact_clusters - 0.01)
