"""Saving and loading a workspace's index from several processes at once, and healing a damaged one.

Issue 11, finding 7: saves shared one ``hnsw.tmp`` folder, so an update and a search in another
process removed each other's files or renamed a half-written folder into place; the state file was
written in place, and an empty one made every later update fail.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.index import open_index
from picsift.index.sync import read_state, write_state

DIM = 16

# A child process that fills an hnsw index at PATH with ids offset by OFFSET and saves it. With ROLE
# "slow-write" it pauses inside the save, after writing its labels file; with "slow-swap" it pauses
# between the two renames that swap the new folder in. Either way it touches MARKER when it pauses.
# With ROLE "wait" it waits for MARKER before saving.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from picsift.index import open_index

    path, role, offset, marker = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    rng = np.random.default_rng(offset)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = open_index("hnsw", 16, path)
    index.add([f"{i + offset:032x}" for i in range(300)], vectors)

    def pausing(real):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            if not marker.exists():
                marker.touch()
                time.sleep(3)
            return result
        return wrapper

    if role == "slow-write":
        np.savez = pausing(np.savez)
    elif role == "slow-swap":  # folders are renamed through the workspace's file layer
        from picsift.workspace_files import WorkspaceFiles
        WorkspaceFiles.rename = pausing(WorkspaceFiles.rename)
    else:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.02)
    index.save()
    print("saved", flush=True)
    """
)


def start_child(path: Path, role: str, offset: int, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), role, str(offset), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(marker: Path, child: subprocess.Popen[str]) -> None:
    deadline = time.time() + 120
    while not marker.exists():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.time() < deadline, "the child never reached its pause"
        time.sleep(0.02)


def finish(child: subprocess.Popen[str]) -> None:
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and "saved" in out, err[-2000:]


def test_two_processes_saving_one_index_at_once_both_succeed(tmp_path: Path) -> None:
    path, marker = tmp_path / "hnsw", tmp_path / "paused"
    slow = start_child(path, "slow-write", 0, marker)
    fast = start_child(path, "wait", 1000, marker)  # saves while the slow one is half way through
    finish(slow)
    finish(fast)
    index = open_index("hnsw", DIM, path)
    # Whichever save came last, the folder holds all of it (the fast one may have opened the slow one's save).
    slow_ids, fast_ids = {f"{i:032x}" for i in range(300)}, {f"{i + 1000:032x}" for i in range(300)}
    assert index.ids() in (slow_ids, fast_ids, slow_ids | fast_ids)
    found, _ = index.search(np.ones(DIM, np.float32) / 4, 600)
    assert sorted(found) == sorted(index.ids())
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name or p.name.endswith(".old")] == []


def test_opening_an_index_while_another_process_swaps_it_in_waits_for_the_new_one(tmp_path: Path) -> None:
    path, marker = tmp_path / "hnsw", tmp_path / "paused"
    first = open_index("hnsw", DIM, path)
    first.add([f"{i:032x}" for i in range(10)], np.eye(DIM, dtype=np.float32)[:10])
    first.save()
    writer = start_child(path, "slow-swap", 1000, marker)
    wait_for(marker, writer)  # the old folder is moved aside, the new one not yet in place
    reader = open_index("hnsw", DIM, path)
    finish(writer)
    # the writer opened the first save and added 300: the reader sees its save whole, not the old one
    assert reader.ids() == {f"{i:032x}" for i in range(10)} | {f"{i + 1000:032x}" for i in range(300)}
    assert open_index("hnsw", DIM, path).ids() == reader.ids()


def test_the_state_file_is_replaced_whole_and_an_unreadable_one_reads_as_empty(tmp_path: Path) -> None:
    state = tmp_path / "hnsw.state.json"
    write_state(state, {"version": 3, "count": 10})
    assert read_state(state) == {"version": 3, "count": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["hnsw.state.json"]  # no temporary file left
    for damaged in ("", "{", "[1, 2]", "\x00\x00"):
        state.write_text(damaged)
        assert read_state(state) == {}
    assert read_state(tmp_path / "missing.json") == {}


@pytest.mark.parametrize("backend", ["ivf", "qdrant-edge", "hnsw"])
def test_an_empty_state_file_does_not_break_later_updates_or_searches(image_folder: Path, tiny_model: str,
                                                                      backend: str) -> None:
    with picsift.Library(image_folder, model=tiny_model, index=backend) as lib:
        lib.update(progress=False)
        state_file = lib.store.folder / f"{backend}.state.json"
        expected = lib.search("a red thing", limit=5, distribution=False).ids.tolist()
    state_file.write_text("")  # what a process killed while writing it in place left behind
    with picsift.Library(image_folder, model=tiny_model) as lib:  # the backend the workspace records
        lib.update(progress=False)
        assert lib.search("a red thing", limit=5, distribution=False).ids.tolist() == expected
    assert read_state(state_file)["count"] == 24


@pytest.mark.parametrize("damage", ["empty index.bin", "truncated index.bin", "bad meta.json", "no labels.npz"])
def test_an_unreadable_index_is_rebuilt_from_the_store_with_one_warning(
    image_folder: Path, tiny_model: str, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    with picsift.Library(image_folder, model=tiny_model, index="hnsw") as lib:
        lib.update(progress=False)
        folder = lib.store.folder / "hnsw"
        expected = lib.search("a red thing", limit=10).ids.tolist()  # exact
    if damage == "empty index.bin":
        (folder / "index.bin").write_bytes(b"")
    elif damage == "truncated index.bin":
        data = (folder / "index.bin").read_bytes()
        (folder / "index.bin").write_bytes(data[: len(data) // 2])
    elif damage == "bad meta.json":
        (folder / "meta.json").write_text('{"dim": ')
    else:
        (folder / "labels.npz").unlink()
    caplog.set_level(logging.WARNING, logger="picsift")
    with picsift.Library(image_folder, model=tiny_model, index="hnsw") as lib:
        assert lib.search("a red thing", limit=10, distribution=False).ids.tolist() == expected
        assert len(lib.index) == 24
        lib.update(progress=False)  # and updates go on working
    warnings = [r for r in caplog.records if "rebuilding it from the embedding store" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "hnsw index at" in warnings[0].getMessage()
    with picsift.Library(image_folder, model=tiny_model, index="hnsw") as lib:  # the rebuilt index was saved
        caplog.clear()
        assert len(lib.index) == 24
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
