"""Embedding on a real two-node Ray cluster (issue 13): same vectors as a local update, crash-safe driver,
a killed worker survived, bad files skipped, a lost head node reported with everything committed kept.

The fixture starts ``ray start --head`` and a second node on this machine, each with its own temp dir and
its own process group, and kills exactly those processes (and their children) at the end, even on failure:
``ray stop`` would end every Ray process of the machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

import picsift
from picsift.core.catalog import content_id

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER

SRC = Path(picsift.__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"

# A driver process: optionally SIGKILLs itself after the nth call of a real function, then updates over Ray.
DRIVER = KILL_AFTER + textwrap.dedent(
    """
    import functools, json, sys
    import picsift, picsift.core.store
    from picsift.core import ray_embed
    folder, workspace, spec, address, nth, out, decode_stage = sys.argv[1:8]
    if int(nth):
        kill_after(picsift.core.store.EmbeddingStore, "commit_rows", int(nth))
    if int(decode_stage):  # what a cluster with GPUs does: CPU actors decode, model actors only embed
        ray_embed.embed_on_ray = functools.partial(ray_embed.embed_on_ray, decode_stage=True)
    with picsift.Library(folder, workspace=workspace, model=spec, batch_size=8) as lib:
        report = lib.update(progress=False, ray=address)
    with open(out, "w") as f:  # not stdout: Ray prints its own messages there
        json.dump({"embedded": report.embedded, "skipped": report.skipped}, f)
    """
)

# A CLI process whose first commit SIGKILLs a Ray head node's processes (argv[1]: the head's process group), the
# way kill_after hooks in; the rest of argv is the command line.
HEAD_KILLER = textwrap.dedent(
    """
    import contextlib, os, signal, sys
    import psutil
    import picsift.core.store
    from picsift.cli import main
    head = int(sys.argv[1])
    real = picsift.core.store.EmbeddingStore.commit_rows
    calls = [0]

    def commit_rows(*args, **kwargs):
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 1:  # only the fixture's head node: its process group and whatever it started
            root = psutil.Process(head)
            procs = [root, *root.children(recursive=True)]
            os.killpg(head, signal.SIGKILL)
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        return result

    picsift.core.store.EmbeddingStore.commit_rows = commit_rows
    sys.exit(main(sys.argv[2:]))
    """
)


# On the nodes that have it: while the file $PICSIFT_TEST_KILL_MARK exists, the first embedding actor call to
# find it deletes it and SIGKILLs its own process after computing its batch (before returning it to Ray); with
# $PICSIFT_TEST_SLOW_EMBED_S, every embedding actor call first sleeps that long; while the file
# $PICSIFT_TEST_FORGE_MARK exists, every embedding actor call returns forged results, as a hostile node of the
# cluster could (see forge_results).
WORKER_HOOK = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, os, signal, sys, time

    MARK = os.environ.get("PICSIFT_TEST_KILL_MARK", "")
    SLOW = float(os.environ.get("PICSIFT_TEST_SLOW_EMBED_S", "0"))
    FORGE_MARK = os.environ.get("PICSIFT_TEST_FORGE_MARK", "")


    def forge_results(result):
        # Of the files this batch embedded: the first gets a path as its id, the second's path becomes one the
        # driver never asked for, the third's vector NaN, and the fourth comes back twice.
        import numpy as np

        embedded = [i for i, has in enumerate(result["has_vector"].tolist()) if has]
        if len(embedded) < 4:
            return result
        result = {key: value.copy() for key, value in result.items()}
        first, second, third, fourth = embedded[:4]
        result["image_id"][first] = "/home/victim/planted"
        result["path"][second] = "/etc/passwd"
        result["vector"][third] = np.nan
        return {key: np.concatenate([value, value[fourth:fourth + 1]]) for key, value in result.items()}


    class KillHook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "picsift.core.ray_embed":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                real_call = module._EmbedActor.__call__

                def call(actor, batch):
                    time.sleep(SLOW)
                    result = real_call(actor, batch)
                    if FORGE_MARK and os.path.exists(FORGE_MARK):
                        return forge_results(result)
                    try:
                        os.unlink(MARK)
                    except FileNotFoundError:
                        return result
                    os.kill(os.getpid(), signal.SIGKILL)

                module._EmbedActor.__call__ = call

            spec.loader.exec_module = exec_module
            return spec


    sys.meta_path.insert(0, KillHook())
    """
)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    kill_mark: Path  # see WORKER_HOOK
    forge_mark: Path  # see WORKER_HOOK
    hidden: Path | None  # a folder the second node sees empty (a tmpfs over it in its mount namespace)
    head: int  # the head node's process group: its `ray start --block` process, the GCS, raylet and workers


