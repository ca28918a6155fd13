"""Kill -9 an update at its most delicate moments, run it again, and check nothing is lost or doubled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.core.catalog import content_id
from picsift.embedding.spec import parse_model_spec

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER

ROOT = Path(__file__).resolve().parents[1]  # the repository: where the namespace's steps import tests.fast_python

# The child wraps one real function so that the process SIGKILLs itself right after its nth call.
CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import picsift, picsift.core.catalog, picsift.core.store, picsift.workspace_files
    folder, spec, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    owners = {
        "write_vectors": picsift.core.store.EmbeddingStore,  # vectors on disk, rows not committed
        "commit_rows": picsift.core.store.EmbeddingStore,    # inside the batch transaction
        "delete_files": picsift.core.catalog.Catalog,        # inside the removal transaction
        "rename": picsift.workspace_files.WorkspaceFiles,  # between the index folder's two renames
    }
    kill_after(owners[point], point, nth, static=point == "delete_files")
    picsift.Library(folder, model=spec, batch_size=8).update(progress=False)
    """
)


@pytest.fixture(scope="module")
def source(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "images"
    folder.mkdir()
    for path in stamp_files(stamps_root, ("animals", "town", "space"), 16):
        shutil.copy2(path, folder / f"{path.parent.name}-{path.name}")
    return folder


@pytest.fixture(scope="module")
def reference(source: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """id -> vector from an uninterrupted run."""
    with picsift.Library(source, model=tiny_model, workspace=tmp_path_factory.mktemp("ref"), batch_size=8) as lib:
        lib.update(progress=False)
        snapshot = lib.store.snapshot()
        return dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))


def run_killed_child(folder: Path, spec: str, point: str, nth: int) -> None:
    child = fast_python.run([sys.executable, "-c", CHILD, str(folder), spec, point, str(nth)],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def assert_consistent(folder: Path, spec: str, reference: dict[str, np.ndarray]) -> None:
    with picsift.Library(folder, model=spec) as lib:
        files = {p.name: content_id(p.read_bytes()) for p in folder.glob("*.png")}
        rows = lib.catalog.files()
        assert {Path(p).name: r.image_id for p, r in rows.items()} == files
        assert all(r.error is None for r in rows.values())
        pairs = lib.catalog.db.execute(
            "SELECT image_id, row FROM embeddings WHERE model=?", (lib.spec.identity(),)
        ).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs})  # no duplicates
        assert {i for i, _ in pairs} == set(files.values())  # nothing lost, nothing stale
        snapshot = lib.store.snapshot()
        for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
            np.testing.assert_allclose(vector, reference[image_id], atol=1e-5)
        assert lib.index.ids() == set(files.values())
        assert len(lib.search("a house", limit=100, distribution=False)) == len(files)


@pytest.mark.parametrize(("point", "nth"), [("write_vectors", 3), ("commit_rows", 2), ("commit_rows", 5)])
def test_an_update_killed_while_embedding_finishes_on_the_next_run(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray], point: str, nth: int
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    run_killed_child(folder, tiny_model, point, nth)
    with picsift.Library(folder, model=tiny_model) as lib:
        committed = lib.status()["embedded"]
        assert 0 < committed < len(reference)  # it really died half way
        report = lib.update(progress=False)
        assert report.embedded == len(reference) - committed
    assert_consistent(folder, tiny_model, reference)


def test_status_after_a_killed_first_update_names_its_model_and_what_it_embedded(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray]
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    run_killed_child(folder, tiny_model, "commit_rows", 2)  # the very first update of this folder
    with picsift.Library(folder, model=tiny_model) as lib:
        status = lib.status()
        assert status["model"] == parse_model_spec(tiny_model).text
        assert lib.catalog.get_meta("model") == parse_model_spec(tiny_model).text  # the workspace names it
        assert 0 < status["embedded"] < len(reference) and status["searchable"]
        assert status["interrupted"] and not status["ready"]  # it did not finish: not everything is counted yet
        assert len(lib.search("a house", limit=None, distribution=False)) == status["embedded"]
        lib.update(progress=False)
        status = lib.status()
        assert status["embedded"] == len(reference) and status["ready"] and not status["interrupted"]


def test_an_update_killed_while_forgetting_removed_files_finishes_on_the_next_run(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray]
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    with picsift.Library(folder, model=tiny_model) as lib:
        lib.update(progress=False)
    removed = sorted(folder.glob("*.png"))[:10]
    for path in removed:
        path.unlink()
    run_killed_child(folder, tiny_model, "delete_files", 1)
    with picsift.Library(folder, model=tiny_model) as lib:
        assert lib.status()["files"] == 48  # the removal transaction was rolled back whole
        assert lib.update(progress=False).removed == 10
    assert_consistent(folder, tiny_model, {k: v for k, v in reference.items()})


