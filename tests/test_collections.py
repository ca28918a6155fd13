"""Collections: OR / AND / NOT between them, AND filters saved with a recipe, and re-running recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

import picsift
from picsift import ImageTag, ObjectCount
from picsift.errors import PicsiftError


@pytest.fixture
def lib(image_folder: Path, tiny_model: str) -> picsift.Library:
    library = picsift.Library(image_folder, model=tiny_model, index="exact")
    library.update(progress=False)
    return library


def test_or_and_not_between_collections(lib: picsift.Library) -> None:
    ids = lib.images()["id"].tolist()
    lib.collections.write("a", ids[:6], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    lib.collections.write("b", ids[4:10])
    assert lib.collections.combine("a_or_b", "a", "b", how="or").df["id"].tolist() == ids[:10]
    assert lib.collections.combine("a_and_b", "a", "b", how="and").df["id"].tolist() == ids[4:6]
    assert lib.collections.combine("a_not_b", "a", "b", how="not").df["id"].tolist() == ids[:4]
    assert lib.collection("a_not_b").df["score"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert lib.collections.recipe("a_or_b")["summary"] == "a OR b"
    with pytest.raises(PicsiftError, match="valid choices: or, and, not"):
        lib.collections.combine("x", "a", "b", how="xor")


def test_filter_within_the_last_search_and_rerun_after_labels_change(lib: picsift.Library) -> None:
    results = lib.search("a vehicle", limit=None)
    ranked = results.df["id"].tolist()
    for image_id in ranked[:5]:
        lib.labels.add_object(image_id, "car", bbox=(0, 0, 5, 5))
    lib.labels.add_object(ranked[1], "car", bbox=(1, 1, 5, 5))
    lib.labels.add_tag(ranked[3], "blurry")

    view = lib.filter(ObjectCount("car", 1, 1), ImageTag("blurry", negate=True), save_as="single_cars").df

    assert view["id"].tolist() == [ranked[0], ranked[2], ranked[4]]  # search order, scores kept
    assert view["score"].tolist() == pytest.approx(results.df["score"][[0, 2, 4]].tolist())
    recipe = lib.collections.recipe("single_cars")
    assert recipe["kind"] == "text" and recipe["text"] == ["a vehicle"]  # the search, then the filters
    assert [f["type"] for f in recipe["filters"]] == ["ObjectCount", "ImageTag"]

    lib.labels.add_tag(ranked[0], "blurry")  # the labels change; re-running the recipe follows them
    lib.search("something else entirely")  # ... even after the temporary collection moved on
    assert lib.collections.rerun("single_cars").df["id"].tolist() == [ranked[2], ranked[4]]

    lib.collections.write("top", ranked[:3])  # filters on a hand-made collection re-run from its contents
    lib.filter(ObjectCount("car", 2), within="top", save_as="top_multi")
    assert lib.collection("top_multi").df["id"].tolist() == [ranked[1]]
    lib.labels.add_object(ranked[2], "car", bbox=(2, 2, 5, 5))
    assert lib.collections.rerun("top_multi").df["id"].tolist() == [ranked[1], ranked[2]]


def test_a_saved_search_reruns_with_its_query_range_and_filters(lib: picsift.Library, tiny_model: str) -> None:
    results = lib.search("a red car", limit=100)
    scores = results.df["score"].to_numpy()
    low = float(scores[7])
    lib.collections.write("reds", results.df["id"].tolist()[:8], scores[:8].tolist(),
                         {**results.query, "score_range": [low, float(scores[0])]})
    lib.files.delete([results.df["id"][2]])  # the data changes: one of the matches is deleted

    again = lib.collections.rerun("reds").df

    expected = [i for i in results.df["id"].tolist()[:8] if i != results.df["id"][2]]
    assert again["id"].tolist() == expected  # the same query and range over the data as it is now
    assert lib.collections.recipe("reds")["rerun"] is True
    with picsift.Library(lib.root, model=tiny_model, index="exact") as same:
        assert same.collections.rerun("reds").df["id"].tolist() == expected


def test_collections_made_by_hand_have_nothing_to_rerun_and_rename_works(lib: picsift.Library) -> None:
    lib.collections.write("picked", lib.images()["id"].tolist()[:3])
    with pytest.raises(PicsiftError, match="made by hand"):
        lib.collections.rerun("picked")
    lib.collections.rename("picked", "chosen")
    assert lib.collections.names() == ["chosen"] and len(lib.collection("chosen")) == 3
    lib.collections.write("other", [])
    with pytest.raises(PicsiftError, match="exists already"):
        lib.collections.rename("chosen", "other")