def can_mount_a_tmpfs() -> bool:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: what `ray start` prints once its node runs and is registered with the cluster
STARTED = b"Ray runtime started."


def _node_count(address: str, env: dict[str, str]) -> int:
    status = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True, env=env,
                            timeout=60)
    return status.stdout.count(" node_") if status.returncode == 0 else 0


def _stop(node: subprocess.Popen[bytes]) -> None:
    """SIGKILL one node's ``ray start --block`` process and everything it started: only ours."""
    try:
        root = psutil.Process(node.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in reversed(procs):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=15)


@contextlib.contextmanager
def start_cluster(*, hide_a_folder: bool, slow_embed_s: float = 0, nodes: int = 2) -> Iterator[Cluster]:
    """A real Ray cluster on loopback (two nodes, or ``nodes``), one CPU per node, stopped (only its own processes)
    at the end.

    ``hide_a_folder``: the second node runs in a mount namespace of its own, see :attr:`Cluster.hidden`;
    ``slow_embed_s``: each embedding actor call on either node first sleeps that long; see WORKER_HOOK for the
    marks that make a node's actors die or forge their results. A node that does not register within Ray's fixed
    30 s (a machine loaded by other work) fails to start: up to three tries, each with new nodes.
    """
    for attempt in range(3):
        stack = contextlib.ExitStack()
        try:
            cluster = stack.enter_context(_start_cluster_once(hide_a_folder, slow_embed_s, nodes))
        except AssertionError as e:
            if ("Ray node" not in str(e) and "timed out during startup" not in str(e)) or attempt == 2:
                raise
            continue
        with stack:
            yield cluster
        return


@contextlib.contextmanager
def _start_cluster_once(hide_a_folder: bool, slow_embed_s: float, count: int) -> Iterator[Cluster]:
    temp = Path(tempfile.mkdtemp(prefix="psr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1",
               # a ~/.ray/auth_token (any ray.init() that starts a cluster writes one) would turn on token auth
               # for `ray start` but not for `ray status`, and the nodes would never be seen to come up
               RAY_AUTH_MODE="disabled",
               # a driver starts the pipeline once every actor is ready, so both nodes get batches to embed
               RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S="120",
               # a node waits 30 s for its raylet to register, then gives up: too little on a loaded machine
               RAY_raylet_start_wait_time_s="120")
    (temp / "hook").mkdir()
    (temp / "hook" / "sitecustomize.py").write_text(WORKER_HOOK)
    hooked = dict(env, PYTHONPATH=os.pathsep.join([str(temp / "hook"), env["PYTHONPATH"]]),
                  PICSIFT_TEST_FORGE_MARK=str(temp / "forge-mark"), PICSIFT_TEST_SLOW_EMBED_S=str(slow_embed_s))
    second = dict(hooked, PICSIFT_TEST_KILL_MARK=str(temp / "kill-mark"))
    # Every node's address is loopback's. (Ray 2.60 still binds its GCS and raylet gRPC servers to every
    # interface, and resolves 127.0.0.1 to the machine's address for what it advertises: see SECURITY.md.)
    common = ["--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    hidden = temp / "hidden" if hide_a_folder and shutil.which("unshare") and can_mount_a_tmpfs() else None
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for i, (where, node_env) in enumerate([(["--head", f"--port={port}", "--include-dashboard=false"], hooked),
                                               ([f"--address={address}"], second)][:count]):
            log = temp / f"node{i}.log"
            command = [str(RAY), "start", *where, *common, f"--temp-dir={temp / f'n{i}'}"]
            if i == 1 and hidden is not None:  # the second node runs in a mount namespace of its own
                hidden.mkdir()
                command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hidden), *command]
            with open(log, "wb") as out:
                nodes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=node_env,
                                              start_new_session=True))
            # `ray start` prints "Ray runtime started." once its node is up and registered (the head's control store
            # answers before a second node may join). Polling `ray status` instead (a fresh interpreter importing
            # Ray, about 3 CPU s a call, up to 45 s while the head is not up) took 28-32 CPU s a cluster.
            deadline = time.monotonic() + 180
            while STARTED not in log.read_bytes():
                assert nodes[i].poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"Ray node {i} did not come up in 180 s"
                time.sleep(0.2)
        deadline = time.monotonic() + 60
        while len(nodes) > 1 and _node_count(address, env) < len(nodes):  # the cluster says so too
            assert all(node.poll() is None for node in nodes), (temp / "node1.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray cluster did not list both nodes in 60 s"
            time.sleep(0.5)
        yield Cluster(address, env, temp / "kill-mark", temp / "forge-mark", hidden, nodes[0].pid)
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_cluster: Cluster) -> Cluster:
    """The session's two-node Ray cluster (tests/conftest.py), whose second node hides a folder."""
    return ray_cluster


