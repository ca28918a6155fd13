"""The one way picsift touches workspace files (issue 20): no link followed, new files by O_EXCL + rename, bounded
reads that never block, names checked before they become paths."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from picsift.workspace_files import (
    IMAGE_ID,
    UnsafeWorkspaceFileError,
    WorkspaceFiles,
    checked_name,
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    return target


@pytest.fixture
def files(tmp_path: Path) -> WorkspaceFiles:
    (tmp_path / "ws").mkdir()
    return WorkspaceFiles(tmp_path / "ws")


def test_a_write_replaces_a_planted_link_instead_of_writing_through_it(files: WorkspaceFiles, outside: Path) -> None:
    (files.root / "state.json").symlink_to(outside)
    files.write_json("state.json", {"version": 1})
    assert outside.read_text() == "precious"
    assert not (files.root / "state.json").is_symlink()
    assert files.read_json("state.json") == {"version": 1}


def test_a_write_replaces_a_planted_hard_link(files: WorkspaceFiles, outside: Path) -> None:
    os.link(outside, files.root / "meta.json")
    files.write_bytes("meta.json", b"{}")
    assert outside.read_text() == "precious"


def test_a_folder_on_the_way_that_is_a_link_is_never_entered(files: WorkspaceFiles, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "meta.json").write_text("{}")
    (files.root / "models").symlink_to(elsewhere)
    with pytest.raises(UnsafeWorkspaceFileError, match="link"):
        files.read_json("models/meta.json")
    assert files.list("models") == [] and not files.exists("models/meta.json")
    files.write_bytes("models/m/vectors-0.f16", b"x")  # a write replaces the link with a folder of its own
    assert not (files.root / "models").is_symlink() and files.read_bytes("models/m/vectors-0.f16", 10) == b"x"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["meta.json"]


def test_reads_refuse_links_pipes_devices_hard_links_and_oversized_files(
    files: WorkspaceFiles, outside: Path
) -> None:
    (files.root / "link.json").symlink_to(outside)
    os.mkfifo(files.root / "pipe.json")
    (files.root / "zero.json").symlink_to("/dev/zero")
    os.link(outside, files.root / "hard.json")
    (files.root / "huge.bin").write_bytes(b"x" * 2000)
    done = threading.Event()

    def read_all() -> None:
        for name in ("link.json", "pipe.json", "zero.json", "hard.json"):
            with pytest.raises(UnsafeWorkspaceFileError):
                files.read_bytes(name, 1000)
        with pytest.raises(UnsafeWorkspaceFileError, match="more than"):
            files.read_bytes("huge.bin", 1000)
        done.set()

    worker = threading.Thread(target=read_all, daemon=True)
    worker.start()
    worker.join(10)
    assert done.is_set(), "a read blocked (a named pipe must never be waited on)"


def test_open_update_refuses_links_and_creates_missing_files_exclusively(files: WorkspaceFiles, outside: Path) -> None:
    (files.root / "vectors-0.f16").symlink_to(outside)
    with pytest.raises(UnsafeWorkspaceFileError):
        files.open_update("vectors-0.f16")
    assert outside.read_text() == "precious"
    with files.open_update("m/vectors-1.f16") as f:
        f.write(b"abc")
    with files.open_update("m/vectors-1.f16", append=True) as f:
        f.write(b"def")
    assert files.read_bytes("m/vectors-1.f16", 10) == b"abcdef"


def test_arrays_round_trip_and_pickles_are_never_loaded(files: WorkspaceFiles) -> None:
    files.save_arrays("maps/pca.npz", ids=np.array(["a" * 32]), coords=np.zeros((1, 2), np.float32))
    loaded = files.load_arrays("maps/pca.npz")
    assert loaded["ids"].tolist() == ["a" * 32]
    np.save(files.root / "evil.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        files.load_arrays("evil.npy")


def test_paths_outside_the_root_and_dot_dot_are_refused(files: WorkspaceFiles, tmp_path: Path) -> None:
    for bad in ("../x", tmp_path / "x", "a/../../x"):
        with pytest.raises(UnsafeWorkspaceFileError):
            files.write_bytes(bad, b"x")
    assert not (tmp_path / "x").exists()


def test_remove_deletes_a_link_not_its_target_and_folders_without_following(
    files: WorkspaceFiles, outside: Path, tmp_path: Path
) -> None:
    (files.root / "frames").mkdir()
    (files.root / "frames" / "a.jpg").symlink_to(outside)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_text("mine")
    (files.root / "frames" / "sub").symlink_to(keep)
    files.remove("frames")
    assert outside.read_text() == "precious" and (keep / "file").read_text() == "mine"
    assert not (files.root / "frames").exists()


def test_names_from_the_catalog_are_checked() -> None:
    assert checked_name("0" * 32, IMAGE_ID, "image id") == "0" * 32
    for bad in ("/home/victim/planted", "../x", "A" * 32, "", None):
        with pytest.raises(UnsafeWorkspaceFileError, match="not a valid name"):
            checked_name(bad, IMAGE_ID, "image id")


def test_tree_problem_names_links_special_files_and_hard_links(files: WorkspaceFiles, outside: Path) -> None:
    files.write_bytes("hnsw/index.bin", b"x")
    assert files.tree_problem("hnsw") is None
    (files.root / "hnsw" / "link").symlink_to(outside)
    assert "link" in str(files.tree_problem("hnsw"))
    os.unlink(files.root / "hnsw" / "link")
    os.mkfifo(files.root / "hnsw" / "fifo")
    assert "not a regular file" in str(files.tree_problem("hnsw"))


def test_a_lock_file_planted_as_a_link_is_replaced(files: WorkspaceFiles, outside: Path) -> None:
    (files.root / "update.lock").symlink_to(outside)
    path = files.lock_file("update.lock")
    from filelock import FileLock

    with FileLock(path, timeout=0):
        pass
    assert outside.read_text() == "precious"
