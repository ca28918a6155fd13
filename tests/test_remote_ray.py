"""A library over an S3 URL updated on a real two-node Ray cluster (on 127.0.0.1) whose workers read the objects
from moto's real S3 server themselves: the same result as an update in this process, a killed driver resumed
without duplicates, an object changed while it was read reported and read again, no secret written anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import picsift
from picsift.core.catalog import content_id

from . import fast_python, test_remote
from .conftest import stamp_files
from .kill import KILL_AFTER
from .test_ray import Cluster

pytest.importorskip("ray")
SECRET = test_remote.SECRET
# the moto server, the credentials and the bucket of real stamps of tests/test_remote.py
s3_endpoint, options, s3, photos = test_remote.s3_endpoint, test_remote.options, test_remote.s3, test_remote.photos

# A driver process: takes the secret from its environment (not argv, which Ray records as the job's entry point),
# optionally SIGKILLs itself after the nth commit, optionally overwrites one object once the listing is made (before
# any object is read), then updates over Ray and writes its report.
DRIVER = KILL_AFTER + textwrap.dedent(
    """
    import json, os, sys
    import picsift, picsift.core.store
    url, endpoint, workspace, spec, address, nth, out, changed_key, changed_with = sys.argv[1:10]
    options = {"endpoint_url": endpoint, "key": "AKIDPICSIFT", "secret": os.environ.pop("PICSIFT_TEST_SECRET")}
    if int(nth):
        kill_after(picsift.core.store.EmbeddingStore, "commit_rows", int(nth))

    def overwrite(done, total):
        if done == 0 and changed_key:
            import s3fs
            with open(changed_with, "rb") as f:
                data = f.read()
            s3fs.S3FileSystem(**options, skip_instance_cache=True).pipe(f"{url[5:]}/{changed_key}", data)

    with picsift.Library(url, storage_options=options, workspace=workspace, model=spec, batch_size=4) as lib:
        report = lib.update(progress=False, ray=address, on_progress=overwrite)
    with open(out, "w") as f:
        json.dump({"embedded": report.embedded, "skipped": report.skipped}, f)
    """
)


@pytest.fixture(scope="module")
def cluster(ray_cluster: Cluster) -> Cluster:
    """The session's two-node Ray cluster (tests/conftest.py); its nodes' environment holds no credential and no
    endpoint."""
    assert SECRET not in json.dumps(ray_cluster.env) and "AWS_ENDPOINT_URL" not in ray_cluster.env
    return ray_cluster


def run_driver(cluster: Cluster, url: str, endpoint: str, workspace: Path, spec: str, *, kill_after_commits: int = 0,
               change: tuple[str, Path] | None = None) -> subprocess.CompletedProcess[str]:
    key, data = change or ("", Path())
    return fast_python.run([sys.executable, "-c", DRIVER, url, endpoint, str(workspace), spec, cluster.address,
                            str(kill_after_commits), str(workspace.parent / "report.json"), key, str(data)],
                           capture_output=True, text=True, env=dict(cluster.env, PICSIFT_TEST_SECRET=SECRET),
                           timeout=300)


def report_of(driver: subprocess.CompletedProcess[str], workspace: Path) -> dict[str, Any]:
    assert driver.returncode == 0, driver.stderr[-3000:]
    report: dict[str, Any] = json.loads((workspace.parent / "report.json").read_text())
    return report


def state(url: str, options: dict[str, Any], workspace: Path, spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """path -> (size, stamp, id, error) of every catalogued object, and id -> vector."""
    with picsift.Library(url, storage_options=options, workspace=workspace, model=spec) as lib:
        files = {p: (r.size, r.mtime_ns, r.image_id, r.error) for p, r in lib.catalog.files().items()}
        snapshot = lib.store.snapshot()
        ids = snapshot.ids.tolist()
        assert len(ids) == len(set(ids))  # no content embedded twice
        return files, dict(zip(ids, snapshot.vectors(), strict=True))


def test_ray_workers_read_the_bucket_and_match_an_in_process_update(
    cluster: Cluster, photos: tuple[str, dict[str, bytes]], options: dict[str, Any], tiny_model: str, tmp_path: Path,
) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "here", model=tiny_model) as lib:
        lib.update(progress=False)
    files, vectors = state(url, options, tmp_path / "here", tiny_model)

    workspace = tmp_path / "ray" / "ws"
    workspace.parent.mkdir()
    killed = run_driver(cluster, url, options["endpoint_url"], workspace, tiny_model, kill_after_commits=2)
    assert killed.returncode == -9, killed.stderr[-3000:]
    kept = len(state(url, options, workspace, tiny_model)[1])
    assert 0 < kept < len(vectors)  # the first batch was committed before the driver was killed (in the second)
    driver = run_driver(cluster, url, options["endpoint_url"], workspace, tiny_model)
    report = report_of(driver, workspace)
    assert report["skipped"] == [] and report["embedded"] == len(vectors) - kept  # only the rest

    on_ray, ray_vectors = state(url, options, workspace, tiny_model)
    assert on_ray == files  # every object: the same size, version stamp and content id (the hash of its bytes)
    assert set(on_ray) == set(objects) and set(ray_vectors) == {content_id(d) for d in objects.values()}
    cosines = [float(np.dot(ray_vectors[i], vectors[i])) for i in vectors]
    assert min(cosines) >= 0.9999, min(cosines)

    # the credentials reached the workers in memory only: not in the workspace, the driver's output, Ray's logs
    ray_files = [p for p in cluster.kill_mark.parent.rglob("*") if p.is_file() and not p.is_symlink()]
    written = [p for p in [*workspace.rglob("*"), *ray_files] if p.is_file() and SECRET.encode() in _bytes(p)]
    assert ray_files and written == []
    assert SECRET not in killed.stdout + killed.stderr + driver.stdout + driver.stderr


def test_an_object_changed_while_ray_workers_read_it_is_reported_and_read_again(
    cluster: Cluster, photos: tuple[str, dict[str, bytes]], options: dict[str, Any], tiny_model: str, tmp_path: Path,
    stamps_root: Path,
) -> None:
    url, objects = photos
    key = sorted(objects)[4]
    replacement = stamp_files(stamps_root, ("space",), 1)[0]
    workspace = tmp_path / "ray" / "ws"
    workspace.parent.mkdir()
    driver = run_driver(cluster, url, options["endpoint_url"], workspace, tiny_model, change=(key, replacement))
    report = report_of(driver, workspace)
    assert [path for path, _ in report["skipped"]] == [key]
    assert "changed while the update read it" in report["skipped"][0][1]
    files, _ = state(url, options, workspace, tiny_model)
    assert files[key][2] is None  # no content id recorded for a version the listing did not name

    with picsift.Library(url, storage_options=options, workspace=workspace, model=tiny_model) as lib:
        again = lib.update(progress=False)  # the next update, here in this process, reads it again
        assert (again.changed, again.embedded, again.skipped) == (1, 1, [])
        ids = dict(zip(lib.images()["path"], lib.images()["id"], strict=True))
        assert ids[f"{url}/{key}"] == content_id(replacement.read_bytes())


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # a socket or a file a Ray process removed meanwhile
        return b""


def test_listing_a_bucket_shows_its_progress(photos: tuple[str, dict[str, bytes]], options: dict[str, Any],
                                             tiny_model: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=True)
    err = capsys.readouterr().err
    # every object under the prefix is counted (the hidden one and the text file too, left out afterwards)
    assert f"Listing {url}: {len(objects) + 2} objects" in err
    assert err.index(f"Listing {url}") < err.index("Embedding images")
    assert SECRET not in err
