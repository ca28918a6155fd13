"""ImageSet (immutable, recipes that round-trip and replay), Scope (every kind of within=) and pure queries."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import picsift
from picsift import ImageSet, ImageTag, ObjectCount, Score
from picsift.errors import PicsiftError
from picsift.query.collections import TEMPORARY
from picsift.query.scope import Scope
from picsift.query.steps import (
    ByHand,
    Combined,
    Filtered,
    FromCollection,
    Head,
    ImageSearch,
    NearDuplicates,
    Outliers,
    Recipe,
    Sample,
    SearchOptions,
    TextSearch,
    WholeLibrary,
)


@pytest.fixture
def lib(image_folder: Path, tiny_model: str) -> picsift.Library:
    library = picsift.Library(image_folder, model=tiny_model, index="exact")
    library.update(progress=False)
    yield library
    library.close()


def test_an_image_set_is_immutable() -> None:
    images = ImageSet(np.array(["a", "b"]), [0.9, 0.5], [0.9, 0.5, 0.1], np.array(["a", "b", "c"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        images.ids = np.array(["c"])  # type: ignore[misc]
    for array in (images.ids, images.result_scores, images.scores, images.scope_ids):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = array[1]
    assert list(images) == ["a", "b"] and len(images) == 2 and "a" in images and "c" not in images
    assert images.head(1).ids.tolist() == ["a"] and images.ids.tolist() == ["a", "b"]  # a new set, this one stays
    with pytest.raises(PicsiftError, match="3 result scores for 2 ids"):
        ImageSet(np.array(["a", "b"]), [0.1, 0.2, 0.3])


STEPS = [
    TextSearch(text=("a dog", "a cat"), options=SearchOptions(limit=5, min_score=0.1, negative_text=("x",)),
               within="pets", model="m", filters=(ObjectCount("dog", 2), ImageTag("outdoor")),
               score_range=(0.2, 0.8)),
    ImageSearch(images=("abc", "photos/x.jpg"), options=SearchOptions(limit=None, combine="max")),
    Sample("kcenter", 4, 12, 3, None, "seen", True, False),
    Outliers(7, 3, "pets"),
    NearDuplicates(0.97, None),
    ByHand(),
    Filtered(FromCollection("pets"), (Score(min=0.3),)),
    Filtered(WholeLibrary(), (ImageTag("outdoor", negate=True),)),
    Filtered(Sample(size=3), (ImageTag("x"),)),
    Combined("not", FromCollection("a"), FromCollection("b")),
    Combined("and", Sample(size=2), Outliers(3, 2)),
    Head(Filtered(Sample(size=9), (ImageTag("x"),)), 4),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: type(s).__name__)
def test_a_recipe_round_trips_through_json(step: object) -> None:
    recipe = Recipe(step, {"time": 12.5, "summary": "something", "from_a_later_version": [1, 2]})  # type: ignore[arg-type]
    data = json.loads(json.dumps(recipe.to_dict()))
    again = Recipe.from_dict(data)
    assert again == recipe and again.to_dict() == data


def test_recipes_saved_by_earlier_versions_load_unchanged() -> None:
    old = {"kind": "text", "text": ["a red car"], "model": "m", "limit": 100, "min_score": None, "max_score": None,
           "combine": "mean", "negative_text": None, "negative_images": [], "negative_weight": 0.5, "time": 1.0,
           "complete": True, "searched_images": 24, "total_images": 24, "within": None, "summary": ["a red car"],
           "filters": [{"type": "ObjectCount", "cls": "car", "min": 2, "max": None}], "score_range": [0.1, 0.3]}
    recipe = Recipe.from_dict(old)
    assert isinstance(recipe.step, TextSearch) and recipe.step.filters == (ObjectCount("car", 2),)
    assert recipe.to_dict() == old
    for data, kind in [({"kind": "combine", "how": "or", "of": ["a", "b"], "summary": "a OR b"}, Combined),
                       ({"kind": "filter", "within": "a", "filters": [], "summary": "a filtered"}, Filtered),
                       ({"kind": "filter", "within": "ids", "filters": []}, Filtered),
                       ({"kind": "ids", "summary": "picked", "time": 3.0}, ByHand),
                       ({"kind": "something-new", "summary": "?"}, ByHand)]:
        loaded = Recipe.from_dict(data)
        assert isinstance(loaded.step, kind) and loaded.to_dict() == data


def test_search_is_pure_until_remembered(lib: picsift.Library) -> None:
    first = lib.search("a dog", limit=3)  # the facade remembers it
    assert lib.collection().ids.tolist() == first.ids.tolist() and lib.last is first
    pure = lib.queries.search("a car", SearchOptions(limit=4), None)  # below the facade: nothing is written
    assert lib.collection().ids.tolist() == first.ids.tolist() and lib.last is first
    assert lib.collections.recipe()["text"] == ["a dog"]
    assert lib.remember(pure) is pure
    assert lib.collection().ids.tolist() == pure.ids.tolist() and lib.collections.recipe()["text"] == ["a car"]
    assert lib.last is pure


def test_replaying_a_saved_collection_equals_a_fresh_run(lib: picsift.Library) -> None:
    ids = lib.images()["id"].tolist()
    lib.labels.add_tag(ids[0], "outdoor")
    lib.labels.add_tag(ids[5], "outdoor")
    found = lib.search("a vehicle", limit=None).filter(ImageTag("outdoor", negate=True)).head(10)
    found.save("vehicles")
    sampled = lib.sample(5, method="kcenter", seed=1).save("sampled")
    odd = lib.outliers(4, 3, progress=False).save("odd")
    both = lib.collections.combine("both", "vehicles", "odd", how="and")

    fresh_search = lib.search("a vehicle", limit=None).filter(ImageTag("outdoor", negate=True)).head(10)
    assert lib.collections.rerun("vehicles").ids.tolist() == fresh_search.ids.tolist() == found.ids.tolist()
    np.testing.assert_allclose(lib.collection("vehicles").result_scores, fresh_search.result_scores, atol=1e-6)
    assert lib.collections.rerun("sampled").ids.tolist() == sampled.ids.tolist()
    assert lib.collections.rerun("odd").ids.tolist() == odd.ids.tolist()
    assert lib.collections.rerun("both").ids.tolist() == both.ids.tolist()
    assert lib.collections.recipe("vehicles")["rerun"] is True


def test_an_old_format_recipe_still_reruns(lib: picsift.Library) -> None:
    results = lib.search("a red car", limit=6)
    old = {"kind": "text", "text": ["a red car"], "model": lib.spec.text, "limit": 6, "min_score": None,
           "max_score": None, "combine": "mean", "negative_text": None, "negative_images": [], "negative_weight": 0.5,
           "time": 1.0, "complete": True, "searched_images": 24, "total_images": 24, "within": None,
           "summary": ["a red car"]}
    lib.catalog.write_collection("old", ["0" * 32], None, old)  # as an earlier picsift saved it
    assert lib.collections.rerun("old").ids.tolist() == results.ids.tolist()
    ids = results.ids.tolist()
    lib.catalog.write_collection("a", ids[:4], None, {"kind": "ids"})
    lib.catalog.write_collection("b", ids[2:], None, {"kind": "ids"})
    lib.catalog.write_collection("a_or_b", [], None, {"kind": "combine", "how": "or", "of": ["a", "b"]})
    assert lib.collections.rerun("a_or_b").ids.tolist() == ids


def test_scope_resolves_every_kind_of_within(lib: picsift.Library) -> None:
    ids = lib.images()["id"].tolist()
    lib.collections.write("some", ids[:3], [0.9, 0.8, None])
    items = lib.collections.items
    assert Scope.resolve(None, items).ids is None and Scope.resolve(None, items).label is None
    named = Scope.resolve("some", items)
    assert named.ids.tolist() == ids[:3] and named.collection == "some" and named.label == "some"
    assert named.score_of(ids[:3])[:2] == pytest.approx([0.9, 0.8]) and named.score_of(ids[:3])[2] is None
    searched = lib.search("a dog", limit=2)
    members, scored = Scope.resolve(searched, items), Scope.resolve(searched, items, scored=True)
    assert members.ids.tolist() == searched.ids.tolist() and len(scored.ids) == 24 and scored.ranked
    frame = pd.DataFrame({"id": ids[:2], "score": [0.5, 0.25]})
    assert Scope.resolve(frame, items).score_of(ids[:2]) == [0.5, 0.25]
    for given in (ids[:2], tuple(ids[:2]), np.array(ids[:2]), pd.Series(ids[:2]), [ids[0], ids[1], ids[0]]):
        scope = Scope.resolve(given, items)
        assert scope.ids.tolist() == ids[:2] and scope.scores is None and scope.label == "ids"
    snapshot = lib.store.snapshot()
    assert sorted(snapshot.ids[Scope.resolve(ids[:2], items).positions(snapshot)].tolist()) == sorted(ids[:2])
    assert lib.sample(2, within=searched).ids.tolist() != [] and set(lib.sample(2, within=frame).ids) <= set(ids[:2])


@pytest.mark.parametrize("bad", [Path("/tmp/x"), 42, b"abc", {"id": "x"}, [1, 2], pd.DataFrame({"x": [1]})],
                         ids=lambda v: type(v).__name__)
def test_a_bad_scope_names_the_value_and_the_accepted_kinds(lib: picsift.Library, bad: object) -> None:
    with pytest.raises(PicsiftError, match=r"within.*a collection name, an ImageSet, a DataFrame with an 'id'"):
        lib.search("a dog", within=bad)
    with pytest.raises(PicsiftError, match="no collection named 'nope'; collections"):
        lib.filter(Score(min=0), within="nope")


def test_old_names_still_work_and_say_the_new_ones(lib: picsift.Library) -> None:
    lib.search("a dog", limit=3)
    with pytest.warns(DeprecationWarning, match="Library.save_collection is now Library.collections.save"):
        lib.save_collection("dogs")
    with pytest.warns(DeprecationWarning, match="Library.collections.table"):
        assert lib.collections()["name"].tolist() == ["dogs"]
    with pytest.warns(DeprecationWarning, match="Library.metadata is now Library.labels"):
        assert lib.metadata is not None
    with pytest.warns(DeprecationWarning, match="ImageSet"):
        assert picsift.Results is ImageSet
    with pytest.warns(DeprecationWarning, match=r"\.df\["):
        assert lib.collection("dogs")["id"].tolist() == lib.collection("dogs").ids.tolist()
    assert TEMPORARY not in lib.collections.names()
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        lib.nonsense  # noqa: B018
