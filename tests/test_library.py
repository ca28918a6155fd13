"""Updating and searching a real folder with a real (small, random-weight) open_clip model."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import picsift
import picsift.core.image_files
import picsift.core.video_update
from picsift.core.catalog import content_id
from picsift.embedding import decode_image
from picsift.errors import ModelMismatchError, NotIndexedError, PicsiftError, UnknownImageError, UnnamedModelError


@pytest.fixture
def library(image_folder: Path, tiny_model: str) -> picsift.Library:
    lib = picsift.Library(image_folder, model=tiny_model)
    lib.update(progress=False)
    yield lib
    lib.close()


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file whose bytes the update hashes (every file it reads)."""
    calls: list[str] = []
    real = content_id

    def spy(data: bytes) -> str:
        calls.append(real(data))
        return calls[-1]

    # image files are hashed as they are read (core/image_files.py), video frames as they are sampled
    monkeypatch.setattr(picsift.core.image_files, "content_id", spy)
    monkeypatch.setattr(picsift.core.video_update, "content_id", spy)
    return calls


def test_update_embeds_new_and_changed_drops_removed_and_skips_unchanged_without_reading(
    image_folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch, stamps_root: Path
) -> None:
    lib = picsift.Library(image_folder, model=tiny_model)
    first = lib.update(progress=False)
    assert (first.added, first.embedded) == (24, 24)
    assert lib.status()["ready"] and lib.status()["embedded"] == 24

    reads = count_reads(monkeypatch)
    second = lib.update(progress=False)
    assert (second.unchanged, second.embedded, second.added) == (24, 0, 0)
    assert reads == []  # unchanged files are not even opened

    files = sorted(image_folder.rglob("*.png"))
    files[0].unlink()  # removed
    replacement = next((stamps_root / "plants").rglob("*.png"))
    shutil.copy(replacement, files[1])  # changed content under the same name
    new = image_folder / "new" / "extra.png"
    new.parent.mkdir()
    shutil.copy(next((stamps_root / "space").rglob("*.png")), new)  # new
    third = lib.update(progress=False)
    assert (third.added, third.changed, third.removed, third.unchanged) == (1, 1, 1, 22)
    assert third.embedded == 2 and len(reads) == 2
    images = lib.images()
    assert str(files[0]) not in set(images.path)
    status = lib.status()
    assert status["files"] == 24 and status["embedded"] == 24 == status["images"]
    assert len(lib.store) == 24  # the removed and replaced contents' embeddings are gone
    lib.close()


