"""What every widget shares (picsift.widgets._base): callbacks by event, the id <-> position selection sync,
and front-ends read from the built files (so a rebuilt front-end reaches a running kernel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("anywidget")
from anywidget._file_contents import FileContents

from picsift import Library
from picsift.widgets import Explorer, Gallery, PromptBox, Sampler
from picsift.widgets._base import STATIC


def test_on_registers_callbacks_by_event_and_names_the_valid_ones() -> None:
    gallery = Gallery(None)
    got: list[tuple[str, list[str]]] = []
    gallery.on("action", lambda action, ids, _content: got.append((action, ids)))
    gallery.show(["a", "b", "c"])
    gallery.selection = ["b"]
    gallery._dispatch(gallery, {"type": "find_similar"}, [])
    assert got == [("find_similar", ["b"])] and not gallery.error
    with pytest.raises(ValueError, match="no event 'submit'; valid events: action, select, show"):
        gallery.on("submit", print)
    with pytest.raises(ValueError, match="no event 'pick'; valid events: submit"):
        PromptBox().on("pick", print)
    with pytest.raises(ValueError, match="valid events: sample"):
        Sampler().on("done", print)


def test_gallery_and_explorer_share_one_selection_sync() -> None:
    gallery = Gallery(None)
    gallery.show(["a", "b", "c", "d"], np.array([0.1, 0.9, 0.5, 0.7], np.float32))  # shown b, d, c, a
    seen: list[list[int]] = []
    gallery.on("select", lambda positions: seen.append(positions.tolist()))
    gallery.selection = ["a", "d", "zzz"]  # ids -> display positions (unknown ids dropped)
    assert gallery._selected.tolist() == [1, 3] and gallery.selected_indices.tolist() == [1, 3]
    gallery._selected = np.array([2, 0, 2, 9], np.int32)  # positions (as the browser sends) -> ids, in order
    assert gallery.selection == ["b", "c"] and seen[-1] == [0, 2]
    gallery.show(["c", "b"])  # new rows keep the selected ids that are still shown
    assert gallery.selection == ["b", "c"] and gallery._selected.tolist() == [0, 1]

    explorer = Explorer(points=np.zeros((4, 2)), ids=["a", "b", "c", "d"])
    explorer.selection = ["d", "a"]
    assert explorer.selected_indices.tolist() == [0, 3]
    heard: list[list[int]] = []
    explorer.on("select", lambda positions: heard.append(positions.tolist()))
    explorer.select_indices([2, 1, 2])  # as from the browser: sorted, unique, ids built when read
    assert heard == [[1, 2]] and explorer.selection == ["b", "c"]
    explorer.off("select", heard.append)  # not registered: nothing happens
    explorer.off("select", explorer._callbacks["select"][0])
    explorer.select_indices(None)
    assert heard == [[1, 2]] and explorer.selection == []
    explorer.set_points(np.zeros((2, 2)), ids=["d", "a"])  # new points: the id -> position index is rebuilt
    explorer.selection = ["a"]
    assert explorer.selected_indices.tolist() == [1]


def test_front_ends_are_read_from_the_built_files() -> None:
    if not (STATIC / "gallery.js").is_file():
        pytest.skip("the front-ends are not built (npm run build)")
    esm = Gallery.__dict__["_esm"]
    assert isinstance(esm, FileContents) and Path(esm._path) == (STATIC / "gallery.js").absolute()
    assert isinstance(Gallery.__dict__["_css"], FileContents)
    gallery = Gallery(None)
    assert gallery._esm == (STATIC / "gallery.js").read_text(encoding="utf-8")
    esm.changed.emit("export default {};")  # what anywidget's watcher does when the file is rebuilt
    assert gallery._esm == "export default {};"


def test_library_maps_and_clusters(library_folder: Library) -> None:
    lib = library_folder
    shown, finish_umap = lib.maps.best(dims=2)
    ids = lib.store.snapshot().ids
    assert shown.method == "pca" and not finish_umap and shown.coords.shape == (len(ids), 2)
    assert np.array_equal(shown.ids, ids) and lib.maps.missing("umap", 2) is None
    assert (lib.maps.folder / "pca-2d.npz").is_file()  # saved in the model's projections folder
    labels = lib.clusters()
    assert labels is not None and labels.dtype == np.int32 and len(labels) == len(ids) and len(set(labels)) > 1
    assert np.array_equal(lib.clusters(ids=ids), labels) and np.array_equal(lib.clusters(seed=0), labels)
    assert len(lib.clusters(2, ids=ids[::2])) == len(ids[::2]) and set(lib.clusters(2, ids=ids[::2])) == {0, 1}
    with pytest.raises(KeyError, match="'nope' is not embedded"):
        lib.clusters(ids=["nope"])
    assert lib.clusters(ids=ids[:1]) is None  # one image: nothing to cluster


@pytest.fixture
def library_folder(image_folder: Path, tiny_model: str) -> Library:
    lib = Library(image_folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    return lib
