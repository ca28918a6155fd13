"""Labelled projects in and out: Supervisely, COCO and YOLO fixtures built from real stamp images."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from picsift import Library, PicsiftError
from picsift.catalog import FileRow
from picsift.formats.yolo import parse_names

from .conftest import stamp_files


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def make_supervisely(root: Path, stamps_root: Path) -> Path:
    """Project ``zoo``: dataset ``animals`` (3 images) and ``vehicles`` (2), rectangles, polygons, tags, a bitmap."""
    project = root / "zoo"
    meta = {
        "classes": [{"title": "animal", "shape": "rectangle", "color": "#FF0000"},
                    {"title": "wheel", "shape": "polygon", "color": "#00FF00"},
                    {"title": "mask", "shape": "bitmap", "color": "#0000FF"}],
        "tags": [{"name": "outdoor", "value_type": "none"}, {"name": "colour", "value_type": "any_string"},
                 {"name": "legs", "value_type": "any_number"}, {"name": "occluded", "value_type": "none"}],
        "projectType": "images",
    }
    project.mkdir(parents=True)
    (project / "meta.json").write_text(json.dumps(meta))
    for dataset, category, count in (("animals", "animals", 3), ("vehicles", "vehicles", 2)):
        for n, source in enumerate(stamp_files(stamps_root, (category,), count)):
            (project / dataset / "img").mkdir(parents=True, exist_ok=True)
            (project / dataset / "ann").mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / dataset / "img" / source.name)
            width, height = _size(source)
            objects: list[dict[str, Any]] = []
            tags: list[dict[str, Any]] = []
            if dataset == "animals":
                tags = [{"name": "outdoor", "value": None, "labelerLogin": "ann"},
                        {"name": "colour", "value": ["brown", "white", "grey"][n]}]
                for k in range(n + 1):  # 1, 2 and 3 animals
                    objects.append({"classTitle": "animal", "geometryType": "rectangle",
                                    "labelerLogin": "ann" if k == 0 else "bob",
                                    "tags": [{"name": "legs", "value": 4 - 2 * (k % 2)}] + (
                                        [{"name": "occluded", "value": None}] if n == 1 and k == 1 else []),
                                    "points": {"exterior": [[1 + k, 2], [width // 2 + k, height // 2]],
                                               "interior": []}})
            else:
                tags = [{"name": "colour", "value": "red"}] if n == 0 else []
                objects.append({"classTitle": "wheel", "geometryType": "polygon", "labelerLogin": "cy",
                                "tags": [], "points": {"exterior": [[0, 0], [10, 0], [10.5, 12], [0, 8]],
                                                       "interior": []}})
                objects.append({"classTitle": "mask", "geometryType": "bitmap", "labelerLogin": "cy",
                                "tags": [], "bitmap": {"data": "eJw=", "origin": [0, 0]}})
            ann = {"size": {"width": width, "height": height}, "tags": tags, "objects": objects}
            (project / dataset / "ann" / f"{source.name}.json").write_text(json.dumps(ann))
    return project


def make_coco(root: Path, stamps_root: Path) -> Path:
    """Project ``kitchen``: ``annotations/instances_train.json`` (2 food images) and ``instances_val.json`` (1)."""
    project = root / "kitchen"
    files = stamp_files(stamps_root, ("food",), 3)
    categories = [{"id": 7, "name": "fruit"}, {"id": 9, "name": "plate"}]
    for split, chosen in (("train", files[:2]), ("val", files[2:])):
        images, annotations = [], []
        for n, source in enumerate(chosen, start=1):
            (project / "images" / split).mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / "images" / split / source.name)
            width, height = _size(source)
            images.append({"id": 100 + n, "file_name": source.name, "width": width, "height": height})
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + n, "category_id": 7,
                                "bbox": [3, 4, 20, 10], "area": 200, "iscrowd": 0, "segmentation": []})
            if split == "train" and n == 1:
                annotations.append({"id": len(annotations) + 1, "image_id": 101, "category_id": 9,
                                    "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 0,
                                    "segmentation": [[0, 0, 30, 0, 30, 30, 0, 30]]})
        (project / "annotations").mkdir(parents=True, exist_ok=True)
        data = {"images": images, "annotations": annotations, "categories": categories}
        (project / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return project


def make_yolo(root: Path, stamps_root: Path) -> Path:
    """Project ``garage``: splits ``train`` (2 vehicles) and ``val`` (1), names in data.yaml."""
    project = root / "garage"
    files = stamp_files(stamps_root, ("vehicles",), 5)[2:]
    (project).mkdir(parents=True)
    (project / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  - car\n  - tyre\n")
    for split, chosen in (("train", files[:2]), ("val", files[2:])):
        for n, source in enumerate(chosen):
            (project / "images" / split).mkdir(parents=True, exist_ok=True)
            (project / "labels" / split).mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / "images" / split / source.name)
            lines = ["0 0.5 0.5 0.5 0.25"] + (["1 0.1 0.1 0.3 0.1 0.2 0.4"] if n == 0 else [])
            (project / "labels" / split / f"{Path(source.name).stem}.txt").write_text("\n".join(lines) + "\n")
    return project


def annotations(lib: Library, *, tags: bool = True, authors: bool = True) -> dict[str, Any]:
    """Every image's annotations keyed by file name, in a form that compares across formats."""
    meta = lib.metadata
    found: dict[str, Any] = {}
    for dataset in meta.dataset_names():
        for item in meta.dataset_items(dataset).itertuples():
            objects = sorted(
                (o["class"], o["geometry"], [[round(x, 3), round(y, 3)] for x, y in o["points"]],
                 sorted(map(str, o["tags"])) if tags else [], o["author"] if authors else None)
                for o in meta.objects(item.id).to_dict("records")
            )
            found[Path(item.path).name] = (sorted(map(str, meta.tags(item.id))) if tags else [], objects)
    return found


