"""Labelled projects in and out: Supervisely, COCO and YOLO fixtures built from real stamp images."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from picsift import Library, PicsiftError
from picsift.core.catalog import FileRow
from picsift.labels.formats.yolo import parse_names

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
    meta = lib.labels
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
        names = library.labels.import_project(project, "supervisely")
    assert names == ["zoo/animals", "zoo/vehicles"]
    assert sum("bitmap" in r.getMessage() for r in caplog.records) == 2  # one per vehicle, with its reason
    meta = library.labels
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
    meta = library.labels
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
    meta = library.labels
    meta.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    meta.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    ids = [i for d in meta.dataset_names() for i in meta.dataset_items(d)["id"]]
    library.collections.write("picked", ids)
    out = library.export("picked", tmp_path / "out" / fmt, fmt)

    (tmp_path / "again").mkdir()
    again = Library(tmp_path / "again")
    names = again.labels.import_project(out, fmt)
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
    meta = library.labels
    image = folder / "loose" / source.name
    # what update() records for the file, without loading a model
    with library.catalog.transaction() as db:
        library.catalog.upsert_files(db, [FileRow(f"loose/{source.name}", image.stat().st_size, 0,
                                                  meta.image_id(image), None, None, None)])
    meta.add_object(f"loose/{source.name}", "cat", bbox=(1, 2, 3, 4), author="me")
    out = library.export([meta.image_id(folder / "loose" / source.name)], tmp_path / "out", "coco")
    data = json.loads((out / "annotations" / "instances_images.json").read_text())
    assert [a["bbox"] for a in data["annotations"]] == [[1, 2, 2, 2]]
    assert (out / "images" / "images" / source.name).read_bytes() == source.read_bytes()
    with pytest.raises(PicsiftError, match=r"'pascal'.*supervisely, coco, yolo"):
        library.export([], tmp_path / "x", "pascal")
    with pytest.raises(PicsiftError, match="not empty"):
        library.export([], out, "coco")
    with pytest.raises(PicsiftError, match=r"no meta\.json"):
        meta.import_project(out, "supervisely")


def test_yolo_names_without_a_yaml_library(tmp_path: Path) -> None:
    where = tmp_path / "data.yaml"
    assert parse_names("names: [cat, 'dog']\n", where) == ["cat", "dog"]
    assert parse_names("train: x\nnames:\n  0: cat\n  1: \"hot dog\"\nnc: 2\n", where) == ["cat", "hot dog"]
    assert parse_names("names:\n- a\n- b\n", where) == ["a", "b"]
    with pytest.raises(PicsiftError, match="no 'names:'"):
        parse_names("nc: 2\n", where)


# -- a project folder is untrusted input: it reads nothing outside itself, and writes nothing outside the library --

def private_image(tmp_path: Path, stamps_root: Path) -> Path:
    """A real image outside every project and library: no import may copy it."""
    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(stamp_files(stamps_root, ("animals",), 6)[5], secret)
    return secret


def library_contents(lib: Library) -> dict[str, bytes]:
    """Every file under the library root but outside its workspace, by relative path."""
    return {p.relative_to(lib.root).as_posix(): p.read_bytes() for p in sorted(lib.root.rglob("*"))
            if p.is_file() and ".picsift" not in p.relative_to(lib.root).parts}


def set_coco_file_name(project: Path, file_name: Any) -> None:
    instances = project / "annotations" / "instances_val.json"
    data = json.loads(instances.read_text())
    data["images"][0]["file_name"] = file_name
    instances.write_text(json.dumps(data))


@pytest.mark.parametrize("file_name", ["ABSOLUTE", "../../private/secret.png", "images/../../../private/secret.png",
                                       42, None, ["a.png"]])
def test_coco_file_names_outside_the_project_are_refused(library: Library, tmp_path: Path, stamps_root: Path,
                                                         file_name: Any) -> None:
    secret = private_image(tmp_path, stamps_root)
    file_name = str(secret) if file_name == "ABSOLUTE" else file_name
    project = make_coco(tmp_path / "src", stamps_root)
    set_coco_file_name(project, file_name)
    with pytest.raises(PicsiftError, match=re.escape(repr(file_name))) as caught:
        library.labels.import_project(project, "coco")
    assert "instances_val.json" in str(caught.value)  # the error names the file and the entry
    assert library_contents(library) == {} and library.labels.dataset_names() == []
    assert secret.read_bytes() not in library_contents(library).values()


@pytest.mark.parametrize("fmt", ["supervisely", "coco", "yolo"])
@pytest.mark.parametrize("link", ["image", "folder"])
def test_symlinks_out_of_the_project_are_refused(library: Library, tmp_path: Path, stamps_root: Path,
                                                 fmt: str, link: str) -> None:
    secret = private_image(tmp_path, stamps_root)
    make = {"supervisely": make_supervisely, "coco": make_coco, "yolo": make_yolo}[fmt]
    project = make(tmp_path / "src", stamps_root)
    folder = {"supervisely": project / "vehicles" / "img", "coco": project / "images" / "val",
              "yolo": project / "images" / "val"}[fmt]
    if link == "image":  # one image of the project is a link to the private file
        image = sorted(folder.iterdir())[0]
        image.unlink()
        image.symlink_to(secret)
    else:  # the whole image folder is a link to the private folder, with the same file names
        for image in folder.iterdir():
            shutil.copy2(secret, secret.parent / image.name)
        shutil.rmtree(folder)
        folder.symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(PicsiftError, match="outside the project"):
        library.labels.import_project(project, fmt)
    assert secret.read_bytes() not in library_contents(library).values()
    assert library.labels.dataset_names() == []


def test_yolo_label_files_linked_out_of_the_project_are_refused(library: Library, tmp_path: Path,
                                                                stamps_root: Path) -> None:
    private = tmp_path / "private" / "notes.txt"
    private.parent.mkdir()
    private.write_text("0 0.5 0.5 0.2 0.2\n")  # a valid label: only where it lies is wrong
    project = make_yolo(tmp_path / "src", stamps_root)
    label = sorted((project / "labels" / "val").iterdir())[0]
    label.unlink()
    label.symlink_to(private)
    with pytest.raises(PicsiftError, match=r"labels/val.*outside the project"):
        library.labels.import_project(project, "yolo")
    assert library.labels.objects().empty


def test_links_inside_the_project_are_followed(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    project = make_yolo(tmp_path / "src", stamps_root)
    val = sorted((project / "images" / "val").iterdir())[0]
    train = sorted((project / "images" / "train").iterdir())[0]
    val.unlink()
    val.symlink_to(Path("..") / "train" / train.name)  # a relative link that stays in the project
    assert library.labels.import_project(project, "yolo") == ["garage/train", "garage/val"]
    assert library_contents(library)[f"garage/val/{val.name}"] == train.read_bytes()


def test_importing_the_current_folder_names_the_target_after_it(library: Library, tmp_path: Path,
                                                                 stamps_root: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_yolo(tmp_path / "src", stamps_root)
    monkeypatch.chdir(project)
    assert library.labels.import_project(".", "yolo") == ["garage/train", "garage/val"]
    assert {p.split("/")[0] for p in library_contents(library)} == {"garage"} and len(library_contents(library)) == 3
    assert set(library.labels.datasets()["folder"]) == {"garage/train", "garage/val"}


@pytest.mark.parametrize("target", ["../escaped", "a/../../escaped", "ABSOLUTE", "", ".hidden", "a//b"])
def test_import_targets_outside_the_library_are_refused(library: Library, tmp_path: Path, stamps_root: Path,
                                                        target: str) -> None:
    target = str(tmp_path / "escaped") if target == "ABSOLUTE" else target
    project = make_yolo(tmp_path / "src", stamps_root)
    outside = sorted(p for p in tmp_path.rglob("*") if library.root not in p.parents)
    with pytest.raises(PicsiftError, match=re.escape(repr(target))):
        library.labels.import_project(project, "yolo", target=target)
    assert sorted(p for p in tmp_path.rglob("*") if library.root not in p.parents) == outside
    assert not (tmp_path / "escaped").exists()
    assert library_contents(library) == {} and library.labels.dataset_names() == []


def test_recorded_dataset_paths_stay_in_the_library(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    secret = private_image(tmp_path, stamps_root)
    meta = library.labels
    meta.add_dataset("mine")
    for bad in ("../private/secret.png", f"{library.root.name}/../private/secret.png", str(secret)):
        with pytest.raises(PicsiftError, match="outside the library"):
            meta.add_to_dataset("mine", bad)
    assert meta.dataset_items("mine").empty
    assert meta.relative_path("../private/secret.png") is None
    for bad_name in ("x/..", "..", "/abs", "a//b", "./a", ".hidden/x", "a/.."):
        with pytest.raises(PicsiftError, match="invalid dataset name"):
            meta.add_dataset(bad_name)
    with pytest.raises(PicsiftError, match="outside the library"):
        meta.add_dataset("ok", folder="../elsewhere")
    assert meta.dataset_names() == ["mine"]
