"""Handing a collection on: to_pandas with labels, CSV and Parquet, project formats, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import picsift
from picsift.cli import main
from picsift.errors import PicsiftError
from picsift.labels.export import read_table

from .conftest import stamp_files


@pytest.fixture
def labelled(image_folder: Path, tiny_model: str) -> picsift.Library:
    """24 real images; hand-made labels on four vehicles."""
    lib = picsift.Library(image_folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    vehicles = lib.images().query("path.str.contains('/vehicles/')")["id"].tolist()
    meta = lib.labels
    meta.add_object(vehicles[0], "car", bbox=(0, 0, 10, 10), author="ana")
    meta.add_object(vehicles[0], "car", bbox=(5, 5, 20, 20), author="ana")
    meta.add_object(vehicles[0], "wheel", bbox=(1, 1, 4, 4))
    meta.add_object(vehicles[1], "car", bbox=(0, 0, 8, 8), author="bo")
    meta.add_tag(vehicles[1], "weather", "rain")
    meta.add_tag(vehicles[2], "night")
    meta.open_issue(vehicles[3], "wrong class")
    lib.collections.write("vehicles", vehicles[:6])
    return lib


def test_to_pandas_has_one_row_per_image_with_its_labels(labelled: picsift.Library) -> None:
    lib = labelled
    ids = lib.collection("vehicles").df["id"].tolist()
    df = lib.to_pandas("vehicles")
    assert df["id"].tolist() == ids and df["rank"].tolist() == list(range(1, 7))
    assert all(Path(p).is_file() for p in df["path"])
    by_id = df.set_index("id")
    assert by_id.loc[ids[0], "objects"] == 3
    assert (by_id.loc[ids[0], "objects.car"], by_id.loc[ids[0], "objects.wheel"]) == (2, 1)
    assert by_id.loc[ids[1], "objects.car"] == 1 and by_id.loc[ids[1], "tags"] == ["weather=rain"]
    assert by_id.loc[ids[2], "tags"] == ["night"] and by_id.loc[ids[2], "objects"] == 0
    assert by_id["open_issues"].tolist() == [0, 0, 0, 1, 0, 0]
    assert (df["width"] > 0).all() and (df["height"] > 0).all()


def test_to_pandas_of_a_search_keeps_scores_in_order(labelled: picsift.Library) -> None:
    results = labelled.search("a red car", limit=5)
    df = labelled.to_pandas(results)
    assert df["id"].tolist() == results.df["id"].tolist()
    assert df["score"].tolist() == pytest.approx(results.df["score"].tolist())
    assert labelled.to_pandas()["id"].tolist() == results.df["id"].tolist()  # default: the last search


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_exports_round_trip(labelled: picsift.Library, tmp_path: Path, fmt: str) -> None:
    out = labelled.export("vehicles", tmp_path / f"v.{fmt}", fmt)
    back = read_table(out)
    expected = labelled.to_pandas("vehicles")
    assert back["id"].tolist() == expected["id"].tolist()
    assert back["tags"].tolist() == expected["tags"].tolist()
    assert back["objects.car"].tolist() == expected["objects.car"].tolist()
    assert back["path"].tolist() == expected["path"].tolist()


def test_project_export_writes_images_and_annotations(labelled: picsift.Library, tmp_path: Path) -> None:
    out = labelled.export("vehicles", tmp_path / "coco", "coco")
    data = json.loads(next(out.rglob("*.json")).read_text())
    assert len(data["images"]) == 6 and len(data["annotations"]) == 4
    assert {c["name"] for c in data["categories"]} >= {"car", "wheel"}
    assert len([p for p in out.rglob("*.png")]) == 6


def test_export_errors_name_the_problem(labelled: picsift.Library, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(PicsiftError, match="valid choices: csv, parquet, supervisely, coco, yolo"):
        labelled.export("vehicles", tmp_path / "x", "xlsx")
    with pytest.raises(PicsiftError, match="no collection named 'nope'"):
        labelled.export("nope", tmp_path / "x.csv", "csv")
    with pytest.raises(PicsiftError, match="is a folder"):
        labelled.export("vehicles", tmp_path, "csv")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_exports_and_lists_collections(labelled: picsift.Library, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, model = str(labelled.root), labelled.spec.text
    labelled.close()
    out = tmp_path / "v.csv"
    assert main(["export", root, "--model", model, "--collection", "vehicles", "--format", "csv",
                 "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 6
    assert len(pd.read_csv(out)) == 6
    assert main(["collections", root, "--model", model, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["size"]) for c in listed] == [("vehicles", 6)]
    assert main(["export", root, "--model", model, "--collection", "nope", "--format", "yolo",
                 "--out", str(tmp_path / "y")]) == 1
    assert "no collection named 'nope'" in capsys.readouterr().err


def test_cli_imports_a_project(labelled: picsift.Library, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = labelled.export("vehicles", tmp_path / "yolo", "yolo")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(next(Path(labelled.root, "animals").iterdir()), other / "seed.png")
    assert main(["index", str(other), "--model", labelled.spec.text, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["import", str(other), str(project), "--format", "yolo", "--model", labelled.spec.text,
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(d["images"] for d in report["datasets"]) == 6
    with picsift.Library(other, model=labelled.spec.text) as lib:
        assert lib.status()["embedded"] == 7
        assert len(lib.labels.objects()) == 4


def two_images_of_one_stem(tmp_path: Path, stamps_root: Path) -> tuple[picsift.Library, str, str]:
    """A library whose dataset ``pics`` holds ``cat.png`` and ``cat.jpg`` (different pictures), each with its box."""
    root = tmp_path / "lib"
    (root / "pics").mkdir(parents=True)
    first, second = stamp_files(stamps_root, ("animals",), 2)
    shutil.copy2(first, root / "pics" / "cat.png")
    with Image.open(second) as image:
        image.convert("RGB").save(root / "pics" / "cat.jpg", quality=90)
    lib = picsift.Library(root)
    meta = lib.labels
    meta.add_dataset("pics")
    png, jpg = meta.add_to_dataset("pics", "pics/cat.png"), meta.add_to_dataset("pics", "pics/cat.jpg")
    meta.add_object(png, "cat", bbox=(1, 2, 11, 12))
    meta.add_object(jpg, "dog", bbox=(3, 4, 23, 24))
    meta.add_object(jpg, "dog", bbox=(5, 6, 25, 26))
    return lib, png, jpg


def test_yolo_export_keeps_the_labels_of_images_sharing_a_stem(tmp_path: Path, stamps_root: Path) -> None:
    lib, png, jpg = two_images_of_one_stem(tmp_path, stamps_root)
    out = lib.export([png, jpg], tmp_path / "yolo", "yolo")
    labels = sorted(p.name for p in (out / "labels" / "pics").iterdir())
    images = sorted(p.name for p in (out / "images" / "pics").iterdir())
    assert len(labels) == len(images) == 2
    assert sorted(Path(n).stem for n in images) == [Path(n).stem for n in labels]  # each image has its own labels

    (tmp_path / "again").mkdir()
    again = picsift.Library(tmp_path / "again")
    again.labels.import_project(out, "yolo")
    boxes = {image_id: sorted((o["class"], [[round(v) for v in p] for p in o["points"]])
                              for o in again.labels.objects(image_id).to_dict("records")) for image_id in (png, jpg)}
    assert boxes == {png: [("cat", [[1, 2], [11, 12]])],
                     jpg: [("dog", [[3, 4], [23, 24]]), ("dog", [[5, 6], [25, 26]])]}


@pytest.mark.parametrize("fmt", ["coco", "yolo", "supervisely"])
def test_export_never_writes_beside_its_folder(tmp_path: Path, stamps_root: Path, fmt: str) -> None:
    lib, png, jpg = two_images_of_one_stem(tmp_path, stamps_root)
    with pytest.raises(PicsiftError, match="invalid dataset name"):
        lib.labels.add_dataset("pics/..")
    with lib.catalog.transaction() as db:  # a crafted workspace: a dataset whose last name part is '..'
        db.execute("UPDATE datasets SET name='pics/..' WHERE name='pics'")
    outside = sorted(tmp_path.rglob("*"))
    with pytest.raises(PicsiftError, match=r"'pics/\.\.'"):
        lib.export([png, jpg], tmp_path / "out" / "project", fmt)
    assert [p for p in sorted(tmp_path.rglob("*")) if tmp_path / "out" not in [p, *p.parents]] == outside
