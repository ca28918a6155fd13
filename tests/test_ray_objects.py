"""Labelled objects' crops embedded on a real two-node Ray cluster (issue 22): the local update's vectors, degenerate
boxes skipped and reported, the files sent from the driver when the workers cannot see them, a killed driver
resumed without duplicates. The cluster is test_ray's: started on loopback and stopped by its own process ids.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import picsift

from . import fast_python
from .kill import KILL_AFTER
from .test_formats import make_coco
from .test_ray import Cluster, can_mount_a_tmpfs

# A driver process: the objects must not be embedded here (only on the cluster); optionally SIGKILLs itself after
# the nth commit; then updates over Ray and writes its report to a file (Ray prints its own messages on stdout).
DRIVER = KILL_AFTER + textwrap.dedent(
    """
    import json, sys
    import picsift, picsift.core.objects, picsift.core.store
    folder, workspace, spec, address, nth, out, send = sys.argv[1:8]

    def refuse(*args, **kwargs):
        raise AssertionError("objects were embedded in the driver, not on the cluster")

    picsift.core.objects._embed_here = refuse
    if int(nth):
        kill_after(picsift.core.store.EmbeddingStore, "commit_rows", int(nth))
    with picsift.Library(folder, workspace=workspace, model=spec, batch_size=2) as lib:
        report = lib.update(progress=False, ray=address, ray_send_files=bool(int(send)))
    with open(out, "w") as f:
        json.dump({"embedded": report.embedded, "objects": report.objects, "skipped": report.objects_skipped}, f)
    """
)


@pytest.fixture(scope="module")
def cluster(ray_cluster: Cluster) -> Cluster:
    """The session's two-node Ray cluster (tests/conftest.py), whose second node hides a folder."""
    return ray_cluster


def labelled(root: Path, workspace: Path, stamps_root: Path, spec: str) -> None:
    """The COCO project ``kitchen`` imported into ``root``, plus a tiny, a large and a zero-width box per image."""
    root.mkdir(parents=True, exist_ok=True)
    with picsift.Library(root, workspace=workspace, model=spec) as lib:
        lib.labels.import_project(make_coco(workspace.parent / "src", stamps_root), "coco")
        for image_id in lib.labels.objects()["image_id"].unique():
            lib.labels.add_object(image_id, "crumb", bbox=(100, 100, 103, 104))
            lib.labels.add_object(image_id, "cake", bbox=(50, 60, 250, 200))
            lib.labels.add_object(image_id, "flat", bbox=(10, 10, 10, 50))


def object_vectors(root: Path, workspace: Path, spec: str) -> dict[str, np.ndarray]:
    """Object id -> vector, after checking that the store holds each object once."""
    with picsift.Library(root, workspace=workspace, model=spec) as lib:
        store = lib._engine.object_store(create=False)
        assert store is not None
        pairs = lib.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                       (store.identity,)).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs})  # no duplicates
        snapshot = store.snapshot()
        return dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))


def local_reference(root: Path, workspace: Path, spec: str) -> dict[str, np.ndarray]:
    """The object vectors of a local update of a copy of ``workspace``."""
    reference = workspace.parent / f"{workspace.name}-local"
    shutil.copytree(workspace, reference)
    with picsift.Library(root, workspace=reference, model=spec, batch_size=2) as lib:
        report = lib.update(progress=False)
        assert report.objects == 10 and len(report.objects_skipped) == 3
    return object_vectors(root, reference, spec)


def run_driver(cluster: Cluster, root: Path, workspace: Path, spec: str, *, kill_after_commits: int = 0,
               send_files: bool = False) -> subprocess.CompletedProcess[str]:
    return fast_python.run([sys.executable, "-c", DRIVER, str(root), str(workspace), spec, cluster.address,
                            str(kill_after_commits), str(workspace.parent / "report.json"), str(int(send_files))],
                           capture_output=True, text=True, env=cluster.env, timeout=300)


def report_of(driver: subprocess.CompletedProcess[str], workspace: Path) -> dict[str, object]:
    assert driver.returncode == 0, driver.stderr[-3000:]
    return json.loads((workspace.parent / "report.json").read_text())


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    cosines = [float(np.dot(got[k], want[k])) for k in want]
    assert min(cosines) >= 0.9999, min(cosines)


@pytest.mark.skipif(shutil.which("unshare") is None or not can_mount_a_tmpfs(),
                    reason="needs unshare and user namespaces to hide a folder from the second node")
