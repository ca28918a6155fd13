"""A workspace is untrusted input (issue 11): image folders are shared with their default workspace inside.

Nothing read from a workspace may run code, and nothing a workspace says may make picsift delete files it
did not write.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.projection import load_map, map_files, update_map


class WritesMarker:
    """Unpickling this creates ``path``: the proof that a load ran code from a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def plant_map(folder: Path, method: str, dims: int, marker: Path) -> None:
    """A crafted map that claims a huge fit and knows no ids (so every image must be placed by its model),
    and a pickled model that runs code, under the model file name of this release and of earlier ones."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{method}-{dims}d.npz", ids=np.zeros(0, "S32"), coords=np.zeros((0, dims), np.float32),
             version=0, fitted=10**9, centre=np.zeros(dims, np.float32), extent=1.0, token="t0ken")
    payload = pickle.dumps({"token": "t0ken", "model": WritesMarker(marker)}, protocol=5)
    for name in {map_files(folder, method, dims)[1].name, f"{method}-{dims}d.model.pkl"}:
        (folder / name).write_bytes(payload)


def test_crafted_pickles_in_the_workspace_never_run_when_the_app_opens(
    image_folder: Path, tiny_model: str, tmp_path: Path
) -> None:
    pytest.importorskip("anywidget")
    pytest.importorskip("umap")
    marker = tmp_path / "code-ran"
    with picsift.Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        maps = library.store.folder / "projections"
        ids = set(library.store.snapshot().ids.tolist())
    for method, dims in (("pca", 3), ("umap", 3)):
        plant_map(maps, method, dims, marker)

    app = picsift.app(image_folder, model=tiny_model, index="exact", update=False)
    explorer = app.explorer
    assert explorer is not None
    if explorer._job is not None:  # the saved UMAP map has images to place: it does so in a thread
        explorer._job.thread.join(timeout=300)
    app.library.close()

    assert not marker.exists(), "a pickle from the workspace was loaded"
    assert set(explorer.ids.tolist()) == ids and not explorer.error  # the maps were refitted instead
    for method in ("pca", "umap"):
        assert not (maps / f"{method}-3d.model.pkl").exists()  # a fresh fit drops the pickled model
        assert set(load_map(maps, method, 3).ids.tolist()) == ids  # type: ignore[union-attr]


def test_saved_maps_are_plain_arrays_that_load_without_pickle(tmp_path: Path) -> None:
    pytest.importorskip("umap")
    from picsift.store import StoreSnapshot

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(80, 16)).astype(np.float32)
    ids = np.array([f"{i:032x}" for i in range(80)], "<U32")
    for method in ("pca", "umap"):
        first = update_map(tmp_path, StoreSnapshot(ids[:60], np.arange(60), vectors, 1), method, 2, progress=False)
        for path in map_files(tmp_path, method, 2):
            assert not path.read_bytes().startswith(b"\x80")  # no pickle stream
            with np.load(path, allow_pickle=False) as data:  # every member loads with pickles refused
                assert all(data[name].dtype != object for name in data.files)
        # and the model read back from those arrays places new images, keeping the old ones where they were
        second = update_map(tmp_path, StoreSnapshot(ids, np.arange(80), vectors, 2), method, 2, progress=False)
        assert not second.refitted and second.added == 20
        np.testing.assert_array_equal(second.coords[:60], first.coords)


def test_the_umap_model_places_points_as_umap_transform_does() -> None:
    pytest.importorskip("umap")
    from picsift.projection_umap import UmapModel, fit_reducer

    centres = np.random.default_rng(0).normal(size=(6, 24))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, 340)
    vectors = centres[labels] + 0.25 * rng.normal(size=(340, 24))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    reducer = fit_reducer(vectors[:300], 2, seed=0)
    buffer = io.BytesIO()
    np.savez(buffer, **UmapModel.from_reducer(reducer).arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        model = UmapModel.from_arrays(data)
    ours, theirs = model.transform(vectors[300:]), reducer.transform(vectors[300:])
    # The same neighbours, weights and optimisation; UMAP seeds each point's random stream from the bits of its
    # start position, so float rounding in the distances makes the two differ a little, never by a cluster.
    spread = np.linalg.norm(reducer.embedding_ - reducer.embedding_.mean(axis=0), axis=1).mean()
    assert np.median(np.linalg.norm(ours - theirs, axis=1)) < 0.05 * spread
    nearest = np.linalg.norm(ours[:, None] - reducer.embedding_[None], axis=2).argmin(axis=1)
    assert np.mean(labels[:300][nearest] == labels[300:]) >= 0.95
