"""Diverse sampling and active learning: coverage, clusters, exclusions, uncertainty, library and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import picsift
import picsift.analysis.clustering as clustering
from picsift.analysis.active_learning import ActiveLearningLoop, uncertainty_scores
from picsift.analysis.clustering import rows_view
from picsift.analysis.sampling import SAMPLING_METHODS, coverage, diverse_sample, kcenter, sample_positions


def clustered(sizes: list[int], dim: int = 32, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random centre per cluster, and each vector's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    vectors = centres[groups] + spread * rng.normal(size=(len(groups), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), groups


def greedy_farthest(vectors: np.ndarray, size: int, first: int | None, covered: list[int]) -> list[int]:
    """Textbook farthest-point sampling with full distance recomputation."""
    reach = np.full(len(vectors), np.inf)
    for c in [*covered, *([] if first is None else [first])]:
        reach = np.minimum(reach, np.linalg.norm(vectors - vectors[c], axis=1))
    picks = [] if first is None else [first]
    while len(picks) < size:
        pick = int(np.argmax(reach))
        picks.append(pick)
        reach = np.minimum(reach, np.linalg.norm(vectors - vectors[pick], axis=1))
    return picks


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_same_seed_same_sample_and_no_duplicates(method: str) -> None:
    vectors, _ = clustered([300, 120, 60, 30, 30, 10], seed=1)
    first = sample_positions(vectors, 12, method=method, seed=7)
    assert len(first) == len(set(first.tolist())) == 12
    assert sample_positions(vectors, 12, method=method, seed=7).tolist() == first.tolist()
    if method in ("random", "kcenter"):  # the seed drives the draw / the start
        assert sample_positions(vectors, 12, method=method, seed=8).tolist() != first.tolist()


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_small_clusters_are_represented_unlike_plain_random_sampling(method: str) -> None:
    sizes = [1000, 300, 100, 50, 30, 20, 20, 20]
    vectors, groups = clustered(sizes, seed=2)
    size = 16 if method == "random" else 8  # random draws across sqrt(n/2) = 26 k-means cells
    found = [len(set(groups[sample_positions(vectors, size, method=method, seed=s)].tolist())) for s in range(5)]
    iid = [len(set(groups[np.random.default_rng(s).choice(len(vectors), size, replace=False)].tolist()))
           for s in range(5)]
    assert np.mean(found) >= np.mean(iid) + (1.5 if method == "random" else 3)
    if method == "kcenter":
        assert found == [8] * 5  # the farthest point always lands in a cluster not yet visited


def test_kcenter_is_exact_farthest_point_and_covers_better_than_random() -> None:
    vectors, _ = clustered([500] * 12 + [5] * 6, spread=0.2, seed=3)
    picks = kcenter(vectors, 40, first=11)
    assert picks.tolist() == greedy_farthest(vectors, 40, 11, [])
    covered = [0, 1, 2, 600, 3000]
    assert kcenter(vectors, 25, covered=np.array(covered)).tolist() == greedy_farthest(vectors, 25, None, covered)

    k_cov = coverage(vectors, picks, radius=0.5)
    for seed in range(5):
        for other in (np.random.default_rng(seed).choice(len(vectors), 40, replace=False),
                      sample_positions(vectors, 40, method="random", seed=seed)):
            r_cov = coverage(vectors, other, radius=0.5)
            assert k_cov.max < r_cov.max
    assert k_cov.within is not None and 0 < k_cov.within <= 1


def test_coverage_matches_brute_force() -> None:
    vectors, _ = clustered([50, 50, 20], seed=4)
    sample = [3, 77, 110]
    nearest = np.min(np.linalg.norm(vectors[:, None, :] - vectors[sample][None], axis=2), axis=1)
    cov = coverage(vectors, sample, radius=float(np.median(nearest)))
    assert cov.mean == pytest.approx(nearest.mean(), abs=1e-4) and cov.max == pytest.approx(nearest.max(), abs=1e-4)
    assert cov.within == pytest.approx(np.mean(nearest <= np.median(nearest)), abs=0.02)
    assert coverage(vectors, np.arange(len(vectors))).max == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_excluded_images_are_never_picked_and_count_as_covered(method: str) -> None:
    sizes = [300, 300, 300, 300]
    vectors, groups = clustered(sizes, seed=5)
    labelled = np.flatnonzero(groups == 0)[:5]  # a few labelled images in cluster 0
    exclude = np.zeros(len(vectors), bool)
    exclude[labelled] = True
    picked = sample_positions(vectors, 3, method=method, n_clusters=4 if method == "random" else None,
                              exclude=exclude, seed=0)
    assert not exclude[picked].any()
    assert sorted(groups[picked].tolist()) == [1, 2, 3]  # the clusters nobody has labelled yet come first
    by_id = diverse_sample([f"i{i}" for i in range(len(vectors))], vectors, 50, method=method,
                           exclude=[f"i{i}" for i in range(1000)], seed=0)
    assert all(int(i[1:]) >= 1000 for i in by_id)


@pytest.mark.parametrize("method", ["kcenter", "random"])
def test_uncertainty_picks_the_uncertain_ones_yet_spread_out(method: str) -> None:
    vectors, groups = clustered([20] * 3 + [200] * 3, seed=6)  # the 10 * 6 most uncertain: clusters 0-2
    rng = np.random.default_rng(0)
    uncertainty = np.where(groups < 3, 0.8, 0.1) + 0.05 * rng.random(len(vectors))
    uncertainty[groups == 0] += 0.1  # cluster 0 is the most uncertain: top-k alone takes only it
    top = np.argsort(-uncertainty)[:6]
    assert set(groups[top].tolist()) == {0}
    picked = sample_positions(vectors, 6, method=method, uncertainty=uncertainty, seed=0)
    assert (uncertainty[picked] > 0.7).all()  # from the uncertain clusters ...
    assert set(groups[picked].tolist()) == {0, 1, 2}  # ... but all three of them
    nan = uncertainty.copy()
    nan[groups == 1] = np.nan  # unknown: never picked
    assert 1 not in set(groups[sample_positions(vectors, 6, method=method, uncertainty=nan)].tolist())


def test_memory_mapped_rows_read_in_blocks_give_the_same_sample(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    vectors, _ = clustered([700, 500, 300, 200, 100], dim=16, spread=0.15, seed=7)
    stored = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32,
                                       shape=(len(vectors) + 50, 16))
    rows = np.random.default_rng(0).permutation(len(vectors) + 50)[: len(vectors)]  # with holes, shuffled
    stored[rows] = vectors
    view = rows_view(stored, rows)
    assert not isinstance(view, np.ndarray)
    expected = {m: sample_positions(vectors, 10, method=m, seed=1).tolist() for m in SAMPLING_METHODS}
    monkeypatch.setattr(clustering, "BLOCK_ELEMENTS", 2000)  # ~100-row blocks: many of them
    monkeypatch.setattr(clustering, "FIT_ROWS", 500)  # k-means fits on a sample, assigns the rest
    for method in SAMPLING_METHODS:
        assert len(set(sample_positions(view, 10, method=method, seed=1).tolist())) == 10
    assert sample_positions(view, 10, method="kcenter", seed=1).tolist() == expected["kcenter"]
    assert coverage(view, [1, 2, 3]).max == pytest.approx(coverage(vectors, [1, 2, 3]).max, abs=1e-5)
    assert isinstance(rows_view(stored, np.arange(5, 100)), np.memmap)  # consecutive rows: a plain slice


def test_bad_arguments_name_the_valid_choices() -> None:
    vectors, _ = clustered([20, 20])
    with pytest.raises(ValueError, match=r"kcentre.*random, centroids, kcenter, typical"):
        sample_positions(vectors, 3, method="kcentre")
    with pytest.raises(ValueError, match="one score per vector"):
        sample_positions(vectors, 3, uncertainty=np.ones(3))
    with pytest.raises(ValueError, match="n_clusters"):
        sample_positions(vectors, 3, n_clusters=0)
    assert sample_positions(vectors, 100, method="kcenter").tolist() != []  # more than there are: all of them
    assert len(sample_positions(vectors, 100, method="kcenter")) == 40


def test_uncertainty_measures() -> None:
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    assert uncertainty_scores(p, "margin") == pytest.approx([1.0, 0.0, 0.7])
    assert uncertainty_scores(p, "least_confident") == pytest.approx([0.5, 0.0, 0.4])
    entropy = uncertainty_scores(p, "entropy")
    assert entropy[0] == pytest.approx(np.log(2) / np.log(3)) and entropy[2] > entropy[0]
    assert abs(entropy[1]) < 1e-9
    with pytest.raises(ValueError, match="margin, entropy"):
        uncertainty_scores(p, "variance")


def test_active_learning_loop_learns_and_asks_about_new_things() -> None:
    vectors, groups = clustered([150] * 5, spread=0.2, seed=8)
    ids = [f"img{i}" for i in range(len(vectors))]
    truth = {i: f"class{g}" for i, g in zip(ids, groups, strict=True)}
    loop = ActiveLearningLoop(ids, vectors, seed=0)
    first = loop.next_batch(5)  # nothing labelled: a diverse sample, no model yet
    assert first["prediction"].isna().all() and len(set(groups[[ids.index(i) for i in first["id"]]])) == 5
    loop.label(first["id"], [truth[i] for i in first["id"]])
    second = loop.next_batch(10)
    assert not set(second["id"]) & set(first["id"]) and second["uncertainty"].notna().all()
    predicted = loop.predict()
    assert set(predicted.columns) >= {"id", "prediction", "confidence", "uncertainty"}
    assert (predicted["uncertainty"].diff().dropna() <= 1e-9).all()
    loop.label(second["id"], [truth[i] for i in second["id"]])
    third = loop.next_batch(15)
    loop.label(third["id"], [truth[i] for i in third["id"]])
    assert loop.accuracy(truth) > 0.95  # 30 labels of 750 images
    assert [h["round"] for h in loop.history] == [0, 1, 2] and loop.history[1]["uncertainty_used"]
    with pytest.raises(ValueError, match="not in this loop"):
        loop.label(["nope"], "class0")


# -- the library and the command line -------------------------------------------------------------
@pytest.fixture
def library(image_folder: Path, tiny_model: str) -> picsift.Library:
    lib = picsift.Library(image_folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    yield lib
    lib.close()


def test_library_sample_writes_the_temporary_collection(library: picsift.Library) -> None:
    df = library.sample(6, method="kcenter", seed=2).df
    assert list(df.columns) == ["rank", "id", "path", "score"] and len(df) == len(set(df["id"])) == 6
    assert df["score"].isna().all()  # a sample has no query, so no scores
    assert all(Path(p).is_file() for p in df["path"])
    assert library.collection().df["id"].tolist() == df["id"].tolist()
    recipe = library.collections.recipe()
    assert recipe["kind"] == "sample" and recipe["method"] == "kcenter" and recipe["seed"] == 2
    assert library.sample(6, method="kcenter", seed=2).df["id"].tolist() == df["id"].tolist()

    library.collections.save("first")
    again = library.sample(6, method="typical", exclude="first").df
    assert not set(again["id"]) & set(df["id"])
    within = library.sample(3, method="random", within="first").df
    assert set(within["id"]) <= set(df["id"]) and len(within) == 3

    library.labels.add_tag(df["id"][0], "label", "cat")
    unlabelled = library.sample(23, method="centroids", exclude_labelled=True).df
    assert df["id"][0] not in set(unlabelled["id"]) and len(unlabelled) == 23

    scores = {i: (1.0 if i in set(df["id"][:3]) else 0.0) for i in library.images()["id"]}
    uncertain = library.sample(3, method="kcenter", uncertainty=scores, pool=3).df
    assert set(uncertain["id"]) == set(df["id"][:3]) and library.collections.recipe()["uncertainty"]
    with pytest.raises(picsift.errors.PicsiftError, match="valid choices"):
        library.sample(3, method="nearest")


def test_active_learning_from_library_keeps_labels_as_tags(library: picsift.Library) -> None:
    loop = ActiveLearningLoop.from_library(library, tag="kind")
    batch = loop.next_batch(4)
    assert library.collection().df["id"].tolist() == batch["id"].tolist()
    loop.label(batch["id"][:2], "a")
    loop.label(batch["id"][2:], "b")
    assert library.labels.tags(batch["id"][0]) == [("kind", "a")]
    reopened = ActiveLearningLoop.from_library(library, tag="kind")
    assert reopened.labels == loop.labels
    nxt = reopened.next_batch(4)
    assert nxt["uncertainty"].notna().all() and not set(nxt["id"]) & set(batch["id"])


def test_cli_sample_json(library: picsift.Library) -> None:
    from tests.test_cli import picsift as run_cli

    folder = str(library.root)
    out = json.loads(run_cli("sample", folder, "--model", library.spec.text, "--method", "kcenter", "--n", "5",
                             "--seed", "3", "--json").stdout)
    ids = [r["id"] for r in out["results"]]
    assert len(set(ids)) == 5 and [r["rank"] for r in out["results"]] == [1, 2, 3, 4, 5]
    assert out["recipe"]["kind"] == "sample" and out["recipe"]["method"] == "kcenter"
    assert ids == library.sample(5, method="kcenter", seed=3).df["id"].tolist()  # same as the Python API
    plain = run_cli("sample", folder, "--model", library.spec.text, "--n", "2").stdout
    assert plain.count(folder) == 2
    bad = run_cli("sample", folder, "--model", library.spec.text, "--method", "nearest", check=False)
    assert bad.returncode != 0 and "kcenter" in bad.stderr
