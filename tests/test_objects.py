"""Object embeddings on real files: a COCO project with boxes, updated, its objects' crops embedded and kept fresh."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.cli import main
from picsift.core.objects import bounding_box, crop_region, object_id
from picsift.embedding.decode import to_rgb
from picsift.errors import NotIndexedError

from . import fast_python
from .kill import KILL_AFTER
from .test_formats import make_coco


def object_store_ids(lib: Library) -> set[str]:
    store = lib._engine.object_store(create=False)
    return set() if store is None else set(store.snapshot().ids.tolist())


def expected_ids(lib: Library) -> set[str]:
    """The object id of every labelled object, computed from the labels the user sees."""
    objects = lib.labels.objects()
    return {object_id(i, bounding_box(p)) for i, p in zip(objects["image_id"], objects["points"], strict=True)}


@pytest.fixture
def coco_library(tmp_path: Path, stamps_root: Path, tiny_model: str) -> Library:
    """A library holding the imported COCO project ``kitchen``: 3 food images, 4 boxes (one with a polygon)."""
    (tmp_path / "lib").mkdir()
    lib = Library(tmp_path / "lib", model=tiny_model, batch_size=2)
    lib.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    return lib


def test_update_embeds_every_labelled_object_once(coco_library: Library) -> None:
    lib = coco_library
    report = lib.update(progress=False)
    assert report.objects == 4 and report.objects_skipped == []
    assert "4 objects embedded" in report.summary()
    assert object_store_ids(lib) == expected_ids(lib)
    store = lib._engine.object_store()
    assert store is not None and store.folder.parent == lib.store.folder  # beside the image store, per model
    vectors = store.snapshot().vectors()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert lib.status()["models"] == {lib.spec.text: 3}  # the object store is no second model
    assert lib.status()["embedded_objects"] == 4
    again = lib.update(progress=False)
    assert again.objects == 0 and object_store_ids(lib) == expected_ids(lib)  # nothing twice


def test_objects_false_embeds_no_object(coco_library: Library) -> None:
    report = coco_library.update(progress=False, objects=False)
    assert report.embedded == 3 and report.objects == 0
    assert object_store_ids(coco_library) == set()
    assert coco_library.update(progress=False).objects == 4  # turned on later: all of them


def test_a_moved_box_is_embedded_again_and_its_old_vector_dropped(coco_library: Library) -> None:
    lib = coco_library
    lib.update(progress=False)
    before = object_store_ids(lib)
    objects = lib.labels.objects()
    fruit = objects[objects["class"] == "fruit"].iloc[0]
    old_id = object_id(fruit["image_id"], bounding_box(fruit["points"]))
    lib.labels.remove_object(int(fruit["id"]))
    lib.labels.add_object(fruit["image_id"], "fruit", bbox=(10, 12, 40, 30))  # the same object, box moved
    report = lib.update(progress=False)
    assert report.objects == 1
    new_id = object_id(fruit["image_id"], (10.0, 12.0, 30.0, 18.0))
    assert object_store_ids(lib) == (before - {old_id}) | {new_id} == expected_ids(lib)


def test_deleting_an_image_removes_its_objects_vectors(coco_library: Library) -> None:
    lib = coco_library
    lib.update(progress=False)
    objects = lib.labels.objects()
    image_id = objects["image_id"].value_counts().index[0]  # the image with two boxes
    gone = {object_id(image_id, bounding_box(p)) for p in objects[objects["image_id"] == image_id]["points"]}
    assert len(gone) == 2 and gone <= object_store_ids(lib)
    assert lib.files.delete([image_id]) == 1
    lib.update(progress=False)
    assert object_store_ids(lib) == expected_ids(lib) and not gone & object_store_ids(lib)
    # a file removed outside picsift: its objects' vectors go with it too (even when objects are not embedded)
    objects = lib.labels.objects()
    other = objects["image_id"].iloc[0]
    gone = {object_id(other, bounding_box(p)) for p in objects[objects["image_id"] == other]["points"]}
    Path(next(p for p in lib.images()["path"] if lib.labels.image_id(p) == other)).unlink()
    lib.update(progress=False, objects=False)
    assert len(object_store_ids(lib)) == 1 and not gone & object_store_ids(lib)


def test_degenerate_boxes_are_skipped_and_reported_the_rest_embeds(coco_library: Library) -> None:
    lib = coco_library
    image_id = lib.labels.objects()["image_id"].iloc[0]
    lib.labels.add_object(image_id, "flat", bbox=(5, 5, 5, 20))  # zero width
    lib.labels.add_object(image_id, "away", bbox=(5000, 5000, 5010, 5010))  # outside the picture
    with lib.catalog.transaction():  # a NaN corner, as a catalog written elsewhere may hold
        lib.catalog.labels.add_object(image_id, "nan", "rectangle", [[float("nan"), 1.0], [9.0, 9.0]], [], None)
    report = lib.update(progress=False)
    assert report.objects == 4
    reasons = sorted(reason for _, reason in report.objects_skipped)
    assert len(reasons) == 3 and "3 objects skipped" in report.summary()
    assert any("zero area" in r for r in reasons) and any("outside" in r for r in reasons)
    assert any("not finite" in r for r in reasons)
    assert all("object" in about for about, _ in report.objects_skipped)


def test_crop_region_adds_a_margin_and_grows_tiny_boxes() -> None:
    assert crop_region((100, 100, 100, 50), 1000, 1000) == (90, 95, 210, 155)  # 10% of each side
    left, top, right, bottom = crop_region((500, 500, 2, 3), 1000, 1000)
    assert right - left >= 32 and bottom - top >= 32  # a 2x3 box gets context to be upscaled from
    assert crop_region((0, 0, 10, 10), 20, 20) == (0, 0, 20, 20)  # clipped to the picture


CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys
    import picsift, picsift.core.store
    folder, spec, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    kill_after(picsift.core.store.EmbeddingStore, point, nth)
    picsift.Library(folder, model=spec, batch_size=2).update(progress=False)
    """
)