def test_an_update_killed_while_saving_the_index_recovers_it(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray]
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    extra = sorted(folder.glob("*.png"))[:6]
    for path in extra:
        shutil.move(path, tmp_path / path.name)
    # hnsw: its save swaps a new folder in for the old one (qdrant-edge writes its shard in place; a killed add is
    # completed by the next sync: tests/test_qdrant_edge.py)
    with picsift.Library(folder, model=tiny_model, index="hnsw") as lib:
        lib.update(progress=False)
    for path in extra:
        shutil.move(tmp_path / path.name, folder / path.name)
    run_killed_child(folder, tiny_model, "rename", 1)  # old index moved aside, new one not yet in place
    assert_consistent(folder, tiny_model, reference)


# -- a full disk (issue 11.12): a real small tmpfs for the workspace, in a user+mount namespace ----------------
# Run inside a mount namespace of the test's own (``unshare``), after its tmpfs is mounted: each step is a process of
# its own (stdout, stderr and exit status to $OUT/<step>.out, .err, .rc), forked from one interpreter that imported
# torch and the rest once, in this namespace (tests/fast_python.py), instead of a fresh interpreter a step (about 7
# CPU s of imports each). The steps' code comes after this.
STEPS = textwrap.dedent(
    """
    import os, subprocess, sys
    sys.path.insert(0, os.environ["TESTS_ROOT"])
    from tests import fast_python

    def step(name, *args):
        done = fast_python.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
        for suffix, text in (("out", done.stdout), ("err", done.stderr), ("rc", f"{done.returncode}\\n")):
            with open(os.path.join(os.environ["OUT"], f"{name}.{suffix}"), "w") as f:
                f.write(text)

    e = os.environ
    """
)
FULL_DISK = r"""
mount -t tmpfs -o size="$SIZE" tmpfs "$WS" || exit 77
exec "$PY" -c "$STEPS$FULL_DISK_STEPS"
"""
FULL_DISK_STEPS = textwrap.dedent(
    """
    step("first", "-m", "picsift", "update", e["FOLDER"], "--workspace", e["WS"], "--model", e["SPEC"], "--quiet")
    # space freed (qdrant-edge maps up to 8 x 32 MiB preallocated files)
    subprocess.run(["mount", "-o", "remount,size=512m", e["WS"]], check=True)
    step("second", "-m", "picsift", "update", e["FOLDER"], "--workspace", e["WS"], "--model", e["SPEC"], "--json")
    step("check", "-c", e["CHECK"], e["FOLDER"], e["WS"], e["SPEC"])
    """
)
CHECK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import picsift
    folder, workspace, spec = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    with picsift.Library(folder, workspace=workspace, model=spec) as lib:
        pairs = lib.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                       (lib.spec.identity(),)).fetchall()
        snapshot = lib.store.snapshot()
        print(json.dumps({
            "files": {Path(p).name: [r.image_id, r.error] for p, r in lib.catalog.files().items()},
            "pairs": pairs, "index": sorted(lib.index.ids()),
            "vectors": dict(zip(snapshot.ids.tolist(), snapshot.vectors().tolist())),
            "found": len(lib.search("a house", limit=None, distribution=False)),
        }))
    """
)


def can_mount_a_tmpfs() -> bool:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(shutil.which("unshare") is None or not can_mount_a_tmpfs(),
                    reason="needs unshare and user namespaces to mount a small tmpfs")
@pytest.mark.parametrize("size", [
    "200k",  # full while the catalog is created
    "320k",  # full inside a batch's transaction
    "370k",  # full while the index is saved
])
def test_a_full_disk_gives_one_clear_line_and_the_next_run_finishes_the_job(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray], size: str
) -> None:
    workspace, out = tmp_path / "ws", tmp_path / "out"
    workspace.mkdir()
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SIZE": size, "WS": str(workspace), "OUT": str(out),
           "PY": sys.executable, "FOLDER": str(source), "SPEC": tiny_model, "CHECK": CHECK, "STEPS": STEPS,
           "FULL_DISK_STEPS": FULL_DISK_STEPS, "TESTS_ROOT": str(ROOT)}
    shell = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", FULL_DISK], env=env,
                           capture_output=True, text=True, timeout=600)
    assert shell.returncode == 0, shell.stderr

    first = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "1"
    assert first.count("\n") == 1 and "Traceback" not in first, first  # one line...
    assert f"the disk holding the workspace {workspace} is full" in first and "--workspace DIR" in first  # ...clear

    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    check = json.loads((out / "check.out").read_text() or "{}") or pytest.fail((out / "check.err").read_text())
    files = {p.name: content_id(p.read_bytes()) for p in source.glob("*.png")}
    assert check["files"] == {name: [image_id, None] for name, image_id in files.items()}
    ids, rows = [i for i, _ in check["pairs"]], [r for _, r in check["pairs"]]
    assert len(ids) == len(set(ids)) == len(set(rows)) and set(ids) == set(files.values())  # nothing lost or doubled
    assert set(check["index"]) == set(files.values()) and check["found"] == len(set(files.values()))
    for image_id, vector in check["vectors"].items():
        np.testing.assert_allclose(vector, reference[image_id], atol=1e-5)


NO_ROOM_FOR_INDEX = r"""
mount -t tmpfs -o size=64m tmpfs "$WS" || exit 77
exec "$PY" -c "$STEPS$NO_ROOM_STEPS"
"""
NO_ROOM_STEPS = textwrap.dedent(
    """
    step("update", "-m", "picsift", "update", e["FOLDER"], "--workspace", e["WS"], "--model", e["SPEC"], "--quiet",
         "--index", "qdrant-edge")
    step("search", "-c", e["SEARCH"], e["FOLDER"], e["WS"], e["SPEC"])
    """
)
SEARCH = textwrap.dedent(
    """
    import json, sys
    import picsift
    with picsift.Library(sys.argv[1], workspace=sys.argv[2], model=sys.argv[3]) as lib:
        found = lib.search("a house", limit=10, distribution=False)
        print(json.dumps({"found": len(found), "index": lib.index.name, "recorded": lib.index_name}))
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None or not can_mount_a_tmpfs(),
                    reason="needs unshare and user namespaces to mount a small tmpfs")
