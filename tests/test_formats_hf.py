"""Hugging Face datasets in and out: save_to_disk folders of real stamp images, read back with load_from_disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image

from picsift import Library, PicsiftError

from .conftest import stamp_files
from .test_formats import library_contents, make_supervisely, private_image

datasets = pytest.importorskip("datasets")
COLOURS = ["red", "green", "blue"]  # ClassLabel names, in an order that is not alphabetical


@pytest.fixture
def library(tmp_path: Path) -> Library:
    (tmp_path / "lib").mkdir()
    return Library(tmp_path / "lib")


def features() -> Any:
    box = {"bbox": datasets.List(datasets.Value("float64"), length=4),
           "category": datasets.ClassLabel(names=["cat", "dog"])}
    return datasets.Features({
        "image": datasets.Image(), "colour": datasets.ClassLabel(names=COLOURS), "caption": datasets.Value("string"),
        "votes": datasets.Value("int64"), "score": datasets.Value("float32"), "flagged": datasets.Value("bool"),
        "moods": datasets.List(datasets.ClassLabel(names=["calm", "wild"])), "embedding": datasets.List(
            datasets.Value("float32"), length=2), "objects": datasets.List(box)})


def make_hf(folder: Path, stamps_root: Path, *, splits: bool = False) -> tuple[Path, list[Path]]:
    """Three real stamps with labels of every kind picsift reads; as one Dataset, or train (2) + test (1)."""
    files = stamp_files(stamps_root, ("animals",), 3)
    rows = {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "colour": [2, 0, None],
            "caption": ["a cat", None, "wild dog"], "votes": [3, 0, 7], "score": [0.5, 0.25, 1.0],
            "flagged": [True, False, False], "moods": [[0, 1], [], [1]], "embedding": [[0, 1]] * 3,
            "objects": [[{"bbox": [1, 2, 10, 20], "category": 0}], [], [{"bbox": [0, 0, 5.5, 6], "category": 1}]]}
    dataset = datasets.Dataset.from_dict(rows, features=features())
    saved: Any = datasets.DatasetDict({"train": dataset.select([0, 1]), "test": dataset.select([2])}) \
        if splits else dataset
    saved.save_to_disk(str(folder))
    return folder, files


def test_import_turns_columns_into_images_and_tags(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    source, files = make_hf(tmp_path / "pets", stamps_root)
    assert library.labels.import_project(source, "hf") == ["pets/default"]
    meta = library.labels
    items = meta.dataset_items("pets/default")
    items = items.set_index(items["path"].map(lambda p: Path(p).name)).loc[[f.name for f in files]]
    for path, file in zip(items["path"], files, strict=True):
        assert (library.root / path).read_bytes() == file.read_bytes()  # the bytes, as they were
    tags = [sorted(map(str, meta.tags(i))) for i in items["id"]]  # in the order of the rows
    assert tags[0] == sorted(map(str, [("caption", "a cat"), ("colour", "blue"), ("flagged", None),
                                       ("moods", "calm"), ("moods", "wild"), ("score", 0.5), ("votes", 3)]))
    assert tags[1] == sorted(map(str, [("colour", "red"), ("score", 0.25), ("votes", 0)]))
    objects = meta.objects(items["id"].iloc[2]).to_dict("records")
    assert [(o["class"], o["points"]) for o in objects] == [("dog", [[0, 0], [5.5, 6]])]


def test_export_reads_back_with_class_labels(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    source, files = make_hf(tmp_path / "pets", stamps_root, splits=True)
    assert library.labels.import_project(source, "hf") == ["pets/train", "pets/test"]
    ids = [i for d in library.labels.dataset_names() for i in library.labels.dataset_items(d)["id"]]
    out = library.export(ids, tmp_path / "out", "hf")
    back = datasets.load_from_disk(str(out))
    assert sorted(back) == ["test", "train"]
    train = back["train"]
    assert isinstance(train.features["image"], datasets.Image)
    assert train.features["colour"] == datasets.ClassLabel(names=COLOURS)  # the same classes, in their order
    assert train.features["moods"] == datasets.List(datasets.ClassLabel(names=["calm", "wild"]))
    assert train.features["flagged"] == datasets.Value("bool")
    assert [train.features["colour"].int2str(v) if v is not None else None for v in train["colour"]] == ["blue", "red"]
    assert train["caption"] == ["a cat", None] and train["votes"] == [3, 0] and train["flagged"] == [True, False]
    with Image.open(files[0]) as original:
        assert train[0]["image"].size == original.size
    assert train.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"] == files[0].read_bytes()
    test = back["test"]
    dog = test.features["objects"].feature["category"].int2str(test[0]["objects"][0]["category"])
    assert (dog, test[0]["objects"][0]["bbox"]) == ("dog", [0, 0, 5.5, 6])

    (tmp_path / "again").mkdir()
    again = Library(tmp_path / "again")
    again.labels.import_project(out, "hf")
    for before, after in zip(ids, [i for d in again.labels.dataset_names()
                                   for i in again.labels.dataset_items(d)["id"]], strict=True):
        assert before == after  # the same bytes, so the same ids
        assert sorted(map(str, again.labels.tags(after))) == sorted(map(str, library.labels.tags(before)))
        assert again.labels.objects(after)["points"].tolist() == library.labels.objects(before)["points"].tolist()


def test_a_supervisely_project_goes_to_hf_and_back(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    library.labels.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    ids = [i for d in library.labels.dataset_names() for i in library.labels.dataset_items(d)["id"]]
    out = library.export(ids, tmp_path / "out", "hf")
    back = datasets.load_from_disk(str(out))
    assert sorted(back) == ["animals", "vehicles"] and len(back["animals"]) == 3
    (tmp_path / "again").mkdir()
    again = Library(tmp_path / "again")
    again.labels.import_project(out, "hf")
    for before in ids:
        assert sorted(map(str, again.labels.tags(before))) == sorted(map(str, library.labels.tags(before)))
        kept = [(o["class"], o["geometry"], o["points"]) for o in again.labels.objects(before).to_dict("records")]
        assert kept == [(o["class"], o["geometry"], o["points"])
                        for o in library.labels.objects(before).to_dict("records")]


def test_images_stored_as_paths_stay_in_the_dataset_folder(library: Library, tmp_path: Path,
                                                           stamps_root: Path) -> None:
    secret = private_image(tmp_path, stamps_root)
    folder = tmp_path / "paths"
    files = stamp_files(stamps_root, ("food",), 2)
    (folder / "pictures").mkdir(parents=True)
    for f in files:
        shutil.copy2(f, folder / "pictures" / f.name)
    feature = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x"])})
    rows = {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "label": [0, 0]}
    datasets.Dataset.from_dict(rows, features=feature).save_to_disk(str(folder))
    with_image_paths(folder, [f"pictures/{f.name}" for f in files])
    library.labels.import_project(folder, "hf")
    assert sorted(Path(p).name for p in library.labels.dataset_items("paths/default")["path"]) == \
        sorted(f.name for f in files)

    (tmp_path / "victim").mkdir()
    victim = Library(tmp_path / "victim")
    for bad in (str(secret), "../private/secret.png"):
        target = tmp_path / f"bad{len(bad)}"
        rows = {"image": [{"bytes": files[0].read_bytes(), "path": "a.png"}], "label": [0]}
        datasets.Dataset.from_dict(rows, features=feature).save_to_disk(str(target))
        with_image_paths(target, [bad])
        with pytest.raises(PicsiftError, match=r"row 0.*(outside the project|'\.\.')"):
            victim.labels.import_project(target, "hf")
    assert library_contents(victim) == {} and victim.labels.dataset_names() == []


def with_image_paths(folder: Path, paths: list[str]) -> None:
    """Rewrite a saved dataset's image column as paths without bytes, as datasets stores images it did not embed
    (save_to_disk embeds the files it can read, so such a folder is written here with pyarrow)."""
    arrow = next(folder.glob("*.arrow"))
    with pa.ipc.open_stream(pa.BufferReader(arrow.read_bytes())) as reader:
        table = reader.read_all()
    column = table.schema.get_field_index("image")
    images = pa.array([{"bytes": None, "path": p} for p in paths], type=table.schema.field("image").type)
    table = table.set_column(column, table.schema.field("image"), images)
    with pa.ipc.new_stream(arrow, table.schema) as writer:
        writer.write_table(table)


def test_a_dataset_of_image_paths_under_the_library_is_indexed_in_place(tmp_path: Path, stamps_root: Path) -> None:
    root = tmp_path / "lib"
    folder = root / "hfdata"
    files = stamp_files(stamps_root, ("food",), 2)
    (folder / "pictures").mkdir(parents=True)
    for f in files:
        shutil.copy2(f, folder / "pictures" / f.name)
    feature = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})
    rows = {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "label": [0, 1]}
    datasets.Dataset.from_dict(rows, features=feature).save_to_disk(str(folder))
    library = Library(root)
    with pytest.raises(PicsiftError, match=r"bytes inside the dataset's files.*copy=True"):
        library.labels.import_project(folder, "hf", copy=False)
    with_image_paths(folder, [f"pictures/{f.name}" for f in files])
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    library.labels.import_project(folder, "hf", copy=False)
    assert sorted(library.labels.dataset_items("hfdata/default")["path"]) == before  # the files where they are
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == before  # and no copies
    tags = {Path(item.path).name: library.labels.tags(item.id)
            for item in library.labels.dataset_items("hfdata/default").itertuples()}
    assert tags == {files[0].name: [("label", "x")], files[1].name: [("label", "y")]}


def test_class_labels_survive_supervisely(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    source, _ = make_hf(tmp_path / "pets", stamps_root)
    library.labels.import_project(source, "hf")
    ids = list(library.labels.dataset_items("pets/default")["id"])
    out = library.export(ids, tmp_path / "sly", "supervisely")
    meta = json.loads((out / "meta.json").read_text())
    colour = next(t for t in meta["tags"] if t["name"] == "colour")
    assert (colour["value_type"], colour["values"]) == ("oneof_string", COLOURS)  # Supervisely's own fixed-values tag
    (tmp_path / "again").mkdir()
    again = Library(tmp_path / "again")
    again.labels.import_project(out, "supervisely")
    back = datasets.load_from_disk(str(again.export(ids, tmp_path / "hf", "hf")))
    assert back.features["colour"] == datasets.ClassLabel(names=COLOURS)


@pytest.mark.parametrize("attack", ["state", "dict", "link"])
def test_a_layout_naming_files_outside_is_refused(library: Library, tmp_path: Path, stamps_root: Path,
                                                  attack: str) -> None:
    source, _ = make_hf(tmp_path / "pets", stamps_root, splits=attack == "dict")
    outside = tmp_path / "elsewhere"
    if attack == "state":
        shutil.copytree(source, outside)
        state = json.loads((source / "state.json").read_text())
        state["_data_files"] = [{"filename": f"../elsewhere/{state['_data_files'][0]['filename']}"}]
        (source / "state.json").write_text(json.dumps(state))
    elif attack == "dict":
        (source / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "../elsewhere"]}))
    else:
        arrow = next(source.glob("*.arrow"))
        outside.mkdir()
        arrow.rename(outside / arrow.name)
        arrow.symlink_to(outside / arrow.name)
    with pytest.raises(PicsiftError, match=r"not a plain file name|outside the project") as caught:
        library.labels.import_project(source, "hf")
    assert str(source) in str(caught.value)
    assert library_contents(library) == {} and library.labels.dataset_names() == []


def test_errors_name_what_is_missing(library: Library, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PicsiftError, match=r"no state\.json"):
        library.labels.import_project(tmp_path / "empty", "hf")
    folder = tmp_path / "noimage"
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(folder))
    with pytest.raises(PicsiftError, match="no Image column; columns: text"):
        library.labels.import_project(folder, "hf")


@pytest.mark.parametrize("damage", ["state not json", "info not json", "features wrong", "arrow cut",
                                    "arrow garbage", "no data files", "image bytes not an image", "splits not list"])
def test_damaged_dataset_folders_are_clear_errors(library: Library, tmp_path: Path, stamps_root: Path,
                                                  damage: str) -> None:
    source, _ = make_hf(tmp_path / "pets", stamps_root, splits=damage == "splits not list")
    arrow = next(source.rglob("*.arrow"))
    if damage == "state not json":
        (source / "state.json").write_text("{" * 100_000)
    elif damage == "info not json":
        (source / "dataset_info.json").write_bytes(b"\xff\xfe{")
    elif damage == "features wrong":
        info = json.loads((source / "dataset_info.json").read_text())
        info["features"]["image"] = {"_type": "NoSuchFeature"}
        (source / "dataset_info.json").write_text(json.dumps(info))
    elif damage == "arrow cut":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    elif damage == "arrow garbage":
        arrow.write_bytes(b"\x00" * 4096)
    elif damage == "no data files":
        (source / "state.json").write_text(json.dumps({"_data_files": []}))
    elif damage == "image bytes not an image":
        feature = datasets.Features({"image": datasets.Image()})
        shutil.rmtree(source)
        datasets.Dataset.from_dict({"image": [{"bytes": b"not an image", "path": "x.png"}]},
                                   features=feature).save_to_disk(str(source))
    else:
        (source / "dataset_dict.json").write_text(json.dumps({"splits": "train"}))
    with pytest.raises(PicsiftError) as caught:
        library.labels.import_project(source, "hf")
    assert str(source) in str(caught.value)  # the error names the folder (and the row, for a row's problem)
    assert library_contents(library) == {} and library.labels.dataset_names() == []
