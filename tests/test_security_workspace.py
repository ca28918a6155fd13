"""A workspace is untrusted input (issue 11): image folders are shared with their default workspace inside.

Nothing read from a workspace may run code, and nothing a workspace says may make picsift delete files it
did not write.
"""

from __future__ import annotations

import io
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.analysis.projection import load_map, map_files, update_map

from . import fast_python


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
    from picsift.core.store import StoreSnapshot

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
    from picsift.analysis.projection_umap import UmapModel, fit_reducer

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


# -- video frames: picsift deletes only the frame files it wrote -------------------------------------------------
def user_jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (32, 24), "orange").save(path, "JPEG")
    return path


def video_folder(root: Path, stamps_root: Path) -> Path:
    """An image folder with one short real video and three images."""
    from .conftest import stamp_files
    from .test_video import picture, write_video

    root.mkdir(parents=True)
    for path in stamp_files(stamps_root, ("food",), 3):
        shutil.copy2(path, root / path.name)
    (first,), (second,) = (stamp_files(stamps_root, (c,), 1) for c in ("animals", "vehicles"))
    write_video(root / "clip.mp4", [(picture(first), 3), (picture(second), 3)])
    return root


def test_a_workspace_that_is_or_holds_the_image_folder_is_refused(
    tmp_path: Path, stamps_root: Path, tiny_model: str
) -> None:
    pytest.importorskip("av")
    root = video_folder(tmp_path / "photos", stamps_root)
    mine = [user_jpeg(root / "frames" / "0123456789abcdef" / "000000000.jpg"),
            user_jpeg(tmp_path / "frames" / "2019" / "beach.jpg")]
    with pytest.raises(picsift.PicsiftError, match="is the image folder"):
        picsift.Library(root, workspace=root, model=tiny_model)
    with pytest.raises(picsift.PicsiftError, match=f"holds the image folder {root}"):
        picsift.Library(root, workspace=tmp_path, model=tiny_model)
    cli = fast_python.run([sys.executable, "-m", "picsift", "update", str(root), "--workspace", str(root),
                           "--model", tiny_model], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and "needs a folder of its own" in cli.stderr
    assert all(path.exists() for path in mine)


def test_the_frame_cache_deletes_only_the_frames_picsift_wrote(
    tmp_path: Path, stamps_root: Path, tiny_model: str
) -> None:
    pytest.importorskip("av")
    root = video_folder(tmp_path / "photos", stamps_root)
    workspace = tmp_path / "work"  # a folder of the user's, already holding JPEGs under frames/
    mine = [user_jpeg(workspace / "frames" / "0123456789abcdef" / "000001000.jpg"),
            user_jpeg(workspace / "frames" / "holiday" / "beach.jpg"), user_jpeg(tmp_path / "precious.jpg")]
    with picsift.Library(root, workspace=workspace, model=tiny_model) as library:
        # A shared workspace may claim anything: a vanished video whose "frame" is a photo of the user's.
        with library.catalog.transaction() as db:
            db.execute("INSERT INTO videos VALUES ('ghost.mp4', 1, 1, NULL, '{}', 1.0, NULL, 0)")
            db.execute("INSERT INTO video_frames VALUES (?, ?, 'ghost.mp4', 0.0)", ("0" * 32, str(mine[2])))
            db.execute("INSERT INTO files VALUES (?, 1, 1, ?, 1, 1, NULL, 0)", (str(mine[2]), "0" * 32))
        report = library.update(progress=False)
        assert report.frames > 0 and report.removed == 1  # the ghost video is forgotten...
        assert all(path.exists() for path in mine)  # ...without deleting what picsift did not write
        frames = library.videos.frames()["path"].tolist()
        assert frames and all(Path(p).is_file() for p in frames)

        (root / "clip.mp4").unlink()  # the video's own frames do go with it
        assert library.update(progress=False).removed == 1
        assert not any(Path(p).exists() for p in frames) and library.videos.frames().empty
        assert all(path.exists() for path in mine)


def test_a_checkpoint_named_by_a_shared_workspace_is_loaded_as_weights_only(
    tmp_path: Path, image_folder: Path, tiny_model: str
) -> None:
    import torch

    from picsift.core.catalog import WORKSPACE_DIRNAME, Catalog

    marker = tmp_path / "code-ran"
    config = tiny_model.rsplit(":", 1)[0]
    weights = image_folder / "weights.pt"  # travels with the shared folder, and so does the workspace naming it
    torch.save({"state_dict": WritesMarker(marker)}, weights)
    with Catalog(image_folder / WORKSPACE_DIRNAME / "catalog.sqlite") as catalog:
        catalog.set_meta("model", f"{config}:{weights}")
    with picsift.Library(image_folder) as library, pytest.raises(picsift.errors.UnnamedModelError, match="--model"):
        library.update(progress=False)  # a checkpoint the workspace names is never loaded unless named
    assert not marker.exists()
    # named (the user trusts it), it is still loaded as weights only
    with picsift.Library(image_folder, model=f"{config}:{weights}") as library, \
            pytest.raises(ValueError, match="weights only") as error:
        library.update(progress=False)
    assert str(weights) in str(error.value)
    assert not marker.exists()


def test_cached_thumbnails_that_are_pipes_or_devices_are_made_again(tmp_path: Path, image_folder: Path) -> None:
    import os
    import threading

    from picsift.widgets._thumbnails import THUMBNAIL_SIZE, ThumbnailCache

    images = sorted(image_folder.rglob("*.png"))[:2]
    cached = tmp_path / "thumbnails" / str(THUMBNAIL_SIZE)
    cached.mkdir(parents=True)
    os.mkfifo(cached / f"{'a' * 32}.webp")  # opening it would wait for a writer forever
    (cached / f"{'b' * 32}.webp").symlink_to("/dev/zero")  # reading it would never end
    cache = ThumbnailCache(tmp_path / "thumbnails")
    got: dict[str, bytes] = {}

    def fetch() -> None:
        for image_id, path in zip(("a" * 32, "b" * 32), images, strict=True):
            got[image_id] = cache.get(image_id, path)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "reading a cached thumbnail blocked"
    assert all(data[:4] == b"RIFF" and data[8:12] == b"WEBP" for data in got.values()) and len(got) == 2


# -- qdrant's local mode pickles its points: picsift opens only a folder it signed ---------------------------------
def test_a_crafted_local_qdrant_index_in_the_workspace_never_runs(
    tmp_path: Path, image_folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("qdrant_client")
    import sqlite3

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # this user's secret
    marker = tmp_path / "code-ran"
    with picsift.Library(image_folder, model=tiny_model, index="qdrant") as library:
        library.update(progress=False)
        ids = set(library.store.snapshot().ids.tolist())
        storage = next((library.store.folder / "qdrant").rglob("storage.sqlite"))
    with picsift.Library(image_folder, model=tiny_model) as library:  # a clean reopen uses the signed index as it is
        assert library.index.ids() == ids and not marker.exists()
    assert "rebuilding it" not in caplog.text

    with sqlite3.connect(storage) as db:  # as a shared workspace may hold it
        db.execute("INSERT INTO points (id, point) VALUES (?, ?)", ("crafted", pickle.dumps(WritesMarker(marker))))
    with picsift.Library(image_folder, model=tiny_model) as library:  # the workspace's meta picks qdrant
        assert library.index_name == "qdrant"
        assert library.index.ids() == ids and "rebuilding it" in caplog.text  # from the embedding store
        assert len(library.search("a cat", limit=5)) == 5
    assert not marker.exists(), "a pickle from the workspace's qdrant folder was loaded"


def test_signatures_are_per_user_and_the_secret_stays_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from picsift import signing

    folder = tmp_path / "index"
    (folder / "collection").mkdir(parents=True)
    (folder / "collection" / "storage.sqlite").write_bytes(b"points")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "alice"))
    signing.sign_folder(folder)
    assert signing.verify_folder(folder)
    secret = tmp_path / "alice" / "picsift" / "secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == signing.SECRET_BYTES

    (folder / "collection" / "storage.sqlite").write_bytes(b"points, changed")
    assert not signing.verify_folder(folder)  # any change breaks it
    signing.sign_folder(folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "mallory"))
    assert not signing.verify_folder(folder)  # another user's signature is worth nothing here
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "alice"))
    (folder / "collection" / "extra").symlink_to("/etc/passwd")
    assert not signing.verify_folder(folder)  # links are never picsift's