def test_a_disk_without_room_for_the_index_maps_says_so_and_searches_still_work(source: Path, tmp_path: Path,
                                                                               tiny_model: str) -> None:
    """64 MiB hold the catalog and the vectors but not the files qdrant-edge preallocates and maps (reading or
    writing those on a full disk would kill the process with SIGBUS): the update says the disk is full, in one
    line, and a search scans the store exactly instead."""
    workspace, out = tmp_path / "ws", tmp_path / "out"
    workspace.mkdir()
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WS": str(workspace), "OUT": str(out), "PY": sys.executable,
           "FOLDER": str(source), "SPEC": tiny_model, "SEARCH": SEARCH, "STEPS": STEPS,
           "NO_ROOM_STEPS": NO_ROOM_STEPS, "TESTS_ROOT": str(ROOT)}
    shell = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", NO_ROOM_FOR_INDEX],
                           env=env, capture_output=True, text=True, timeout=600)
    assert shell.returncode == 0, shell.stderr
    update = (out / "update.err").read_text()
    assert (out / "update.rc").read_text().strip() == "1"
    assert update.count("\n") == 1 and "is full" in update and "for the files it maps" in update, update
    assert (out / "search.rc").read_text().strip() == "0", (out / "search.err").read_text()
    search = json.loads((out / "search.out").read_text())
    assert search == {"found": 10, "index": "store", "recorded": "qdrant-edge"}  # the store, scanned exactly
    assert "searching the embedding store exactly instead" in (out / "search.err").read_text()


# A library nobody closes, held by a namespace that Python tears down late (as a notebook's is): here a module
# registered after qdrant-client's lazy imports, so it is cleared after them at exit.
UNCLOSED = textwrap.dedent(
    """
    import sys, types
    import picsift
    library = picsift.Library(sys.argv[1], model=sys.argv[2], index="qdrant")
    print(len(library.index.ids()))
    namespace = types.ModuleType("namespace")
    namespace.library = library
    sys.modules["namespace"] = namespace
    del library, namespace  # and exit without library.close()
    """
)


def test_a_qdrant_library_left_open_exits_quietly(source: Path, tmp_path: Path, tiny_model: str) -> None:
    pytest.importorskip("qdrant_client")
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    with picsift.Library(folder, model=tiny_model, index="qdrant") as library:
        library.update(progress=False)
    child = fast_python.run([sys.executable, "-c", UNCLOSED, str(folder), tiny_model], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert child.returncode == 0 and child.stdout.strip() == "48", child.stderr[-3000:]
    assert "Traceback" not in child.stderr and "Error" not in child.stderr, child.stderr[-3000:]