def test_moved_and_duplicated_files_keep_their_embedding(image_folder: Path, tiny_model: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    lib = picsift.Library(image_folder, model=tiny_model)
    lib.update(progress=False)
    files = sorted(image_folder.rglob("*.png"))
    old_id = lib.catalog.id_for_path(files[0].relative_to(image_folder).as_posix())
    files[0].rename(image_folder / "moved.png")
    shutil.copy(files[1], image_folder / "copy.png")
    report = lib.update(progress=False)
    assert report.embedded == 0 and report.reused == 2
    assert lib.catalog.id_for_path("moved.png") == old_id
    assert lib.status()["images"] == 24 and lib.status()["files"] == 25
    lib.close()


def test_text_search_returns_results_sorted_by_score_with_the_full_distribution(library: picsift.Library) -> None:
    results = library.search("a small animal", limit=5)
    assert list(results.df.columns) == ["rank", "id", "path", "score"]
    assert len(results) == 5 and results.df["rank"].tolist() == [1, 2, 3, 4, 5]
    assert np.all(np.diff(results.df["score"]) <= 0)
    assert len(results.scores) == 24  # every image in scope, not only the top 5
    assert results.df["score"].iloc[0] == pytest.approx(results.scores.max())
    counts, edges = results.histogram(bins=8)
    assert counts.sum() == 24 and len(edges) == 9
    assert all(Path(p).is_file() for p in results.paths)
    # The text embedding really drives the ranking: the same scores come from the raw model.
    text = library.embedder.embed_text(["a small animal"])[0]
    image = library.embedder.embed_images([decode_image(Path(results.paths[0]).read_bytes()).image])[0]
    assert float(text @ image) == pytest.approx(results.df["score"].iloc[0], abs=1e-4)


def test_limit_larger_than_the_library_returns_everything(library: picsift.Library) -> None:
    assert len(library.search("anything", limit=1000)) == 24
    assert len(library.search("anything", limit=None)) == 24
    assert len(library.search("anything", limit=0)) == 0


def test_score_thresholds_above_below_and_range(library: picsift.Library) -> None:
    scores = np.sort(library.search("a vehicle", limit=None).scores)
    low, high = float(scores[5]), float(scores[-5])
    above = library.search("a vehicle", limit=None, min_score=high)
    assert len(above) == 5 and above.df["score"].min() >= high
    below = library.search("a vehicle", limit=3, max_score=low)
    assert len(below) == 3 and below.df["score"].max() <= low
    assert below.df["score"].iloc[0] == pytest.approx(low)  # the best of those below, first
    middle = library.search("a vehicle", limit=None, min_score=low, max_score=high)
    assert len(middle) == 19 - 5 + 1  # sorted positions 5..19 inclusive
    assert len(middle.scores) == 24  # thresholds filter results, never the distribution


def test_similar_by_id_path_and_pil_image_agree(library: picsift.Library, image_folder: Path) -> None:
    path = sorted(image_folder.rglob("*.png"))[3]
    image_id = library.catalog.id_for_path(path.relative_to(image_folder).as_posix())
    by_id = library.similar(image_id, limit=5)
    by_path = library.similar(str(path), limit=5)
    by_relative_path = library.similar(path.relative_to(image_folder).as_posix(), limit=5)
    by_pil = library.similar(Image.open(path), limit=5)
    assert by_id.ids[0] == image_id and by_id.df["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert by_path.ids.tolist() == by_id.ids.tolist() == by_relative_path.ids.tolist()
    assert by_pil.ids[0] == image_id
    excluded = library.similar(image_id, limit=5, exclude_references=True)
    assert image_id not in excluded.ids and len(excluded) == 5


def test_an_image_outside_the_library_is_embedded_on_the_fly(library: picsift.Library, stamps_root: Path) -> None:
    outside = next((stamps_root / "sports").rglob("*.png"))
    results = library.similar(outside, limit=3)
    assert len(results) == 3 and len(library.store) == 24  # nothing added to the library


def test_several_images_combine_by_mean_or_max(library: picsift.Library) -> None:
    ids = library.search("x", limit=None).ids.tolist()
    a, b = ids[0], ids[-1]
    mean = library.similar([a, b], limit=None, combine="mean")
    best = library.similar([a, b], limit=None, combine="max")
    vectors = library.store.snapshot()
    position = {i: n for n, i in enumerate(vectors.ids.tolist())}
    va, vb = (vectors.vectors(np.array([position[i]]))[0] for i in (a, b))
    centre = (va + vb) / np.linalg.norm(va + vb)
    # max: each reference finds itself at 1.0
    assert set(best.ids[:2]) == {a, b} and best.df["score"].iloc[1] == pytest.approx(1.0, abs=1e-5)
    # mean: scored against the normalised mean of the references
    top = mean.ids[0]
    vt = vectors.vectors(np.array([position[top]]))[0]
    assert mean.df["score"].iloc[0] == pytest.approx(float(vt @ centre), abs=1e-5)
    with pytest.raises(PicsiftError, match="combine='median'; valid choices: mean, max"):
        library.similar([a, b], combine="median")


def test_negative_examples_push_results_away(library: picsift.Library) -> None:
    ids = library.search("x", limit=None).ids.tolist()
    anchor = ids[0]
    plain = library.similar(anchor, limit=None)
    runner_up = plain.ids[1]
    pushed = library.similar(anchor, limit=None, negative_images=[runner_up], negative_weight=1.0)
    assert pushed.ids.tolist().index(runner_up) > 1
    score = dict(zip(pushed.ids, pushed.df["score"], strict=True))
    assert score[runner_up] < dict(zip(plain.ids, plain.df["score"], strict=True))[runner_up]


def test_each_search_replaces_the_temporary_collection_which_can_be_saved(
    library: picsift.Library, image_folder: Path, tiny_model: str
) -> None:
    first = library.search("a bird", limit=4)
    assert library.collection().ids.tolist() == first.ids.tolist()
    library.collections.save("birds")
    second = library.search("a car", limit=6, min_score=-1)
    assert library.collection().ids.tolist() == second.ids.tolist()
    library.close()
    reopened = picsift.Library(image_folder, model=tiny_model)
    saved = reopened.collection("birds").df
    assert saved["id"].tolist() == first.ids.tolist()
    assert saved["score"].tolist() == pytest.approx(first.df["score"].tolist())
    recipe = reopened.collections.recipe("birds")
    assert recipe["text"] == ["a bird"] and recipe["limit"] == 4 and recipe["model"] == reopened.spec.text
    assert reopened.collections.table()["name"].tolist() == ["birds"]
    within = reopened.search("a car", limit=None, within="birds")
    assert set(within.ids) == set(first.ids) and len(within.scores) == 4
    with pytest.raises(PicsiftError, match="no collection named 'nope'; collections: birds"):
        reopened.collection("nope")
    with pytest.raises(PicsiftError, match="invalid collection name"):
        reopened.collections.save("_private")
    reopened.collections.delete("birds")
    assert reopened.collections.names() == []
    reopened.close()


def test_a_different_model_never_mixes_with_stored_embeddings(image_folder: Path, tiny_model: str,
                                                               tmp_path: Path) -> None:
    import open_clip
    import torch

    with picsift.Library(image_folder, model=tiny_model) as lib:
        lib.update(progress=False)
        before = lib.store.snapshot().vectors().copy()
    torch.manual_seed(99)
    other = open_clip.create_model("picsift-test-tiny", pretrained=None)
    checkpoint = tmp_path / "other.pt"
    torch.save({"state_dict": other.state_dict()}, checkpoint)
    spec = tiny_model.rsplit(":", 1)[0] + f":{checkpoint}"
    with picsift.Library(image_folder, model=spec) as lib:
        assert lib.status()["embedded"] == 0
        with pytest.raises(NotIndexedError, match="run update"):
            lib.search("a cat")
        # switching models embeds everything again: refused until confirmed, with the cost stated
        with pytest.raises(ModelMismatchError, match=r"embeds 24 images again, about \d+ s at [\d.]+ images/s"
                                                     r".*update\(reembed=True\).*--reembed"):
            lib.update(progress=False)
        assert lib.status()["embedded"] == 0
        report = lib.update(progress=False, reembed=True)
        assert report.embedded == 24
        assert set(lib.status()["models"].values()) == {24}
    refused = pytest.raises(UnnamedModelError, match=f"embedded with the model {re.escape(repr(spec))}.*--model")
    with picsift.Library(image_folder) as lib, refused:  # no model named: the one last used, a checkpoint, must be
        _ = lib.spec  # named
    with picsift.Library(image_folder, model=spec) as lib:
        assert lib.spec.text == spec and lib.update(progress=False).embedded == 0
    with picsift.Library(image_folder, model=tiny_model) as lib:  # the first model's store is intact
        np.testing.assert_array_equal(lib.store.snapshot().vectors(), before)
        # and switching back needs no confirmation: nothing is embedded again
        assert lib.update(progress=False).embedded == 0


@pytest.mark.parametrize("backend", ["ivf", "qdrant-edge", "hnsw", "qdrant", "exact"])
def test_every_backend_gives_the_exact_top_results(image_folder: Path, tiny_model: str, backend: str) -> None:
    with picsift.Library(image_folder, model=tiny_model, index=backend) as lib:
        lib.update(progress=False)
        exact = lib.search("a red thing", limit=10)
        via_index = lib.search("a red thing", limit=10, distribution=False)
        assert via_index.ids.tolist() == exact.ids.tolist()
        np.testing.assert_allclose(via_index.df["score"], exact.df["score"], atol=1e-4)
        assert len(lib.index) == 24
    with picsift.Library(image_folder, model=tiny_model) as lib:  # reopened: the backend is remembered
        assert lib.index_name == backend and len(lib.index) == 24


def test_bad_references_and_arguments_have_clear_errors(library: picsift.Library) -> None:
    with pytest.raises(UnknownImageError, match="neither an image id embedded in this library nor a readable"):
        library.similar("no/such/file.png")
    with pytest.raises(PicsiftError, match="empty search prompt"):
        library.search("  ")
    with pytest.raises(ValueError, match="unknown index backend 'annoy'"):
        picsift.Library(library.root, index="annoy")
    with pytest.raises(PicsiftError, match="does not exist"):
        picsift.Library(library.root / "missing")


def test_the_workspace_can_live_outside_a_read_only_image_folder(image_folder: Path, tiny_model: str,
                                                                 tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    os.chmod(image_folder, 0o555)
    try:
        with picsift.Library(image_folder, model=tiny_model, workspace=workspace) as lib:
            assert lib.update(progress=False).embedded == 24
            assert len(lib.search("a dog", limit=3)) == 3
        assert (workspace / "catalog.sqlite").exists() and not (image_folder / ".picsift").exists()
    finally:
        os.chmod(image_folder, 0o755)


def test_collections_can_be_written_grown_and_shrunk_by_hand(library: picsift.Library) -> None:
    ids = library.search("x", limit=None).ids.tolist()
    library.collections.write("picked", ids[:3], [0.9, 0.8, 0.7], {"note": "by hand"})
    assert library.collection("picked").ids.tolist() == ids[:3]
    assert library.collections.recipe("picked")["note"] == "by hand"
    assert library.collections.add("picked", [ids[1], ids[5], ids[5]]) == 4  # no duplicates
    grown = library.collection("picked").df
    assert grown["id"].tolist() == [*ids[:3], ids[5]]
    assert grown["score"].iloc[0] == pytest.approx(0.9) and np.isnan(grown["score"].iloc[3])
    assert library.collections.remove("picked", [ids[0]]) == 3
    assert library.collection("picked").ids.tolist() == [ids[1], ids[2], ids[5]]
    assert library.collections.add("fresh", ids[:2]) == 2
    paths = library.paths([ids[0], "0" * 32])
    assert list(paths) == [ids[0]] and paths[ids[0]].is_file()
    with pytest.raises(PicsiftError, match="invalid collection name"):
        library.collections.write("_x", ids[:1])


def test_results_carry_the_ids_of_every_score(library: picsift.Library) -> None:
    results = library.search("a tree", limit=3)
    assert len(results.scope_ids) == len(results.scores) == 24
    score_of = dict(zip(results.scope_ids.tolist(), results.scores.tolist(), strict=True))
    for image_id, score in zip(results.ids, results.df["score"], strict=True):
        assert score_of[image_id] == pytest.approx(score)


def test_a_background_update_and_searches_from_another_thread_share_a_workspace(
    image_folder: Path, tiny_model: str, stamps_root: Path
) -> None:
    import threading

    with picsift.Library(image_folder, model=tiny_model) as lib:
        lib.update(progress=False)
        for path in sorted((stamps_root / "space").rglob("*.png"))[:40]:
            shutil.copy(path, image_folder / f"space-{path.name}")
        errors: list[BaseException] = []

        def update() -> None:
            try:
                lib.update(progress=False)
            except BaseException as e:
                errors.append(e)

        worker = threading.Thread(target=update)
        worker.start()
        searches = 0
        while worker.is_alive() or searches < 3:
            assert len(lib.search("a planet", limit=5)) == 5  # each thread has its own connection
            searches += 1
        worker.join()
        distinct = {content_id(p.read_bytes()) for p in image_folder.rglob("*.png")}
        assert not errors and lib.status()["embedded"] == lib.status()["images"] == len(distinct) > 24


def test_new_weights_under_the_same_model_name_ask_to_reembed(image_folder: Path, tmp_path: Path) -> None:
    """Like a new picsift-offline: the spec text stays, the weights change. The message says so, and the
    one way forward (re-embedding) works."""
    import open_clip
    import torch

    from .conftest import TINY_CONFIG

    open_clip.add_model_config(TINY_CONFIG)
    checkpoint = tmp_path / "model.pt"
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save({"state_dict": open_clip.create_model(TINY_CONFIG.stem, pretrained=None).state_dict()}, checkpoint)
        spec = f"{TINY_CONFIG}:{checkpoint}"
        with picsift.Library(image_folder, model=spec) as lib:
            if seed == 1:
                assert lib.update(progress=False).embedded == 24
                continue
            with pytest.raises(ModelMismatchError, match=r"an earlier version of .*tiny.*embeds 24 images again"
                                                         r".*--reembed"):
                lib.update(progress=False)
            assert lib.update(progress=False, reembed=True).embedded == 24