@pytest.mark.parametrize(("point", "nth"), [("write_vectors", 2), ("commit_rows", 2)])
def test_an_update_killed_while_embedding_objects_finishes_on_the_next_run(
        coco_library: Library, tmp_path: Path, tiny_model: str, point: str, nth: int) -> None:
    lib = coco_library
    for image_id in lib.labels.objects()["image_id"].unique():
        for k in range(3):  # more objects: several batches of 2
            lib.labels.add_object(image_id, "crumb", bbox=(4 * k, 2 * k, 4 * k + 12 + k, 2 * k + 9))
    lib.update(progress=False, objects=False)  # the images are in: every later commit is an object batch
    reference_root = tmp_path / "reference"
    shutil.copytree(lib.workspace, reference_root / "ws")
    lib.close()
    child = fast_python.run([sys.executable, "-c", CHILD, str(lib.root), tiny_model, point, str(nth)],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with Library(lib.root, model=tiny_model, batch_size=2) as resumed:
        kept = object_store_ids(resumed)
        assert 0 < len(kept) < len(expected_ids(resumed))  # killed half-way: some batches committed
        report = resumed.update(progress=False)
        assert report.objects == len(expected_ids(resumed)) - len(kept)
        store = resumed._engine.object_store()
        assert store is not None
        pairs = resumed.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                           (store.identity,)).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs})  # no duplicates
        assert {i for i, _ in pairs} == expected_ids(resumed)
        got = dict(zip(store.snapshot().ids.tolist(), store.snapshot().vectors(), strict=True))
    with Library(lib.root, workspace=reference_root / "ws", model=tiny_model, batch_size=2) as reference:
        reference.update(progress=False)
        store = reference._engine.object_store()
        assert store is not None
        want = dict(zip(store.snapshot().ids.tolist(), store.snapshot().vectors(), strict=True))
    assert got.keys() == want.keys()
    for key, vector in want.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-4)


def add_central_boxes(lib: Library) -> None:
    """A box over the middle of each picture (the imported boxes sit on the stamps' blank corners)."""
    lib.update(progress=False, objects=False)  # the images catalogued, with their sizes
    for image_id in lib.images()["id"]:
        width, height = lib.image_info(image_id)["width"], lib.image_info(image_id)["height"]
        lib.labels.add_object(image_id, "food", bbox=(width / 4, height / 4, 3 * width / 4, 3 * height / 4))


def test_an_object_vector_is_its_crop_with_a_margin(coco_library: Library) -> None:
    lib = coco_library
    add_central_boxes(lib)
    lib.update(progress=False)
    store = lib._engine.object_store()
    assert store is not None
    snapshot = store.snapshot()
    central = lib.labels.objects().query("`class` == 'food'")
    vectors = []
    for image_id, points in zip(central["image_id"], central["points"], strict=True):
        box = bounding_box(points)
        path = next(p for p in lib.images()["path"] if lib.labels.image_id(p) == image_id)
        with Image.open(path) as picture:
            crop = to_rgb(picture).crop(crop_region(box, *picture.size))
        want = lib.embedder.embed_images([crop])[0]
        got = snapshot.vectors(np.array([snapshot.position[object_id(image_id, box)]]))[0]
        np.testing.assert_allclose(got, want, atol=2e-3)
        vectors.append(got)
    assert np.linalg.matrix_rank(np.stack(vectors), tol=1e-3) == len(vectors)  # three pictures, three crops