def test_objects_are_embedded_on_the_cluster_as_locally_with_files_sent_from_the_driver(
        cluster: Cluster, stamps_root: Path, tiny_model: str, tmp_path: Path) -> None:
    assert cluster.hidden is not None
    root = cluster.hidden / "kitchen-lib"  # where this driver and the head node see it, the second node does not
    workspace = tmp_path / "ws"
    labelled(root, workspace, stamps_root, tiny_model)
    want = local_reference(root, workspace, tiny_model)
    report = report_of(run_driver(cluster, root, workspace, tiny_model, send_files=True), workspace)
    assert report["embedded"] == 3 and report["objects"] == 10
    skipped = report["skipped"]
    assert isinstance(skipped, list) and len(skipped) == 3
    assert all("zero area" in reason for _, reason in skipped)  # the zero-width boxes, named, the rest embedded
    assert_same(object_vectors(root, workspace, tiny_model), want)
    again = report_of(run_driver(cluster, root, workspace, tiny_model, send_files=True), workspace)
    assert again["objects"] == 0  # nothing twice


def test_a_driver_killed_while_committing_objects_resumes_on_the_cluster_without_duplicates(
        cluster: Cluster, stamps_root: Path, tiny_model: str, tmp_path: Path) -> None:
    root, workspace = tmp_path / "lib", tmp_path / "ws"
    labelled(root, workspace, stamps_root, tiny_model)
    want = local_reference(root, workspace, tiny_model)
    with picsift.Library(root, workspace=workspace, model=tiny_model) as lib:
        lib.update(progress=False, objects=False)  # the images are in: every commit on the cluster is objects'
    killed = run_driver(cluster, root, workspace, tiny_model, kill_after_commits=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        kept = db.execute("SELECT COUNT(*) FROM embeddings WHERE model LIKE '%#objects'").fetchone()[0]
    assert 0 < kept < 10  # it really died half way
    report = report_of(run_driver(cluster, root, workspace, tiny_model), workspace)
    assert report["objects"] == 10 - kept
    assert_same(object_vectors(root, workspace, tiny_model), want)


# -- without a cluster: what each actor computes, and what the driver accepts -----------------------------------
def test_a_crop_actor_computes_the_local_updates_vectors_and_says_why_it_skips(
        stamps_root: Path, tiny_model: str, tmp_path: Path) -> None:
    from picsift.core.objects import bounding_box, object_id
    from picsift.core.ray_embed import _read
    from picsift.core.ray_objects import _CropActor

    root, workspace = tmp_path / "lib", tmp_path / "ws"
    labelled(root, workspace, stamps_root, tiny_model)
    want = local_reference(root, workspace, tiny_model)
    with picsift.Library(root, workspace=tmp_path / "ws-local", model=tiny_model) as lib:  # updated: files known
        objects = lib.labels.objects()
        files = {row.image_id: path for path, row in lib.catalog.files().items()}
    jobs = {image_id: [[object_id(image_id, bounding_box(p)), *bounding_box(p)] for p in group["points"]]
            for image_id, group in objects.groupby("image_id")}
    paths = [files[i] for i in jobs]
    actor = _CropActor(tiny_model, str(root), "cpu", 4)
    batch = {"path": np.array(paths, object), "image_id": np.array(list(jobs), object),
             "objects": np.array([json.dumps(v) for v in jobs.values()], object)}
    read = [_read(root, p) for p in paths]  # as a reader on the driver's node sends them
    sent = {**batch, "size": np.array([r[0] for r in read]), "mtime_ns": np.array([r[1] for r in read]),
            "error": np.array([r[2] for r in read], object), "data": np.array([r[3] for r in read], object)}
    for result in (actor(batch), actor(sent)):
        got = {k: v for k, v, has in zip(result["object_id"], result["vector"], result["has_vector"], strict=True)
               if has}
        assert_same(got, want)
        errors = [e for e in result["error"].tolist() if e]
        assert len(errors) == 3 and all("zero area" in e for e in errors)
    # a file that no longer holds the labelled image: no crop from it, and the reason
    (root / paths[0]).write_bytes((root / paths[1]).read_bytes())
    changed = actor({key: value[:1] for key, value in batch.items()})
    assert not changed["has_vector"].any() and all("changed since it was scanned" in e for e in changed["error"])


def test_results_a_worker_forges_are_skipped_never_committed(caplog: pytest.LogCaptureFixture) -> None:
    from picsift.core.objects import CropResult, checked_crops

    good, other = np.ones(4, np.float32) / 2, np.zeros(4, np.float32)
    asked = {"a" * 32: "x.png object 1", "b" * 32: "x.png object 2", "c" * 32: "y.png object 3"}
    results = [CropResult("a" * 32, good), CropResult("/etc/passwd", good), CropResult("a" * 32, other),
               CropResult("b" * 32, np.full(4, np.nan, np.float32)), CropResult("c" * 32, np.ones(3, np.float32)),
               CropResult("c" * 32, None, "image unreadable: truncated")]
    with caplog.at_level("WARNING"):
        kept = list(checked_crops(results, asked, 4))
    assert [(r.object_id, r.error) for r in kept] == [("a" * 32, None), ("c" * 32, "image unreadable: truncated")]
    np.testing.assert_array_equal(kept[0].vector, good)  # the first answer, not the second
    assert len([r for r in caplog.records if "skipped it" in r.getMessage()]) == 4
