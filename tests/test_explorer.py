"""The explorer on a user's own data and on a library: colours, bytes sent, selection, tooltips, links, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import traitlets

pytest.importorskip("anywidget")

from picsift import Library
from picsift.widgets import Explorer, Gallery, link
from picsift.widgets._map_data import MISSING_STEP, column_colors
from picsift.widgets._protocol import array_to_json
from picsift.widgets._selection import selection_from_json, selection_to_json
from picsift.widgets._source import ImageSource

from .test_widgets import Sent, message


@pytest.fixture
def library(image_folder: Path, tiny_model: str) -> Library:
    lib = Library(image_folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    return lib


def iris_like(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = np.array(["setosa", "versicolor", "virginica"])[np.arange(n) % 3]
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n), "species": kind,
                         "petal": rng.uniform(0.5, 2.0, n), "flag": np.arange(n) % 2 == 0,
                         "grade": np.arange(n) % 4, "count": np.arange(n) * 10},
                        index=[f"row{i}" for i in range(n)])


def from_browser(widget: Any, name: str, array: np.ndarray) -> None:
    """Set an array trait the way the front-end does (a binary buffer through set_state)."""
    state = array_to_json(array)
    assert state is not None
    widget.set_state({name: {**state, "view": memoryview(bytes(state["view"]))}})


def test_dataframe_colours_have_names_counts_and_a_colour_bar() -> None:
    df = iris_like()
    e = Explorer(data=df, x="x", y="y", color_by="species")
    assert e.dims == 2 and e._points.shape == (60, 2) and e._own_points and e.projection == ""
    assert e._color_choices == ["none", "x", "y", "species", "petal", "flag", "grade", "count"]
    assert e._color_kind == "category" and e._colors.dtype == np.uint8
    assert e._legend == ["setosa (20)", "versicolor (20)", "virginica (20)"]
    assert [e._legend[c].split(" ")[0] for c in e._colors[:3]] == ["setosa", "versicolor", "virginica"]
    e.color_by = "petal"  # numbers: a colour bar over their range
    assert e._color_kind == "continuous" and e._colors.dtype == np.uint16 and e._color_label == "petal"
    assert e._color_span == pytest.approx([df.petal.min(), df.petal.max()])
    lowest, highest = int(df.petal.argmin()), int(df.petal.argmax())
    assert e._colors[lowest] == 0 and e._colors[highest] == MISSING_STEP - 1
    e.color_by = "flag"
    assert e._legend == ["False (30)", "True (30)"]
    e.color_by = "grade"  # few integers read as categories, many as numbers
    assert e._color_kind == "category" and len(e._legend) == 4
    e.color_by = "count"
    assert e._color_kind == "continuous"
    with pytest.raises(traitlets.TraitError, match=r"color_by='folder'; valid choices: none, x, y, species"):
        e.color_by = "folder"


def test_missing_values_are_grey_and_counted() -> None:
    values = pd.Series([1.0, np.nan, 3.0, np.nan])
    colors = column_colors(values, "v")
    assert colors.codes.tolist() == [0, MISSING_STEP, MISSING_STEP - 1, MISSING_STEP]
    assert colors.legend == ["(no value) (2)"] and colors.span == (1.0, 3.0)
    labels = column_colors(pd.Series(["a", None, "a"]), "k")
    assert labels.legend == ["a (2)", *[""] * 8, "(no value) (1)"] and labels.codes.tolist() == [0, 9, 0]


def test_bad_dataframe_columns_are_named() -> None:
    df = iris_like()
    with pytest.raises(KeyError, match=r"no column 'z'.*columns: x, y, species"):
        Explorer(data=df, x="x", y="z")
    with pytest.raises(ValueError, match="must hold numbers"):
        Explorer(data=df, x="x", y="species")
    holes = df.assign(y=df.y.where(df.index != "row3"))
    with pytest.raises(ValueError, match=r"1 rows have a missing or infinite coordinate.*row 3"):
        Explorer(data=holes, x="x", y="y")
    with pytest.raises(traitlets.TraitError, match="tooltip field 'nope'"):
        Explorer(data=df, x="x", y="y", tooltip=["nope"])


def test_a_million_2d_points_cross_in_5_mb_within_half_a_step_of_their_place() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    points = rng.normal(size=(n, 2)).astype(np.float32)
    e = Explorer(points=points, clusters=rng.integers(0, 8, n))
    sent = sum(array_to_json(getattr(e, name))["view"].nbytes for name in ("_points", "_colors"))
    assert sent == 5 * n  # uint16 x, y steps between the bounds and a uint8 category slot per point
    assert e._legend[:2] == ["cluster 0", "cluster 1"]
    (lo, hi), steps = np.array(e._points_bounds), e._points.astype(np.float64)
    step = (hi - lo) / 65535
    back = lo + steps * step  # what the browser draws (js/explorer/points.js)
    assert (np.abs(back - points) <= step / 2 * 1.0001).all()  # the browser caps the zoom at half a pixel per half step
    assert np.array_equal(e.selected_indices, np.zeros(0, np.int32)) and len(e.ids) == n


def test_small_maps_keep_float32_points() -> None:
    e = Explorer(points=np.random.default_rng(0).normal(size=(1000, 2)))
    assert e._points.dtype == np.float32 and e._points_bounds == []


def test_exact_coordinates_of_quantised_points_come_on_request() -> None:
    points = np.random.default_rng(1).normal(size=(200_000, 2)).astype(np.float32)
    e = Explorer(points=points)
    assert e._points.dtype == np.uint16
    sent = Sent(e)
    message(e, {"type": "coordinates", "request_id": "c1", "indices": [5, 199_999, 0]})
    content, buffers = sent.last("coordinates")
    assert content["indices"] == [5, 199_999, 0] and content["request_id"] == "c1"
    assert np.array_equal(np.frombuffer(buffers[0], np.float32).reshape(-1, 2), points[[5, 199_999, 0]])
    message(e, {"type": "coordinates", "request_id": "c2", "indices": [200_000]})
    assert "out of range" in sent.last("error")[0]["message"] and sent.last("error")[0]["request_id"] == "c2"


def test_thumbnails_on_the_map_need_an_image_column_or_a_library(image_folder: Path) -> None:
    paths = [str(p) for p in sorted(image_folder.rglob("*.png"))[:2]]
    df = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0], "path": paths})
    assert Explorer(data=df, x="x", y="y", image="path")._has_images
    assert not Explorer(data=df, x="x", y="y")._has_images
    assert not Explorer(points=np.zeros((3, 2)))._has_images
    e = Explorer(data=df, x="x", y="y", image="path")
    e.set_points(np.zeros((3, 2)))  # bare points replace the DataFrame: no images behind them
    assert not e._has_images and e.map_thumbnails


def test_given_points_have_no_umap_and_keep_their_dimension() -> None:
    e = Explorer(points=np.random.default_rng(0).random((50, 2)))
    assert e._own_points and e.projection == "" and e.dims == 2 and e._color_choices == ["none"]
    with pytest.raises(traitlets.TraitError, match="dims=3: this explorer shows the given 2D points"):
        e.dims = 3
    with pytest.raises(ValueError, match="no UMAP to compute"):
        e.compute_umap()
    named = Explorer(points=np.zeros((4, 3)), clusters=np.array(["cat", "dog", "cat", "cat"]))
    assert named.dims == 3 and named._legend == ["cat (3)", "dog (1)"]  # names, not "cluster 0"


def test_a_selection_from_the_browser_builds_ids_only_when_asked() -> None:
    df = iris_like()
    e = Explorer(data=df, x="x", y="y")
    seen: list[np.ndarray] = []
    e.on_select(seen.append)
    from_browser(e, "_selected", np.array([7, 3, 3, 500, -1], np.int32))
    assert e.selected_indices.tolist() == [3, 7] and seen[-1].tolist() == [3, 7]
    assert "selection" not in e._trait_values  # no ids built yet
    assert e.selection == ["row3", "row7"]
    assert e.selected_frame().index.tolist() == ["row3", "row7"]
    gallery_like = Gallery(None)  # someone listens: the ids are built when the positions arrive
    link(e, gallery_like)
    from_browser(e, "_selected", np.array([1], np.int32))
    assert gallery_like.selection == ["row1"] and e._trait_values["selection"] == ["row1"]
    e.selection = ["row9", "unknown"]  # from Python: to positions for the browser
    assert e._selected.tolist() == [9] and e.selected_indices.tolist() == [9]


def test_a_big_selection_crosses_as_a_bit_per_point() -> None:
    n = 100_000
    e = Explorer(points=np.random.default_rng(0).random((n, 2)).astype(np.float32))
    positions = np.arange(0, n, 3, dtype=np.int32)  # 33k points: 133 kB as int32, 12.5 kB as bits
    state = selection_to_json(positions, e)
    assert state is not None and state["bits"] == n and state["view"].nbytes == n // 8
    assert selection_from_json({**state, "view": memoryview(bytes(state["view"]))}).tolist() == positions.tolist()
    few = selection_to_json(np.array([5, 7], np.int32), e)
    assert few is not None and few["dtype"] == "int32" and few["view"].nbytes == 8
    from_browser_bits = {**state, "view": memoryview(bytes(state["view"]))}
    e.set_state({"_selected": from_browser_bits})  # what the front-end sends for a big lasso
    assert e.selected_indices.tolist() == positions.tolist()
    with pytest.raises(TypeError, match="int32 positions or bits"):
        selection_from_json({"view": b"\0\0", "dtype": "uint16"})


def test_linked_explorers_share_positions_and_unlink() -> None:
    df = iris_like()
    a = Explorer(data=df, x="x", y="y", color_by="species")
    b = Explorer(data=df, x="x", y="petal")
    linked = link(a, b)
    a.select_category(1)
    assert b.selected_indices.tolist() == list(range(1, 60, 3))
    from_browser(b, "_selected", np.array([0, 1], np.int32))
    assert a.selected_indices.tolist() == [0, 1]
    linked.unlink()
    from_browser(b, "_selected", np.array([5], np.int32))
    assert a.selected_indices.tolist() == [0, 1]
    other = Explorer(data=df.iloc[:10], x="x", y="y")  # other points: linked by id
    link(a, other)
    a.selection = ["row2", "row40"]
    assert other.selection == ["row2", "row40"] and other.selected_indices.tolist() == [2]
    with pytest.raises(TypeError, match="needs at least one Explorer"):
        link(Gallery(None), Gallery(None))


def test_zoom_to_and_reset_view_send_bounds() -> None:
    df = iris_like()
    e = Explorer(data=df, x="x", y="y")
    sent = Sent(e)
    e.zoom_to(["row1", "row2"])
    bounds = sent.last("fit")[0]["bounds"]
    assert bounds[0] == pytest.approx([df.x.iloc[1:3].min(), df.y.iloc[1:3].min()])
    assert bounds[1] == pytest.approx([df.x.iloc[1:3].max(), df.y.iloc[1:3].max()])
    e.reset_view()
    assert sent.last("fit")[0]["bounds"] is None
    with pytest.raises(ValueError, match="nothing to zoom to"):
        e.zoom_to()


def test_tooltips_show_fields_and_never_an_error_without_a_source(image_folder: Path) -> None:
    bare = Explorer(points=np.array([[0.5, 1.25], [2.0, 3.0]]))
    sent = Sent(bare)
    message(bare, {"type": "thumbnails", "request_id": "t1", "indices": [1]})
    content, buffers = sent.last("thumbnails")
    assert bare.error == "" and content["names"] == ["1"] and buffers == [b""]
    assert content["fields"] == [[["x", "2"], ["y", "3"]]]
    images = sorted(image_folder.rglob("*.png"))[:3]
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.5], "path": [str(p) for p in images],
                       "size": [1234567.0, 2.5, None]})
    df.loc[2, "path"] = str(image_folder / "gone.png")
    e = Explorer(data=df, x="x", y="y", tooltip=["size"], image="path")
    sent = Sent(e)
    message(e, {"type": "thumbnails", "request_id": "t2", "indices": [0, 1, 2]})
    content, buffers = sent.last("thumbnails")
    assert content["fields"] == [[["size", "1,234,567"]], [["size", "2.5"]], [["size", "–"]]]
    assert buffers[0][:4] == b"RIFF" and buffers[1][8:12] == b"WEBP" and buffers[2] == b""  # a missing file
    assert e.error == ""


def test_library_map_tooltips_selection_export_and_collection(library: Library) -> None:
    e = Explorer(ImageSource(library), color_by="folder")
    assert not e._own_points and e.projection == "pca" and e._colors.dtype == np.uint8
    e.set_scores(np.linspace(0, 1, 24).astype(np.float32))
    assert e._color_kind == "continuous" and e._color_label == "score" and e._colors.dtype == np.uint16
    sent = Sent(e)
    message(e, {"type": "thumbnails", "request_id": "t", "indices": [4]})
    content, buffers = sent.last("thumbnails")
    folder = Path(library.paths([str(e.ids[4])])[str(e.ids[4])]).parent.name
    assert content["fields"][0][:2] == [["folder", folder], ["score", f"{4 / 23:.4g}"]]
    assert buffers[0][:4] == b"RIFF"
    from_browser(e, "_selected", np.array([0, 5], np.int32))
    frame = e.selected_frame()
    assert frame["id"].tolist() == e.ids[[0, 5]].tolist() and list(frame.columns) == ["id", "path", "x", "y", "z",
                                                                                          "score"]
    message(e, {"type": "export"})
    assert e.exported is not None and len(e.exported) == 2 and sent.last("notice")[0]["message"].startswith("2 rows")
    collection = e.export_selection("picked")
    assert sorted(collection["id"]) == sorted(e.ids[[0, 5]]) and "picked" in library.collections.names()