def test_object_search_returns_boxes_inside_their_image(coco_library: Library) -> None:
    lib = coco_library
    add_central_boxes(lib)
    lib.update(progress=False)
    lib.labels.add_object(lib.labels.objects()["image_id"].iloc[0], "fruit", bbox=(1, 1, 6, 6))  # not embedded yet
    found = lib.search("a red apple", objects=True, limit=3)
    assert len(found) == 3 and found.partial  # 7 embedded of the 8 labelled now
    assert len(found.scores) == 7 and found.histogram(bins=5)[0].sum() == 7  # every embedded object in scope
    df = found.df
    assert {"id", "image_id", "path", "class", "box", "score"} <= set(df.columns)
    objects = lib.labels.objects()
    for row in df.to_dict(orient="records"):
        assert row["id"] in expected_ids(lib) and row["id"] != row["image_id"]
        assert lib.labels.image_id(row["path"]) == row["image_id"]
        x, y, w, h = row["box"]
        width, height = lib.image_info(row["image_id"])["width"], lib.image_info(row["image_id"])["height"]
        assert min(x, y) >= 0 and min(w, h) > 0 and x + w <= width and y + h <= height
        mine = objects[objects["image_id"] == row["image_id"]]
        assert row["class"] in set(mine["class"])
        assert any(object_id(row["image_id"], bounding_box(p)) == row["id"] for p in mine["points"])
    assert df["score"].is_monotonic_decreasing
    assert np.isclose(df["score"].iloc[0], found.scores.max())
    # similar objects: an object's own crop is its best match
    food = lib.labels.objects().query("`class` == 'food'").iloc[0]
    reference = object_id(food["image_id"], bounding_box(food["points"]))
    best = lib.similar([reference], objects=True, limit=None)
    assert best.df["id"].iloc[0] == reference and np.isclose(best.df["score"].iloc[0], 1.0, atol=1e-3)
    assert best.df["score"].iloc[1] < best.df["score"].iloc[0] - 1e-3
    assert len(best) == 7 and set(best.df["id"]) == object_store_ids(lib)
    others = lib.similar([reference], objects=True, exclude_references=True, limit=None)
    assert reference not in set(others.df["id"]) and len(others) == 6
    # within an image: only its objects
    one = objects["image_id"].value_counts().index[0]
    assert set(lib.search("a plate", objects=True, within=[one]).df["image_id"]) == {one}
    assert lib.search("a plate").df["id"].isin(lib.images()["id"]).all()  # image search is unchanged


def test_object_search_before_any_object_is_embedded_says_what_to_do(coco_library: Library) -> None:
    coco_library.update(progress=False, objects=False)
    with pytest.raises(NotIndexedError, match="labelled objects"):
        coco_library.search("a plate", objects=True)


def test_cli_searches_objects(coco_library: Library, tiny_model: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = coco_library.root
    coco_library.close()
    assert main(["update", str(root), "--model", tiny_model, "--quiet"]) == 0
    assert "4 objects embedded" in capsys.readouterr().out
    assert main(["search", str(root), "a fruit", "--objects", "--model", tiny_model, "--json", "--limit", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["results"]) == 2 and data["distribution"]["count"] == 4
    assert data["query"]["objects"] is True
    for row in data["results"]:
        assert set(row) >= {"id", "image_id", "path", "class", "box", "score"} and len(row["box"]) == 4
        assert Path(row["path"]).is_file() and row["class"] in ("fruit", "plate")
    assert main(["search", str(root), "a fruit", "--objects", "--model", tiny_model]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 objects" in out and "box [" in out


def test_a_library_without_labels_gets_no_object_store(image_folder: Path, tiny_model: str) -> None:
    with Library(image_folder, model=tiny_model) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 24 and report.objects == 0 and "objects" not in report.summary()
        assert lib._engine.object_store(create=False) is None
        assert not (lib.store.folder / "objects").exists()
        with pytest.raises(NotIndexedError, match="label some"):
            lib.search("a cat", objects=True)