@pytest.fixture
def library(tmp_path: Path) -> Library:
    (tmp_path / "lib").mkdir()
    return Library(tmp_path / "lib")


def test_supervisely_import(library: Library, tmp_path: Path, stamps_root: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    project = make_supervisely(tmp_path / "src", stamps_root)
    with caplog.at_level(logging.WARNING):
        names = library.metadata.import_project(project, "supervisely")
    assert names == ["zoo/animals", "zoo/vehicles"]
    assert sum("bitmap" in r.getMessage() for r in caplog.records) == 2  # one per vehicle, with its reason
    meta = library.metadata
    datasets = meta.datasets()
    assert datasets["size"].tolist() == [3, 2]
    first = stamp_files(stamps_root, ("animals",), 1)[0]
    copied = library.root / "zoo" / "animals" / first.name
    assert copied.read_bytes() == first.read_bytes()
    assert sorted(meta.tags(copied)) == [("colour", "brown"), ("outdoor", None)]
    objects = meta.objects()
    assert len(objects) == 1 + 2 + 3 + 2  # the bitmaps are skipped
    assert objects["author"].value_counts().to_dict() == {"bob": 3, "ann": 3, "cy": 2}
    wheel = objects[objects["class"] == "wheel"].iloc[0]
    assert wheel["geometry"] == "polygon" and wheel["points"][2] == [10.5, 12.0]
    legs = [t for ts in objects["tags"] for t in ts if t[0] == "legs"]
    assert sorted(legs) == [("legs", 2)] * 2 + [("legs", 4)] * 4  # numbers stay numbers
    assert ("wheel", "polygon", None) in meta.classes()


def test_coco_and_yolo_import_several_datasets(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    meta = library.metadata
    assert meta.import_project(make_coco(tmp_path / "src", stamps_root), "coco") == ["kitchen/train", "kitchen/val"]
    assert meta.import_project(make_yolo(tmp_path / "src", stamps_root), "yolo") == ["garage/train", "garage/val"]
    found = annotations(library)
    food = stamp_files(stamps_root, ("food",), 1)[0].name
    assert found[food][1] == [("fruit", "rectangle", [[3, 4], [23, 14]], [], None),
                              ("plate", "polygon", [[0, 0], [30, 0], [30, 30], [0, 30]], [], None)]
    car = stamp_files(stamps_root, ("vehicles",), 3)[2]
    width, height = _size(car)
    (cls, geometry, points, _, _), (tyre, polygon, tyre_points, _, _) = found[car.name][1]
    assert (cls, geometry, tyre, polygon) == ("car", "rectangle", "tyre", "polygon")
    assert points == [[round(0.25 * width, 3), round(0.375 * height, 3)],
                      [round(0.75 * width, 3), round(0.625 * height, 3)]]
    assert tyre_points[1] == [round(0.3 * width, 3), round(0.1 * height, 3)]
    assert meta.datasets()["size"].tolist() == [2, 1, 2, 1]


@pytest.mark.parametrize("fmt", ["supervisely", "coco", "yolo"])
def test_export_then_import_keeps_annotations(library: Library, tmp_path: Path, stamps_root: Path,
                                              fmt: str) -> None:
    meta = library.metadata
    meta.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    meta.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    ids = [i for d in meta.dataset_names() for i in meta.dataset_items(d)["id"]]
    library.write_collection("picked", ids)
    out = meta.export("picked", tmp_path / "out" / fmt, fmt)

    (tmp_path / "again").mkdir()
    again = Library(tmp_path / "again")
    names = again.metadata.import_project(out, fmt)
    assert sorted(n.split("/")[1] for n in names) == ["animals", "train", "val", "vehicles"]
    full = fmt == "supervisely"  # COCO keeps tags (as attributes) but no authors; YOLO keeps geometry only
    keeps_tags = fmt != "yolo"
    before = annotations(library, tags=keeps_tags, authors=full)
    after = annotations(again, tags=keeps_tags, authors=full)
    assert after == before
    assert len(after) == 8


def test_export_of_images_outside_datasets_and_errors(tmp_path: Path, stamps_root: Path) -> None:
    folder = tmp_path / "lib"
    (folder / "loose").mkdir(parents=True)
    source = stamp_files(stamps_root, ("animals",), 1)[0]
    shutil.copy2(source, folder / "loose" / source.name)
    library = Library(folder)
    meta = library.metadata
    image = folder / "loose" / source.name
    # what update() records for the file, without loading a model
    with library.catalog.transaction() as db:
        library.catalog.upsert_files(db, [FileRow(f"loose/{source.name}", image.stat().st_size, 0,
                                                  meta.image_id(image), None, None, None)])
    meta.add_object(f"loose/{source.name}", "cat", bbox=(1, 2, 3, 4), author="me")
    out = meta.export([meta.image_id(folder / "loose" / source.name)], tmp_path / "out", "coco")
    data = json.loads((out / "annotations" / "instances_images.json").read_text())
    assert [a["bbox"] for a in data["annotations"]] == [[1, 2, 2, 2]]
    assert (out / "images" / "images" / source.name).read_bytes() == source.read_bytes()
    with pytest.raises(PicsiftError, match=r"'pascal'.*supervisely, coco, yolo"):
        meta.export([], tmp_path / "x", "pascal")
    with pytest.raises(PicsiftError, match="not empty"):
        meta.export([], out, "coco")
    with pytest.raises(PicsiftError, match=r"no meta\.json"):
        meta.import_project(out, "supervisely")


def test_yolo_names_without_a_yaml_library(tmp_path: Path) -> None:
    where = tmp_path / "data.yaml"
    assert parse_names("names: [cat, 'dog']\n", where) == ["cat", "dog"]
    assert parse_names("train: x\nnames:\n  0: cat\n  1: \"hot dog\"\nnc: 2\n", where) == ["cat", "hot dog"]
    assert parse_names("names:\n- a\n- b\n", where) == ["a", "b"]
    with pytest.raises(PicsiftError, match="no 'names:'"):
        parse_names("nc: 2\n", where)
