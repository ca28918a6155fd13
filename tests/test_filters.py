"""AND filters over labelled data, each checked against expectations worked out by hand from the fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picsift import ImageSet, Library, PicsiftError
from picsift.query.collections import TEMPORARY
from picsift.query.filters import HasOpenIssues, ImageTag, JobStatus, ObjectAuthor, ObjectCount, ObjectTag, Score

from .conftest import stamp_files
from .test_formats import make_coco, make_supervisely


def passing(lib: Library) -> Callable[..., list[str]]:
    """The ids of the images within a scope (default: the whole library) that pass the filters."""
    return lambda *filters, within=None: lib.filter(*filters, within=within).ids.tolist()


@pytest.fixture
def labelled(tmp_path: Path, stamps_root: Path) -> tuple[Library, dict[str, str]]:
    """Zoo (animals a0-a2, vehicles v0-v1) and kitchen (food f0-f2) imported; ids by short name.

    a0: colour=brown, outdoor; 1 animal (ann, legs=4)
    a1: colour=white, outdoor; 2 animals (ann legs=4; bob legs=2, occluded)
    a2: colour=grey, outdoor; 3 animals (ann legs=4; bob legs=2; bob legs=4)
    v0: colour=red; 1 wheel (cy)          v1: 1 wheel (cy)
    f0: fruit + plate    f1: fruit    f2: fruit
    """
    (tmp_path / "lib").mkdir()
    lib = Library(tmp_path / "lib")
    meta = lib.labels
    meta.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    meta.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    ids = {}
    for short, folder, category, count in (("a", "zoo/animals", "animals", 3), ("v", "zoo/vehicles", "vehicles", 2),
                                           ("f", "kitchen/train", "food", 2)):
        for n, source in enumerate(stamp_files(stamps_root, (category,), count)):
            ids[f"{short}{n}"] = meta.image_id(f"{folder}/{source.name}")
    ids["f2"] = meta.image_id(f"kitchen/val/{stamp_files(stamps_root, ('food',), 3)[2].name}")
    assert len(set(ids.values())) == 8
    return lib, ids


def names(found: list[str], ids: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[i] for i in found]


def test_object_filters(labelled: tuple[Library, dict[str, str]]) -> None:
    lib, ids = labelled
    run = passing(lib)
    assert sorted(names(run(ObjectCount("animal")), ids)) == ["a0", "a1", "a2"]
    assert sorted(names(run(ObjectCount("animal", 2, 3)), ids)) == ["a1", "a2"]
    assert sorted(names(run(ObjectCount("animal", 3, 3)), ids)) == ["a2"]
    assert sorted(names(run(ObjectCount("animal", 0, 1)), ids)) == ["a0", "f0", "f1", "f2", "v0", "v1"]
    assert sorted(names(run(ObjectTag("occluded")), ids)) == ["a1"]
    assert sorted(names(run(ObjectTag("legs", 2)), ids)) == ["a1", "a2"]
    assert sorted(names(run(ObjectTag("legs", 2, negate=True)), ids)) == ["a0", "f0", "f1", "f2", "v0", "v1"]
    assert sorted(names(run(ObjectTag("legs", 4, cls="wheel")), ids)) == []
    assert sorted(names(run(ObjectAuthor("bob")), ids)) == ["a1", "a2"]
    assert sorted(names(run(ObjectAuthor("cy")), ids)) == ["v0", "v1"]
    assert sorted(names(run(ObjectCount("plate")), ids)) == ["f0"]


def test_tag_job_and_issue_filters(labelled: tuple[Library, dict[str, str]]) -> None:
    lib, ids = labelled
    meta, run = lib.labels, passing(lib)
    assert sorted(names(run(ImageTag("outdoor")), ids)) == ["a0", "a1", "a2"]
    assert sorted(names(run(ImageTag("colour", "white")), ids)) == ["a1"]
    assert sorted(names(run(ImageTag("colour", "white", negate=True)), ids)) == [
        "a0", "a2", "f0", "f1", "f2", "v0", "v1"]
    assert sorted(names(run(ImageTag("colour", negate=True)), ids)) == ["f0", "f1", "f2", "v1"]

    meta.set_status("review", [ids["a0"], ids["a1"]], "accepted")
    meta.set_status("review", ids["v0"], "rejected")
    meta.set_status("review", ids["a1"], "in_progress")  # the latest status wins
    assert sorted(names(run(JobStatus("review", "accepted")), ids)) == ["a0"]
    assert sorted(names(run(JobStatus("review", ["in_progress", "rejected"])), ids)) == ["a1", "v0"]
    assert sorted(names(run(JobStatus("review")), ids)) == ["a0", "a1", "v0"]

    meta.open_issue(ids["f1"], "blurry")
    closed = meta.open_issue(ids["f2"], "wrong box", author="ann")
    meta.close_issue(closed)
    assert names(run(HasOpenIssues()), ids) == ["f1"]
    assert sorted(names(run(HasOpenIssues(False)), ids)) == ["a0", "a1", "a2", "f0", "f2", "v0", "v1"]


def test_filters_combine_with_and(labelled: tuple[Library, dict[str, str]]) -> None:
    lib, ids = labelled
    run = passing(lib)
    assert names(run(ObjectAuthor("bob"), ImageTag("colour", "grey")), ids) == ["a2"]
    assert names(run(ImageTag("outdoor"), ObjectCount("animal", 0, 1), ObjectTag("legs", 4)), ids) == ["a0"]
    assert run(ImageTag("outdoor"), ObjectCount("wheel")) == []
    assert sorted(run()) == sorted(ids.values())  # no filter: the whole library


def test_filters_within_collections_and_results(labelled: tuple[Library, dict[str, str]]) -> None:
    lib, ids = labelled
    run = passing(lib)
    ranked = [ids["a2"], ids["a1"], ids["a0"], ids["v0"]]
    lib.collections.write("ranked", ranked, [0.9, 0.5, 0.3, 0.1])
    assert names(run(Score(min=0.4), within="ranked"), ids) == ["a2", "a1"]  # in rank order
    assert names(run(Score(max=0.3), ImageTag("outdoor"), within="ranked"), ids) == ["a0"]
    assert names(run(Score(0.2, 0.6), within="ranked"), ids) == ["a1", "a0"]
    assert names(run(ObjectCount("wheel"), within="ranked"), ids) == ["v0"]

    lib.remember(ImageSet(np.array([ids["f0"], ids["a1"]]), [0.7, 0.2]))  # what a search leaves behind
    assert names(run(Score(min=0.5), within=TEMPORARY), ids) == ["f0"]

    # A search's ImageSet: scores of every image in scope, so a threshold sees beyond the top rows.
    scope = np.array(list(ids.values()))
    scores = np.linspace(0.1, 0.8, len(scope)).astype(np.float32)  # a0 0.1, a1 0.2, ..., f2 0.8
    top = pd.DataFrame({"rank": [1], "id": [scope[-1]], "path": [None], "score": [scores[-1]]})
    results = ImageSet(top["id"], top["score"], scores, scope)
    assert names(run(Score(min=0.55), within=results), ids) == ["f2", "f1", "f0"]  # best first
    assert names(run(Score(min=0.25, max=0.45), ObjectAuthor("bob"), within=results), ids) == ["a2"]
    assert names(run(Score(max=0.25), ImageTag("outdoor"), within=results), ids) == ["a1", "a0"]

    assert names(run(ImageTag("outdoor"), within=[ids["f0"], ids["a2"], ids["a0"]]), ids) == ["a2", "a0"]
    assert run(Score(min=0), within=[ids["a0"]]) == []  # plain ids carry no score


def test_a_search_in_memory_and_the_same_collection_in_sqlite_filter_alike(
        labelled: tuple[Library, dict[str, str]]) -> None:
    # Results are filtered with masks in memory, collections by SQL: every filter must agree on both
    lib, ids = labelled
    scope = np.array(list(ids.values()))
    scores = np.random.default_rng(3).random(len(scope)).astype(np.float32)
    results = ImageSet(np.zeros(0, str), np.zeros(0, np.float32), scores, scope)
    order = np.argsort(-scores, kind="stable")
    lib.collections.write("same", scope[order].tolist(), scores[order].tolist())
    lib.labels.create_job("review", [ids["a0"], ids["f1"]])
    lib.labels.set_status("review", ids["f1"], "accepted")
    lib.labels.open_issue(ids["v1"], "blurry")
    cases = [
        [ObjectCount("animal", 2)], [ObjectCount("animal", 0, 1)], [ObjectCount("animal", 0)],
        [ObjectTag("legs", 2, negate=True)], [ObjectTag("legs", 4, cls="animal")], [ImageTag("outdoor", negate=True)],
        [ImageTag("colour", "red")], [JobStatus("review")], [JobStatus("review", "accepted")],
        [HasOpenIssues()], [HasOpenIssues(False), Score(min=0.3)], [Score(0.2, 0.7), ObjectAuthor("ann")], [],
    ]
    for filters in cases:
        in_memory, in_sql = passing(lib)(*filters, within=results), passing(lib)(*filters, within="same")
        assert in_memory == in_sql, filters
    assert passing(lib)(ObjectCount("animal"), within=results) != []  # the cases are not all empty


def test_bad_filters_name_the_value_and_the_choices(labelled: tuple[Library, dict[str, str]]) -> None:
    lib, ids = labelled
    with pytest.raises(PicsiftError, match=r"'done'.*pending, in_progress"):
        lib.filter(JobStatus("review", "done"), within=None)
    with pytest.raises(PicsiftError, match=r"'done'.*accepted"):
        lib.labels.set_status("review", [ids["a0"]], "done")
    with pytest.raises(PicsiftError, match="no collection named 'nope'"):
        lib.filter(ImageTag("x"), within="nope")
    with pytest.raises(PicsiftError, match="min, max or both"):
        lib.filter(Score(), within=None)
    with pytest.raises(PicsiftError, match="min=3, max=1"):
        lib.filter(ObjectCount("animal", 3, 1), within=None)
    with pytest.raises(PicsiftError, match="'animal' is not a filter"):
        lib.filter("animal", within=None)  # type: ignore[arg-type]


def test_metadata_edits_persist(labelled: tuple[Library, dict[str, str]], tmp_path: Path) -> None:
    lib, ids = labelled
    meta = lib.labels
    items = meta.dataset_items("zoo/animals")
    path = items[items["id"] == ids["a0"]]["path"].item()
    meta.add_tag(path, "reviewed", "yes")
    meta.add_tag(lib.root / path, "score", 3)
    assert meta.remove_tag(path, "colour") == 1
    object_id = meta.add_object(ids["a0"], "cat", polygon=[(0, 0), (5, 0), (5, 5)], author="dee")
    meta.tag_object(object_id, "cute")
    with pytest.raises(PicsiftError, match="exactly one of bbox or polygon"):
        meta.add_object(ids["a0"], "cat")
    with pytest.raises(PicsiftError, match="no issue with id 99"):
        meta.close_issue(99)

    reopened = Library(lib.root)
    assert sorted(reopened.labels.tags(ids["a0"])) == [("outdoor", None), ("reviewed", "yes"), ("score", 3)]
    assert passing(reopened)(ObjectTag("cute", cls="cat"), ObjectAuthor("dee")) == [ids["a0"]]
    meta.remove_object(object_id)
    assert passing(reopened)(ObjectTag("cute")) == []


def test_filters_refuse_empty_names_and_fractional_counts() -> None:
    from picsift.query.filters import from_dict

    for bad, message in ((lambda: ImageTag(""), "name must be a non-empty string"),
                         (lambda: ObjectCount("  "), "cls must be a non-empty string"),
                         (lambda: JobStatus(""), "job must be a non-empty string"),
                         (lambda: ObjectAuthor(""), "author must be a non-empty string"),
                         (lambda: ObjectCount("car", 1.5), "min must be a whole number"),
                         (lambda: from_dict({"type": "ObjectCount", "cls": "car", "max": "3"}), "max must be a whole")):
        with pytest.raises(PicsiftError, match=message):
            bad()
    at_most_two = ObjectCount("car", 0, 2).selection()  # no lower bound: every image but those with 3 or more
    assert at_most_two is not None and at_most_two.negated and at_most_two.params == ("car", 2)
