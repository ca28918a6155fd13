"""Imported labels pass the same checks as the Metadata API: a bad value is refused with the API's words, the
warning names the file and the image, and the rest of the project is imported."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from picsift import Library, PicsiftError

from .conftest import stamp_files
from .test_formats import make_coco, make_supervisely


def _edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _first_ann(project: Path, stamps_root: Path) -> Path:
    """The annotation file of the project's first animal: tags outdoor and colour=brown, one object."""
    return project / "animals" / "ann" / f"{stamp_files(stamps_root, ('animals',), 1)[0].name}.json"


def _nan_corner(data: Any) -> None:
    data["objects"][0]["points"]["exterior"][0][0] = float("nan")


def _map_colour(data: Any) -> None:
    data["tags"][1]["value"] = {"a": 1}


def _empty_object_tag(data: Any) -> None:
    data["objects"][0]["tags"][0]["name"] = " "


#: Each case breaks one label of a real Supervisely project: (the edit, what the API says, the bad value shown).
BAD_LABELS: list[tuple[str, Callable[[Any], None], str, str]] = [
    ("tag value a mapping", _map_colour,
     "tag 'colour' has the value {'a': 1}; a tag value is text, a finite number or nothing", "{'a': 1}"),
    ("NaN corner", _nan_corner, "a rectangle of class 'animal' needs at least 2 points of two finite numbers",
     "got [[nan, 2.0], "),
    ("object tag name blank", _empty_object_tag, "object of class 'animal': tag name ' ' is empty", "' '"),
]


@pytest.mark.parametrize(("case", "edit", "message", "value"), BAD_LABELS, ids=[c[0] for c in BAD_LABELS])
def test_a_bad_label_is_skipped_with_the_apis_words_and_the_rest_imports(
    tmp_path: Path, stamps_root: Path, caplog: pytest.LogCaptureFixture, case: str, edit: Callable[[Any], None],
    message: str, value: str,
) -> None:
    project = make_supervisely(tmp_path / "src", stamps_root)
    ann = _first_ann(project, stamps_root)
    _edit_json(ann, edit)
    (tmp_path / "lib").mkdir()
    library = Library(tmp_path / "lib")
    with caplog.at_level(logging.WARNING):
        assert library.labels.import_project(project, "supervisely") == ["zoo/animals", "zoo/vehicles"]
    image = ann.name.removesuffix(".json")
    warned = [r.getMessage() for r in caplog.records if message in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    assert warned[0].startswith(f"{ann}: image {image!r}: {message}") and warned[0].endswith("; skipped it")
    assert value in warned[0]  # the bad value itself
    meta = library.labels
    assert meta.datasets()["size"].tolist() == [3, 2]  # every image came in
    first = library.root / "zoo" / "animals" / image
    tags, objects = sorted(meta.tags(first)), meta.objects(first)
    if case == "tag value a mapping":
        assert tags == [("outdoor", None)] and len(objects) == 1  # the other tag and the object came in
    else:
        assert tags == [("colour", "brown"), ("outdoor", None)] and objects.empty  # its one object was skipped
    assert len(meta.objects()) == 2 + 3 + 2 + (1 if case == "tag value a mapping" else 0)


def test_the_api_refuses_what_the_import_skips(tmp_path: Path, stamps_root: Path) -> None:
    (tmp_path / "lib").mkdir()
    library = Library(tmp_path / "lib")
    meta = library.labels
    image = stamp_files(stamps_root, ("animals",), 1)[0]
    for call, message in (
        (lambda: meta.add_tag(image, "colour", {"a": 1}), BAD_LABELS[0][2]),
        (lambda: meta.add_tag(image, "size", float("inf")), "tag 'size' has the value inf"),
        (lambda: meta.add_tag(image, "size", 2**70), "tag 'size' has the value 1180591620717411303424"),
        (lambda: meta.add_object(image, "animal", bbox=(float("nan"), 0, 5, 5)), BAD_LABELS[1][2]),
        (lambda: meta.add_object(image, "animal", bbox=(0, 0, 5, 5), tags=[(" ", 4)]), BAD_LABELS[2][2]),
        (lambda: meta.add_object(image, "", bbox=(0, 0, 5, 5)), "object class '' is empty"),
        (lambda: meta.set_classes([(3, "rectangle", None)]), "class name 3 is not text"),  # type: ignore[list-item]
        (lambda: meta.set_status("review", [image], "done"), "job status 'done'; valid choices: pending"),
    ):
        with pytest.raises(PicsiftError, match=re.escape(message)):
            call()
    assert meta.tags(image) == [] and meta.objects().empty and meta.classes() == []  # nothing half-written
    meta.add_tag(image, "size", 2.5)
    meta.add_object(image, "animal", bbox=(0, 0, 5, 5), tags=[("legs", 4)])
    assert meta.tags(image) == [("size", 2.5)] and meta.objects()["tags"].tolist() == [[("legs", 4)]]


def test_bad_class_declarations_and_coco_tags_are_skipped_naming_their_file(
    tmp_path: Path, stamps_root: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    zoo = make_supervisely(tmp_path / "src", stamps_root)
    _edit_json(zoo / "meta.json", lambda d: d["classes"][0].update(title=3))
    kitchen = make_coco(tmp_path / "src", stamps_root)
    train = kitchen / "annotations" / "instances_train.json"
    _edit_json(train, lambda d: d["images"][1].update(tags=[{"name": "ripe", "value": [1, 2]},
                                                            {"name": "ripe", "value": "yes"}]))
    (tmp_path / "lib").mkdir()
    library = Library(tmp_path / "lib")
    with caplog.at_level(logging.WARNING):
        library.labels.import_project(zoo, "supervisely")
        library.labels.import_project(kitchen, "coco")
    messages = [r.getMessage() for r in caplog.records]
    assert f"{zoo / 'meta.json'}: class name 3 is not text; skipped it" in messages
    second = json.loads(train.read_text())["images"][1]["file_name"]
    assert (f"{train}: image {second!r}: tag 'ripe' has the value [1, 2]; "
            "a tag value is text, a finite number or nothing; skipped it") in messages
    meta = library.labels
    assert meta.tags(library.root / "kitchen" / "train" / second) == [("ripe", "yes")]
    assert [c for c in meta.classes() if c[0] == "animal"] == [("animal", "any", None)]  # seen on objects only
    assert len(meta.objects()) == 1 + 2 + 3 + 2 + 3 + 1
