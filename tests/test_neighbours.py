"""Outliers and near duplicates: the numpy core on planted data, the Library methods and the CLI on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.analysis.neighbours import components, near_duplicates, nearest_neighbours, outliers, similar_pairs
from picsift.errors import PicsiftError
from picsift.index import open_index

from .test_cli import picsift

DIM = 48


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0, clusters: int = 12, noise: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM))
    return unit(centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, DIM)))


def brute_force(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


# -- the numpy core ---------------------------------------------------------------------------------
def test_exact_neighbours_match_brute_force_across_blocks_and_column_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    from picsift.analysis import neighbours

    monkeypatch.setattr(neighbours, "BLOCK_CELLS", 700 * 64)  # many row blocks, a ragged last column group
    vectors = clustered(700)
    positions, similarities = nearest_neighbours(vectors, 7)
    expected_positions, expected = brute_force(vectors, 7)
    np.testing.assert_allclose(similarities, expected, atol=1e-5)
    assert np.mean(positions == expected_positions) > 0.999  # float ties aside
    assert not np.any(positions == np.arange(700)[:, None])  # never itself


def test_neighbours_from_an_index_agree_with_exact_ones() -> None:
    vectors = clustered(1500, seed=1)
    ids = [f"{i:032x}" for i in range(1500)]
    expected, _ = brute_force(vectors, 5)
    for backend in ("hnsw", "exact"):  # hnsw: batched hnswlib queries; exact: the generic one-by-one path
        index = open_index(backend, dim=DIM, path=None)
        index.add(ids, vectors)
        positions, similarities = nearest_neighbours(vectors, 5, index=index, ids=ids)
        assert np.mean(positions == expected) > 0.98, backend
        assert np.all(np.diff(similarities, axis=1) <= 1e-6) and not np.any(positions == np.arange(1500)[:, None])
    with pytest.raises(ValueError, match="needs the ids"):
        nearest_neighbours(vectors, 5, index=index)


def test_planted_outliers_come_first() -> None:
    vectors = clustered(2000, seed=2)
    planted = np.array([3, 500, 1234, 1999])
    vectors[planted] = unit(np.random.default_rng(9).normal(size=(4, DIM)))  # far from every cluster
    positions, scores = outliers(vectors, k=10, n=10)
    assert set(positions[:4].tolist()) == set(planted.tolist())
    assert np.all(np.diff(scores) <= 0) and scores[3] > scores[4] + 0.1
    everything, all_scores = outliers(vectors, k=10, n=None)
    assert len(everything) == 2000 and all_scores[-1] < 0.3


def test_near_duplicate_groups_are_connected_components_above_the_threshold() -> None:
    vectors = clustered(400, seed=3, noise=1.0)
    def turned(position: int, degrees: float, seed: int) -> np.ndarray:
        """vectors[position] turned by ``degrees`` towards a random orthogonal direction."""
        origin = vectors[position]
        direction = np.random.default_rng(seed).normal(size=DIM)
        direction = unit((direction - (direction @ origin) * origin)[None])[0]
        angle = np.radians(degrees)
        return unit((np.cos(angle) * origin + np.sin(angle) * direction)[None])

    # 400: 5 degrees from 10 (cosine 0.996); 401: 10 degrees the same way, so cosine 0.985 with 10 but 0.996
    # with 400 (joins the group only through it); 402: 3 degrees from 200; 403: 4 degrees from 10, elsewhere
    data = np.concatenate([vectors, turned(10, 5, 1), turned(10, 10, 1), turned(200, 3, 2), turned(10, 4, 3)])
    groups = near_duplicates(data, threshold=0.99)
    assert [sorted(g[0].tolist()) for g in groups] == [[10, 400, 401, 403], [200, 402]]
    members, similarity = groups[0]
    assert members[0] == 10 and similarity[0] == 1.0 and np.all(np.diff(similarity[1:]) <= 0)
    np.testing.assert_allclose(similarity[1:], data[members[1:]] @ data[10], atol=1e-5)
    # exact pairs and the index path find the same groups
    a, b, s = similar_pairs(data, 0.99)
    assert np.all(a < b) and np.all(s >= 0.99) and len(a) >= 4
    index = open_index("hnsw", dim=DIM, path=None)
    ids = [f"{i:032x}" for i in range(len(data))]
    index.add(ids, data)
    assert [g[0].tolist() for g in near_duplicates(data, 0.99, index=index, ids=ids)] == [g[0].tolist() for g in groups]
    assert near_duplicates(vectors, threshold=0.99) == []
    with pytest.raises(ValueError, match="valid range"):
        near_duplicates(data, threshold=1.5)


def test_components_follow_long_chains() -> None:
    labels = components(8, np.array([6, 5, 4, 3, 0]), np.array([7, 6, 5, 4, 1]))
    assert labels.tolist() == [0, 0, 2, 3, 3, 3, 3, 3]


# -- the Library and the CLI on real images -------------------------------------------------------------
def plant_duplicates(folder: Path) -> list[tuple[str, str]]:
    """Re-encoded copies of the two largest stamps: (original, copy) relative paths.

    One is scaled to 85% and saved as JPEG, one re-encoded as JPEG at full size (new bytes, new id)."""
    originals = sorted(folder.rglob("*.png"), key=lambda p: -Image.open(p).width * Image.open(p).height)[:2]
    pairs = []
    for path, scale in zip(originals, (0.85, 1.0), strict=True):
        image = Image.open(path).convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        copy = folder / "copies" / f"copy-of-{path.stem}.jpg"
        copy.parent.mkdir(exist_ok=True)
        flat.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS).save(copy, quality=90)
        pairs.append((str(path.relative_to(folder)), str(copy.relative_to(folder))))
    return pairs


def relative(library: Library, paths: list[str]) -> list[str]:
    return [str(Path(p).relative_to(library.root)) for p in paths]


@pytest.fixture
def with_copies(image_folder: Path, tiny_model: str) -> tuple[Library, list[tuple[str, str]]]:
    pairs = plant_duplicates(image_folder)
    library = Library(image_folder, model=tiny_model, index="exact")
    library.update(progress=False)
    return library, pairs


def test_library_near_duplicates_finds_the_planted_copies_only(with_copies: tuple[Library, list]) -> None:
    library, pairs = with_copies
    # a random-weights model puts every pair of images near 1 (median ~0.98): only copies pass 0.999
    df = library.near_duplicates(threshold=0.999, save_as="copies", progress=False).df
    assert list(df.columns) == ["rank", "id", "path", "score", "group", "similarity"]
    assert df["score"].tolist() == df["similarity"].tolist()
    found = {frozenset(relative(library, g["path"].tolist())) for _, g in df.groupby("group")}
    assert found == {frozenset(pair) for pair in pairs}
    assert df.groupby("group")["similarity"].first().eq(1.0).all()
    assert library.collection().df["id"].tolist() == df["id"].tolist()  # the temporary collection
    saved = library.collection("copies").df
    assert saved["id"].tolist() == df["id"].tolist()
    np.testing.assert_allclose(saved["score"], df["similarity"], atol=1e-6)
    recipe = library.collections.recipe("copies")
    assert recipe["kind"] == "near_duplicates" and recipe["threshold"] == 0.999 and recipe["group_sizes"] == [2, 2]
    # within a collection that holds one image of each pair, there is nothing to find
    others = [i for i in library.store.snapshot().ids.tolist() if i not in set(df["id"])]
    library.collections.write("halves", [df["id"].iloc[0], df["id"].iloc[2], *others])
    assert library.near_duplicates(threshold=0.999, within="halves", progress=False).df.empty
    with pytest.raises(PicsiftError, match="valid range"):
        library.near_duplicates(threshold=0)


def test_library_outliers_ranks_and_saves(with_copies: tuple[Library, list]) -> None:
    library, pairs = with_copies
    df = library.outliers(n=5, k=3, save_as="odd", progress=False).df
    assert list(df.columns) == ["rank", "id", "path", "score"] and df["rank"].tolist() == [1, 2, 3, 4, 5]
    assert df["score"].is_monotonic_decreasing and all(Path(p).is_file() for p in df["path"])
    copies = {c for _, c in pairs} | {o for o, _ in pairs}
    assert not copies & set(relative(library, df["path"].tolist()))  # an image with a copy is not isolated
    snapshot = library.store.snapshot()
    vectors = snapshot.vectors()
    expected_positions, _ = outliers(vectors, k=3, n=5)
    assert df["id"].tolist() == snapshot.ids[expected_positions].tolist()
    assert library.collection("odd").df["id"].tolist() == df["id"].tolist()
    assert library.collections.recipe()["kind"] == "outliers"
    with pytest.raises(PicsiftError, match="invalid collection name"):
        library.outliers(save_as="_bad")


def test_cli_outliers_and_duplicates_as_json(image_folder: Path, tiny_model: str) -> None:
    pairs = plant_duplicates(image_folder)
    picsift("index", str(image_folder), "--model", tiny_model, "--quiet")
    odd = json.loads(picsift("outliers", str(image_folder), "--model", tiny_model, "--n", "4", "--k", "3",
                             "--json").stdout)
    assert [r["rank"] for r in odd["results"]] == [1, 2, 3, 4] and odd["recipe"]["kind"] == "outliers"
    scores = [r["score"] for r in odd["results"]]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    dups = json.loads(picsift("duplicates", str(image_folder), "--model", tiny_model, "--threshold", "0.999",
                              "--save", "dups", "--json").stdout)
    groups: dict[int, set[str]] = {}
    for row in dups["results"]:
        groups.setdefault(row["group"], set()).add(str(Path(row["path"]).relative_to(image_folder)))
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, pairs))
    saved = json.loads(picsift("collections", str(image_folder), "--json").stdout)
    assert {"name": "dups", "size": 4} in [{"name": c["name"], "size": c["size"]} for c in saved]
    plain = picsift("duplicates", str(image_folder), "--model", tiny_model, "--threshold", "0.999").stdout.splitlines()
    assert plain[0].startswith("2 groups") and len(plain) == 5


@pytest.mark.offline_model
def test_default_threshold_with_a_trained_model(image_folder: Path) -> None:
    pairs = plant_duplicates(image_folder)
    with Library(image_folder, model="picsift-offline", index="exact") as library:
        library.update(progress=False)
        df = library.near_duplicates(progress=False).df  # threshold 0.95
        found = {frozenset(relative(library, g["path"].tolist())) for _, g in df.groupby("group")}
        assert found == {frozenset(pair) for pair in pairs}
