"""Object label checks (issue 22, item 4) on real files: scenes of pasted stamps imported as a COCO project, with
planted class flips, a duplicate box and an empty box; the objects' neighbour graph follows updates; the health
report, the CLI and the Health tab show the findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picsift import Library
from picsift.analysis.graph import build
from picsift.analysis.health.objects import iou
from picsift.core.objects import bounding_box, object_id

from .scenes import CLASSES, Scenes, make_scenes
from .test_cli import picsift
from .test_graph import assert_same_graph

pytestmark = pytest.mark.offline_model
FLIPS = 6


def keys_of(lib: Library, scenes: Scenes) -> dict[str, int]:
    """Object id -> the annotation id it came from."""
    by_name = {Path(p).name: i for p, i in zip(lib.images()["path"], lib.images()["id"], strict=True)}
    return {object_id(by_name[scenes.files[k]], tuple(box)): k for k, box in scenes.boxes.items()}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scenes(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Scenes:
    return make_scenes(tmp_path_factory.mktemp("scenes"), stamps_root, scenes=24, flips=FLIPS)


@pytest.fixture(scope="module")
def library(scenes: Scenes, tmp_path_factory: pytest.TempPathFactory) -> Library:
    folder = tmp_path_factory.mktemp("objects-lib")
    with Library(folder, model="picsift-offline", index="exact") as lib:
        lib.labels.import_project(scenes.project, "coco")
        lib.update(progress=False)
        yield lib


def test_planted_object_flips_rank_near_the_top_with_object_rows(library: Library, scenes: Scenes) -> None:
    found = library.label_mistakes("objects", limit=None)
    df = found.df
    store_ids = set(library._engine.object_store().snapshot().ids.tolist())  # type: ignore[union-attr]
    assert len(df) == len(scenes.boxes) == len(store_ids) and set(df["id"]) == store_ids  # one row per object
    assert {"id", "image_id", "path", "class", "box", "given", "suggested", "score", "reason", "label_id"} <= set(df)
    assert df["score"].is_monotonic_decreasing and df["score"].between(0, 1).all()
    key = df["id"].map(keys_of(library, scenes))
    top = set(key[: 2 * FLIPS])
    assert len(top & set(scenes.flipped)) >= FLIPS - 1, df.head(2 * FLIPS)  # 5 of 6 flips in the first 12 of 74
    planted = df[key.isin(scenes.flipped)]
    assert (planted["given"] == [scenes.given[k] for k in key[planted.index]]).all()
    assert (planted["suggested"] == [scenes.truth[k] for k in key[planted.index]]).mean() >= 0.5
    images = library.images().set_index("id")
    for row in df.itertuples():  # each row's box lies inside its own image, whose path it carries
        x, y, w, h = row.box
        assert row.path == images.loc[row.image_id, "path"]
        assert min(x, y) >= 0 and x + w <= images.loc[row.image_id, "width"] and w > 0 and h > 0
    first = df.iloc[0]
    assert "nearest labelled neighbours" in first["reason"] and first["given"] == first["class"]
    assert f"among {len(df)} labelled objects" in found.recipe.info["summary"]
    assert library.collections.recipe()["field"] == "objects"  # remembered, and it replays
    assert library.collection().recipe.step.replay(library.queries).ids.tolist() == found.ids.tolist()
    within = library.label_mistakes("objects", limit=None, within=[df["image_id"].iloc[0]]).df
    assert set(within["image_id"]) == {df["image_id"].iloc[0]} and len(within) >= 1
    named = df["id"].tolist()[:2]  # object ids name objects
    assert library.label_mistakes("objects", limit=None, within=named).ids.tolist() == named
    by_image = library.label_mistakes("objects:image", limit=None).df  # the image-level field stays
    assert set(by_image["id"]) <= set(images.index) and set(by_image["given"]) <= set(CLASSES)


def test_health_finds_the_duplicate_box_and_the_empty_box(library: Library, scenes: Scenes) -> None:
    report = library.health()
    assert {"object_mistakes", "duplicate_boxes", "empty_boxes"} <= set(report.findings)
    keys = keys_of(library, scenes)
    duplicates = report.findings["duplicate_boxes"]
    assert duplicates.count == 1 and [keys[i] for i in duplicates.images.ids] == [scenes.duplicate]
    row = duplicates.images.df.iloc[0]
    assert keys[row["duplicate_of"]] != scenes.duplicate and row["iou"] > 0.7 and row["path"]
    empty = report.findings["empty_boxes"].images
    ranked = [keys[i] for i in empty.ids]
    assert scenes.empty in ranked  # found, and only planted flips (boxes not holding their class) come before it
    assert set(ranked[: ranked.index(scenes.empty)]) <= set(scenes.flipped), ranked
    assert len(empty) <= len(scenes.boxes) // 5  # few real boxes flagged
    mistakes = report.findings["object_mistakes"].images
    assert len(set(keys[i] for i in mistakes.ids) & set(scenes.flipped)) >= FLIPS // 2
    assert report.summary["objects"] == len(scenes.boxes)
    assert report.to_dict()["findings"]["duplicate_boxes"]["ids"] == duplicates.images.ids.tolist()
    out = json.loads(picsift("health", str(library.root), "--model", "picsift-offline", "--index", "exact",
                             "--json").stdout)
    assert out["findings"]["duplicate_boxes"]["count"] == 1 and out["findings"]["empty_boxes"]["count"] >= 1
    listed = json.loads(picsift("mistakes", str(library.root), "--model", "picsift-offline", "--index", "exact",
                                "--field", "objects", "--limit", "5", "--json").stdout)["results"]
    assert len(listed) == 5 and {"image_id", "box", "class", "given", "suggested"} <= set(listed[0])


def test_iou_of_boxes() -> None:
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0 and iou([0, 0, 0, 10], [0, 0, 0, 10]) == 0.0


def test_the_health_tab_lists_object_findings_and_accepting_sets_the_class(library: Library,
                                                                             scenes: Scenes) -> None:
    pytest.importorskip("anywidget")
    from picsift.widgets import App

    app = App(library, update=False, explorer=False)
    health = app.health
    health._dispatch(health, {"type": "run_health", "field": "", "split": ""}, [])
    assert not health.error, health.error
    counts = {f["name"]: f["count"] for f in health.findings}
    assert counts["duplicate_boxes"] == 1 and counts["empty_boxes"] >= 1 and counts["object_mistakes"] >= 1
    titles = {f["name"]: f["title"] for f in health.findings}
    assert titles["duplicate_boxes"] == "Duplicate boxes"
    health._dispatch(health, {"type": "show_finding", "name": "duplicate_boxes"}, [])
    duplicate = health.health_report.findings["duplicate_boxes"].images
    assert app.gallery.ids.tolist() == duplicate.columns["image_id"].tolist()  # the image holding the box
    caption, tip = app.gallery.notes[app.gallery.ids[0]]
    assert caption.startswith("duplicate ") and "IoU" in tip and str(list(duplicate.columns["box"][0])) in tip
    health.show_finding("object_mistakes")
    objects = health.health_report.findings["object_mistakes"].images
    assert set(app.gallery.ids.tolist()) == set(objects.columns["image_id"].tolist())
    first = objects.df.iloc[0]
    assert f"{first['given']} → {first['suggested']}" in app.gallery.notes[first["image_id"]][0]
    on_image = objects.df[objects.df["image_id"] == first["image_id"]]
    app.gallery.selection = [first["image_id"]]
    assert health.accept() == len(on_image)
    labels = library.labels.objects().set_index("id")
    for row in on_image.itertuples():  # each object now has the suggested class; its box is unchanged
        assert labels.loc[row.label_id, "class"] == row.suggested
        assert list(bounding_box(labels.loc[row.label_id, "points"])) == row.box
    assert app.gallery.notes[first["image_id"]][0].startswith("✓ ")


def test_the_object_graph_follows_added_removed_and_moved_objects(library: Library) -> None:
    lib = library
    graph = lib.object_neighbours.graph()
    store = lib._engine.object_store()
    assert store is not None and graph.ids.tolist() == store.snapshot().ids.tolist()
    assert lib.object_neighbours.path.parent == store.folder  # beside the object store, per model
    objects = lib.labels.objects()
    gone, moved = objects.iloc[0], objects.iloc[1]
    gone_id = object_id(gone["image_id"], bounding_box(gone["points"]))
    lib.labels.remove_object(int(gone["id"]))
    lib.labels.remove_object(int(moved["id"]))
    x, y, w, h = bounding_box(moved["points"])
    lib.labels.add_object(moved["image_id"], moved["class"], bbox=(x + 4, y + 4, x + w, y + h))
    lib.labels.add_object(moved["image_id"], "plants", bbox=(150, 150, 220, 220))  # a new object
    lib.update(progress=False)
    snapshot = lib._engine.object_store().snapshot()  # type: ignore[union-attr]
    after = lib.object_neighbours.graph()
    assert after.ids.tolist() == snapshot.ids.tolist() and gone_id not in set(after.ids.tolist())
    assert object_id(moved["image_id"], (x + 4, y + 4, w - 4, h - 4)) in set(after.ids.tolist())
    exact = build(snapshot.ids, snapshot.vectors(), after.k)
    assert_same_graph(after, exact)  # as if built from scratch (float16 ties in either order)
    saved = lib.object_neighbours._load()
    assert saved is not None and saved.ids.tolist() == after.ids.tolist()  # the saved graph is the new one