@pytest.fixture(scope="module")
def source(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 real stamps (photos and drawings) and one corrupt file."""
    folder = tmp_path_factory.mktemp("ray") / "images"
    folder.mkdir()
    for path in stamp_files(stamps_root, ("animals", "town", "space"), 16):
        shutil.copy2(path, folder / f"{path.parent.name}-{path.name}")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    return folder


@pytest.fixture(scope="module")
def local(source: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> picsift.UpdateReport:
    """A local, single-process update of ``source`` (its report; its workspace is ``ref`` beside it)."""
    with picsift.Library(source, model=tiny_model, workspace=source.parent / "ref", batch_size=8) as lib:
        report = lib.update(progress=False)
        assert [Path(p).name for p, _ in report.skipped] == ["corrupt.png"]
        return report


@pytest.fixture(scope="module")
def reference(source: Path, tiny_model: str, local: picsift.UpdateReport) -> dict[str, np.ndarray]:
    """id -> vector from the local update."""
    with picsift.Library(source, model=tiny_model, workspace=source.parent / "ref") as lib:
        snapshot = lib.store.snapshot()
        return dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))


def run_driver(cluster: Cluster, folder: Path, workspace: Path, spec: str, kill_after_commits: int = 0,
               decode_stage: bool = False) -> subprocess.CompletedProcess[str]:
    """An update over Ray in a driver process of its own; its report is in ``workspace.parent/report.json``."""
    report = workspace.parent / "report.json"
    return fast_python.run([sys.executable, "-c", DRIVER, str(folder), str(workspace), spec, cluster.address,
                            str(kill_after_commits), str(report), str(int(decode_stage))], capture_output=True,
                           text=True, env=cluster.env, timeout=240)


def finish(driver: subprocess.CompletedProcess[str], workspace: Path) -> dict[str, object]:
    assert driver.returncode == 0, driver.stderr[-3000:]
    return json.loads((workspace.parent / "report.json").read_text())


def assert_same_as_local(folder: Path, workspace: Path, spec: str, reference: dict[str, np.ndarray]) -> None:
    """Every image embedded once, with the local update's vector (cosine >= 0.9999), nothing else."""
    with picsift.Library(folder, workspace=workspace, model=spec) as lib:
        pairs = lib.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                       (lib.spec.identity(),)).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs})  # no duplicates
        assert {i for i, _ in pairs} == set(reference)
        files = {Path(p).name: r for p, r in lib.catalog.files().items()}
        assert set(files) == {p.name for p in folder.iterdir()}
        for name, row in files.items():
            expected = content_id((folder / name).read_bytes())
            assert (row.image_id, row.error is None) == ((None, False) if name == "corrupt.png" else (expected, True))
        snapshot = lib.store.snapshot()
        vectors = dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))
        cosines = [float(np.dot(vectors[i], reference[i])) for i in reference]
        assert min(cosines) >= 0.9999, min(cosines)
        assert len(lib.search("a house", limit=None, distribution=False)) == len(reference)


@pytest.mark.skipif(shutil.which("unshare") is None or not can_mount_a_tmpfs(),
                    reason="needs unshare and user namespaces to hide a folder from the second node")
