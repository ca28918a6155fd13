"""Object sets in the widgets: the gallery shows an object as its crop and opens its image with every box drawn;
the app finds objects like selected objects; the explorer maps objects. Messages as the front-end gets them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.core.objects import crop_region
from picsift.widgets import App, Gallery, object_explorer
from picsift.widgets._source import ImageSource

from .test_object_sets import objects_library  # noqa: F401  (the fixtures)
from .test_objects import coco_library  # noqa: F401
from .test_widgets import Sent, message


def webp(data: bytes) -> Image.Image:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_the_gallery_shows_an_object_as_its_crop_and_opens_its_image_with_every_box(
        objects_library: Library) -> None:  # noqa: F811
    lib = objects_library
    found = lib.search("a cup", objects=True, limit=None)
    gallery = Gallery(ImageSource(lib))
    sent = Sent(gallery)
    gallery.show(found.ids, found.result_scores, "a cup")
    message(gallery, {"type": "thumbnails", "request_id": "t", "indices": list(range(len(found)))})
    content, buffers = sent.last("thumbnails")
    rows = found.df.set_index("id")
    for key, name, data in zip(content["ids"], content["names"], buffers, strict=True):
        row = rows.loc[key]
        with Image.open(row["path"]) as picture:
            left, top, right, bottom = crop_region(tuple(row["box"]), *picture.size)
        thumbnail = webp(data)
        assert name == f"{row['class']} · {Path(row['path']).name}"
        assert thumbnail.size == (right - left, bottom - top)  # the crop (these are under 160 px), not the image
    # a click: the whole image, with its boxes drawn, the clicked one highlighted
    cup = next(i for i, key in enumerate(content["ids"]) if rows.loc[key, "class"] == "cup")
    message(gallery, {"type": "detail", "request_id": "d", "index": cup})
    content, buffers = sent.last("detail")
    meta, row = content["meta"], rows.loc[gallery.ids[cup]]
    assert meta["class"] == "cup" and meta["box"] == row["box"] and meta["image_id"] == row["image_id"]
    labelled = lib.labels.objects(row["image_id"])
    assert sorted(o.split(" [")[0] for o in meta["objects"].split("; ")) == sorted(labelled["class"])
    shown = webp(buffers[0])
    assert shown.size == (meta["width"], meta["height"])  # the whole picture (these are under 640 px)
    x, y, w, _ = (round(v) for v in row["box"])
    edge = np.asarray(shown)[y, x + w // 2].astype(int)  # the middle of the cup box's top edge
    assert abs(edge - [255, 200, 0]).max() < 60, edge  # drawn in the highlight colour
    # the gallery's table names each object's image
    assert gallery.to_pandas()["path"].tolist() == [rows.loc[i, "path"] for i in gallery.ids]


def test_the_app_shows_an_object_set_and_finds_objects_like_the_selected_ones(
        objects_library: Library) -> None:  # noqa: F811
    lib = objects_library
    panel = App(lib, update=False, explorer=False)
    message(panel.prompt, {"type": "submit", "text": "a cup", "limit": 100, "mode": "objects"})  # the mode menu
    assert panel.prompt.error == "" and panel.results is not None and panel.results.query["objects"] is True
    assert len(panel.gallery.ids) == 6 and set(panel.gallery.ids) == set(lib.search("a cup", objects=True).ids)
    panel.gallery.selection = panel.gallery.ids[:1].tolist()
    message(panel.gallery, {"type": "find_similar"})
    assert panel.gallery.error == "" and panel.results is not None
    assert panel.results.query["objects"] is True and panel.results.df["class"].notna().all()
    assert panel.results.ids[0] == panel.gallery.selection[0]  # an object is most like itself


def test_the_explorer_maps_objects_coloured_by_class(objects_library: Library) -> None:  # noqa: F811
    lib = objects_library
    explorer = object_explorer(lib)
    frame = explorer.data
    assert frame is not None and len(frame) == 6 and set(frame["class"]) == {"fruit", "plate", "cup"}
    assert explorer.color_by == "class" and explorer.ids.tolist() == frame["id"].tolist()
    store = lib._engine.object_store(create=False)
    assert store is not None and set(frame["id"]) == set(store.snapshot().ids.tolist())
    assert all(lib.labels.image_id(p) == i for p, i in zip(frame["path"], frame["image_id"], strict=True))
    cups = lib.search("a cup", objects=True, limit=None).df.query("`class` == 'cup'")
    assert set(object_explorer(lib, lib.search("x", objects=True, limit=None).head(2), dims=3).data["id"]) == set(
        lib.search("x", objects=True, limit=None).ids[:2])
    explorer.selection = cups["id"].tolist()
    similar = lib.similar(explorer.selection, objects=True, limit=2)
    assert set(similar.ids) == set(cups["id"])  # each cup is the nearest to itself


def test_an_explorer_of_objects_before_any_is_embedded_says_what_to_do(
        coco_library: Library) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="run update"):
        object_explorer(coco_library)
