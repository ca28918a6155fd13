"""Object sets behave like image sets: saved and replayed, filtered, combined, exported (table, COCO, files).

Real files: the COCO project ``kitchen`` (3 food stamps, 4 boxes) plus a few boxes added by hand, embedded with
the tiny real open_clip model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import ImageTag, Library, ObjectClass, ObjectTag, Score
from picsift.labels.export import read_table

from .test_objects import coco_library  # noqa: F401  (the fixture)

COLUMNS = ["id", "image_id", "path", "class", "box", "score"]


@pytest.fixture
def objects_library(coco_library: Library) -> Library:  # noqa: F811
    """``kitchen`` with a third class: a ``cup`` box on two of the images; embedded."""
    lib = coco_library
    images = list(dict.fromkeys(lib.labels.objects()["image_id"]))
    for image_id in images[:2]:
        lib.labels.add_object(image_id, "cup", bbox=(40, 40, 90, 100))
    lib.update(progress=False)
    return lib


def labelled_boxes(lib: Library) -> dict[tuple[str, str], list[list[float]]]:
    """(image id, class) -> the boxes ``[x, y, w, h]`` the user labelled."""
    found: dict[tuple[str, str], list[list[float]]] = {}
    for row in lib.labels.objects().to_dict("records"):
        xs, ys = [p[0] for p in row["points"]], [p[1] for p in row["points"]]
        found.setdefault((row["image_id"], row["class"]), []).append(
            [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
    return found


def test_an_object_set_is_saved_read_back_and_replayed_as_objects(objects_library: Library) -> None:
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=4)
    assert len(found) == 4 and list(found.df.columns[:7]) == ["rank", "id", "path", "score", "image_id", "class",
                                                             "box"]
    found.save("cups")
    back = lib.collection("cups")
    assert back.ids.tolist() == found.ids.tolist()
    pd_back, pd_found = back.df, found.df
    assert pd_back[COLUMNS].drop(columns="score").equals(pd_found[COLUMNS].drop(columns="score"))
    np.testing.assert_allclose(pd_back["score"], pd_found["score"], rtol=1e-6)
    again = lib.collections.rerun("cups")
    assert again.ids.tolist() == found.ids.tolist() and again.df["class"].tolist() == found.df["class"].tolist()
    # the temporary collection (the last result) is an object set too
    assert lib.collection().df["image_id"].tolist() == found.df["image_id"].tolist()


def test_object_sets_filter_by_class_score_tags_and_their_images_filters(objects_library: Library) -> None:
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=None)
    assert len(found) == 6
    cups = found.filter(ObjectClass("cup"))
    assert sorted(cups.df["class"]) == ["cup", "cup"] and cups.df["score"].is_monotonic_decreasing
    assert sorted(found.filter(ObjectClass("cup", negate=True)).df["class"]) == ["fruit"] * 3 + ["plate"]
    median = float(np.median(found.df["score"]))
    assert (found.filter(Score(min=median)).df["score"] >= median).all()
    # an object's own tag picks that object, not the others of its image
    plate = lib.labels.objects().query("`class` == 'plate'").iloc[0]
    lib.labels.tag_object(int(plate["id"]), "broken")
    tagged = found.filter(ObjectTag("broken"))
    assert tagged.df["class"].tolist() == ["plate"]
    # an image's filter keeps every object of the images it picks
    lib.labels.add_tag(plate["image_id"], "party")
    party = found.filter(ImageTag("party"))
    assert set(party.df["image_id"]) == {plate["image_id"]} and len(party) == 3  # fruit, plate and cup
    # filters on a saved object set, and recorded: replayed on the collection
    found.filter(ObjectClass("cup")).save("cups only")
    assert lib.collections.rerun("cups only").df["class"].tolist() == ["cup", "cup"]
    assert lib.filter(ImageTag("party"), within="cups only").df["image_id"].tolist() == [plate["image_id"]]


def test_two_object_sets_combine_into_one(objects_library: Library) -> None:
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=None)
    either = found.filter(ObjectClass("cup")).combine(found.filter(ObjectClass("plate")), "or")
    assert sorted(either.df["class"]) == ["cup", "cup", "plate"]


def test_an_object_sets_table_has_its_boxes_inside_their_images(objects_library: Library, tmp_path: Path) -> None:
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=None)
    boxes = labelled_boxes(lib)
    for name, table in (("pandas", lib.to_pandas(found)), ("csv", read_table(lib.export(found, tmp_path / "o.csv",
                                                                                              "csv")))):
        assert list(table.columns[:7]) == ["rank", "id", "image_id", "path", "class", "box", "score"], name
        assert table["id"].tolist() == found.ids.tolist(), name
        for row in table.to_dict("records"):
            assert row["box"] in boxes[(row["image_id"], row["class"])], name
            assert lib.labels.image_id(row["path"]) == row["image_id"], name
            width, height = Image.open(row["path"]).size
            x, y, w, h = row["box"]
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, name


def test_a_coco_export_of_an_object_set_holds_exactly_its_objects(objects_library: Library, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    lib = objects_library
    chosen = lib.search("a cup", objects=True, limit=None).filter(ObjectClass("fruit", negate=True))
    out = lib.export(chosen, tmp_path / "coco", "coco")
    expected = sorted((row["class"], Path(row["path"]).name, tuple(row["box"])) for row in chosen.df.to_dict("records"))
    written = []
    for file in sorted((out / "annotations").glob("*.json")):
        coco = COCO(str(file))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann["image_id"])[0]
            assert (out / "images" / file.stem.removeprefix("instances_") / image["file_name"]).is_file()
            written.append((names[ann["category_id"]], image["file_name"], tuple(ann["bbox"])))
    assert sorted(written) == expected  # those objects, their boxes to the pixel, nothing else
    images = [i for f in (out / "annotations").glob("*.json") for i in json.loads(f.read_text())["images"]]
    assert len(images) == len(set(chosen.df["image_id"])) == 2  # each image once


def test_copying_an_object_sets_images_copies_each_image_once(objects_library: Library) -> None:
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=None)
    copied = lib.files.copy(found, "picked")
    assert len(copied) == 3 and set(copied["id"]) == set(found.df["image_id"])
    assert sorted(p.name for p in (lib.root / "picked").iterdir()) == sorted(Path(p).name for p in copied["path"])


def test_a_search_sees_label_changes_without_recounting_otherwise(objects_library: Library) -> None:
    lib = objects_library
    counted = lib._live_objects()
    lib.search("a cup", objects=True)
    assert lib._live_objects() is counted  # nothing changed: no recount
    image_id = lib.labels.objects()["image_id"].iloc[0]
    new = lib.labels.add_object(image_id, "spoon", bbox=(1, 1, 60, 60))
    pending = lib.search("a cup", objects=True, limit=None)
    assert pending.partial and pending.query["total_images"] == 7  # the new object counts, as not embedded yet
    lib.update(progress=False)
    assert "spoon" in lib.search("a cup", objects=True, limit=None).df["class"].tolist()
    lib.labels.remove_object(new)
    assert "spoon" not in lib.search("a cup", objects=True, limit=None).df["class"].tolist()