def test_workers_that_cannot_see_the_folder_get_the_files_from_the_driver_and_embed_them_as_locally(
    cluster: Cluster, source: Path, tiny_model: str, reference: dict[str, np.ndarray], local: picsift.UpdateReport,
    tmp_path: Path
) -> None:
    assert cluster.hidden is not None
    hidden = cluster.hidden / "stamps"  # where the head node (and this driver) see them, the second node does not
    hidden.mkdir()
    for path in source.iterdir():
        shutil.copy2(path, hidden / path.name)

    def update(workspace: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return fast_python.run([sys.executable, "-m", "picsift", "update", str(hidden), "--workspace",
                                str(tmp_path / workspace), "--model", tiny_model, "--batch-size", "8", "--ray",
                                cluster.address, "--json", *flags], capture_output=True, text=True, env=cluster.env,
                               timeout=240)

    # Without --ray-send-files: a clear error that says what to do, not files taken for deleted.
    shared = update("shared")
    assert shared.returncode == 1, shared.stderr[-3000:]
    assert "--ray-send-files" in shared.stderr
    with picsift.Library(source, workspace=tmp_path / "shared", model=tiny_model) as lib:
        assert all(row.error is None for row in lib.catalog.files().values())  # nothing recorded as unreadable
    # With it: a reader on the driver's node sends the bytes; the result is the local update's.
    sent = update("sent", "--ray-send-files")
    assert sent.returncode == 0, sent.stderr[-3000:]
    report = json.loads(sent.stdout)
    assert report["embedded"] == len(reference)
    assert [(s["path"], s["reason"]) for s in report["skipped"]] == local.skipped
    assert_same_as_local(source, tmp_path / "sent", tiny_model, reference)


def test_a_killed_driver_resumes_on_the_cluster_without_duplicates(
    cluster: Cluster, source: Path, tiny_model: str, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    killed = run_driver(cluster, source, workspace, tiny_model, kill_after_commits=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        committed = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert 0 < committed < len(reference)  # it really died half way
    # It resumes with a decode stage (CPU actors decode, the model actors only embed): same vectors.
    report = finish(run_driver(cluster, source, workspace, tiny_model, decode_stage=True), workspace)
    assert report["embedded"] == len(reference) - committed
    assert_same_as_local(source, workspace, tiny_model, reference)


def test_a_killed_worker_is_retried_by_ray(
    cluster: Cluster, source: Path, tiny_model: str, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    cluster.kill_mark.touch()  # the second node's actor dies (SIGKILL) right after embedding its first batch
    try:
        report = finish(run_driver(cluster, source, tmp_path / "ws", tiny_model), tmp_path / "ws")
        assert not cluster.kill_mark.exists(), "no batch ran on the second node"
    finally:
        cluster.kill_mark.unlink(missing_ok=True)
    assert report["embedded"] == len(reference)
    assert_same_as_local(source, tmp_path / "ws", tiny_model, reference)


def test_a_lost_head_node_ends_the_update_with_a_clear_error_and_keeps_every_commit(
    source: Path, tiny_model: str, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    # A cluster of its own (this one loses its head; one node: the head is the whole cluster, as on a laptop), with
    # slow actors, so the head goes while most batches are to do.
    with start_cluster(hide_a_folder=False, slow_embed_s=3, nodes=1) as doomed:
        lost = subprocess.run([sys.executable, "-c", HEAD_KILLER, str(doomed.head), "update", str(source),
                               "--workspace", str(workspace), "--model", tiny_model, "--batch-size", "4", "--ray",
                               doomed.address], capture_output=True, text=True, timeout=180,
                              # the loss is noticed after 3 s, not 10: a connection to the killed head is refused
                              env=dict(doomed.env, PICSIFT_RAY_LOST_AFTER_S="3"))
    # One line from picsift (not Ray's "Failed to connect to GCS" a minute later), exit status 1, no traceback.
    assert lost.returncode == 1, lost.stderr[-3000:]
    errors = [line for line in lost.stderr.splitlines() if line.startswith("picsift: error:")]
    assert len(errors) == 1 and "Traceback" not in lost.stderr, lost.stderr[-3000:]
    assert "Failed to connect to GCS" not in lost.stderr
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        committed = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert 0 < committed < len(reference)  # it really was cut off half way
    message = errors[0]
    assert f"lost the Ray cluster at {doomed.address!r}" in message
    assert f"{committed} images embedded in this run are committed and kept" in message
    assert "run the same update again to resume (images committed already are skipped)" in message

    with picsift.Library(source, workspace=workspace, model=tiny_model, batch_size=8) as lib:
        assert lib.status()["interrupted"]
        pairs = lib.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                       (lib.spec.identity(),)).fetchall()
        ids = {i for i, _ in pairs}
        assert len(pairs) == len(ids) == len({r for _, r in pairs}) == committed  # no duplicates
        snapshot = lib.store.snapshot()
        vectors = dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))
        assert set(vectors) == ids <= set(reference)
        assert min(float(np.dot(vectors[i], reference[i])) for i in ids) >= 0.9999
        # A file's row is committed together with its embedding, never without it.
        assert {row.image_id for row in lib.catalog.files().values() if row.image_id} == ids
        # A local update finishes the job: it embeds only what the cluster did not.
        report = lib.update(progress=False)
        assert report.embedded == len(reference) - committed
        assert not lib.status()["interrupted"]
    assert_same_as_local(source, workspace, tiny_model, reference)


def test_results_a_hostile_node_forges_are_skipped_and_reported_never_used(
    cluster: Cluster, source: Path, tiny_model: str, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """Every node of the cluster is trusted with the images, not with naming files or ids: a forged path, id or
    vector is skipped with a warning, and the next update reads those files again."""
    workspace = tmp_path / "ws"
    cluster.forge_mark.touch()  # both nodes forge while it exists
    try:
        driver = run_driver(cluster, source, workspace, tiny_model)
    finally:
        cluster.forge_mark.unlink()
    finish(driver, workspace)
    assert "a Ray worker returned '/home/victim/planted' as the content id of" in driver.stderr
    assert "a result for '/etc/passwd', a path the driver did not ask for" in driver.stderr
    assert "that is not one row of finite numbers" in driver.stderr and "a second result for" in driver.stderr
    with picsift.Library(source, workspace=workspace, model=tiny_model) as lib:
        files = lib.catalog.files()
        assert set(files) <= {p.name for p in source.iterdir()}  # no path it did not ask for
        for name, row in files.items():  # every id recorded is the content's own
            assert row.image_id in (None, content_id((source / name).read_bytes()))
        snapshot = lib.store.snapshot()
        assert set(snapshot.ids.tolist()) < set(reference)  # the forged ones are missing, nothing else came in
        assert np.isfinite(snapshot.vectors()).all()
        assert lib.update(progress=False).embedded > 0  # the skipped files are read again
    assert_same_as_local(source, workspace, tiny_model, reference)


def test_ray_without_an_address_joins_a_running_cluster_and_starts_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray cluster listens on the machine's network interfaces: picsift starts none on its own."""
    import ray

    from picsift.core import ray_embed

    temp = tempfile.mkdtemp(prefix="psn", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", temp)  # where `ray start` would have left a running cluster's address: none
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        with pytest.raises(picsift.PicsiftError, match=r"no running Ray cluster found.*picsift starts none itself"):
            ray_embed.connect(ray_embed.AUTO)
        assert not ray.is_initialized()
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before  # no Ray process was started
    finally:
        if ray.is_initialized():  # as an older picsift did: stop the cluster ray.init() started here
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_results_are_checked_before_they_are_used(caplog: pytest.LogCaptureFixture) -> None:
    from picsift.core.ray_embed import EmbeddedFile, checked_results

    vector = np.ones(4, np.float32)
    good = EmbeddedFile("a.png", 10, 1, "0123456789abcdef0123456789abcdef", 4, 4, None, vector)
    unreadable = EmbeddedFile("d.png", 5, 1, None, None, None, "cannot decode", None)
    forged = [
        EmbeddedFile("/etc/passwd", 10, 1, good.image_id, 4, 4, None, vector),  # not asked for
        EmbeddedFile("b.png", 10, 1, "/home/victim/planted", 4, 4, None, vector),  # an id that is a path
        EmbeddedFile("b.png", 10, 1, "0123456789ABCDEF0123456789ABCDEF", 4, 4, None, vector),  # not picsift's form
        EmbeddedFile("b.png", 10, 1, None, 4, 4, None, vector),  # no id, no error
        EmbeddedFile("c.png", 10, 1, good.image_id, 4, 4, None, np.full(4, np.nan, np.float32)),
        EmbeddedFile("c.png", 10, 1, good.image_id, 4, 4, None, np.ones((2, 4), np.float32)),
        EmbeddedFile("a.png", 10, 1, good.image_id, 4, 4, None, vector),  # a second answer
    ]
    taken: set[str] = set()
    with caplog.at_level(logging.WARNING):
        kept = list(checked_results([good, *forged, unreadable], {"a.png", "b.png", "c.png", "d.png"}, taken))
    assert kept == [good, unreadable] and taken == {"a.png", "d.png"}
    assert caplog.text.count("a Ray worker returned") == len(forged)
