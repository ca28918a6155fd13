"""A library over an S3 URL, against a real S3 API server (moto's, on 127.0.0.1) driven through s3fs as a user's
bucket would be: update, incremental listing, URLs in results, thumbnails, secrets, faults, a killed update."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import picsift
from picsift.cli import main
from picsift.core.catalog import content_id
from picsift.core.storage import StorageUnavailableError, default_workspace
from picsift.errors import PicsiftError

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER

pytest.importorskip("s3fs")
pytest.importorskip("upath")
moto_server = pytest.importorskip("moto.server")

SECRET = "s3cr3t-" + uuid.uuid4().hex  # a credential that must never be written or shown


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on 127.0.0.1, started and stopped here."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def options(s3_endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": s3_endpoint, "key": "AKIDPICSIFT", "secret": SECRET}


@pytest.fixture
def s3(options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**options, skip_instance_cache=True)


@pytest.fixture
def photos(s3: Any, stamps_root: Path) -> tuple[str, dict[str, bytes]]:
    """A fresh bucket holding 12 real stamps under photos/CATEGORY/, plus one byte-identical copy."""
    bucket = "picsift-" + uuid.uuid4().hex[:12]
    s3.mkdir(bucket)
    objects: dict[str, bytes] = {}
    for path in stamp_files(stamps_root, ("animals", "food", "vehicles"), 4):
        objects[f"{path.relative_to(stamps_root).parts[0]}/{path.name}"] = path.read_bytes()
    first = next(iter(objects.values()))
    objects["copies/the-same.png"] = first
    for key, data in objects.items():
        s3.pipe(f"{bucket}/photos/{key}", data)
    s3.pipe(f"{bucket}/photos/.hidden/skip.png", first)
    s3.pipe(f"{bucket}/photos/notes.txt", b"not an image")
    s3.pipe(f"{bucket}/elsewhere/outside.png", first)
    return f"s3://{bucket}/photos", objects


def test_a_bucket_is_a_library_whose_paths_are_urls(photos: tuple[str, dict[str, bytes]], options: dict[str, Any],
                                                   tiny_model: str, tmp_path: Path) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        report = lib.update(progress=False)
        unique = {content_id(data) for data in objects.values()}
        assert report.added == len(objects) and report.skipped == []
        assert report.embedded == len(unique) == len(objects) - 1  # the copy is not embedded twice
        images = lib.images()
        assert sorted(images["path"]) == sorted(f"{url}/{key}" for key in objects)
        assert set(images["id"]) == unique  # ids are the hash of the bytes, wherever they are
        found = lib.search("an animal", limit=5)
        assert len(found) == 5 and all(p.startswith(url + "/") for p in found.df["path"])
        assert lib.status()["root"] == url and lib.status()["ready"]
        with pytest.raises(PicsiftError, match="local folders only"):
            lib.files.delete(found.ids[:1].tolist())
        assert len(lib.images()) == len(objects)
        # the gallery reads through the same file system and caches in the workspace
        from picsift.widgets._source import ImageSource

        names, thumbnails = ImageSource(lib).thumbnail_batch(found.ids.tolist())
        assert all(thumbnails) and all(name.endswith(".png") for name in names)
        assert len(list((tmp_path / "ws" / "thumbnails").rglob("*.webp"))) == 5


def test_only_new_and_changed_objects_are_read(photos: tuple[str, dict[str, bytes]], options: dict[str, Any],
                                               s3: Any, tiny_model: str, tmp_path: Path, stamps_root: Path) -> None:
    url, objects = photos
    bucket_path = url.removeprefix("s3://")
    keys = sorted(objects)
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=False)
        again = lib.update(progress=False)
        assert (again.unchanged, again.added, again.changed, again.embedded) == (len(objects), 0, 0, 0)

        other = stamp_files(stamps_root, ("space",), 2)
        s3.pipe(f"{bucket_path}/{keys[0]}", other[0].read_bytes())  # overwritten: a new ETag
        s3.pipe(f"{bucket_path}/new/copy.png", objects[keys[1]])  # a copy under another key
        s3.rm(f"{bucket_path}/{keys[2]}")
        report = lib.update(progress=False)
        assert (report.changed, report.added, report.removed) == (1, 1, 1)
        assert report.embedded == 1 and report.reused == 1  # only the overwritten object's new content
        assert report.unchanged == len(objects) - 2
        paths = dict(zip(lib.images()["path"], lib.images()["id"], strict=True))
        assert paths[f"{url}/{keys[0]}"] == content_id(other[0].read_bytes())
        assert paths[f"{url}/new/copy.png"] == content_id(objects[keys[1]])
        assert f"{url}/{keys[2]}" not in paths


def test_no_secret_is_written_or_shown(photos: tuple[str, dict[str, bytes]], s3_endpoint: str, tiny_model: str,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    url, _ = photos
    workspace = tmp_path / "ws"
    flags = ["--workspace", str(workspace), "--model", tiny_model, "--storage-option", f"endpoint_url={s3_endpoint}",
             "--storage-option", "key=AKIDPICSIFT", "--storage-option", f"secret={SECRET}"]
    with caplog.at_level(logging.DEBUG, logger="picsift"):
        assert main(["update", url, *flags, "--quiet"]) == 0
        assert main(["search", url, "a red fruit", *flags, "--limit", "3"]) == 0
        assert main(["status", url, *flags, "--json"]) == 0
    out, err = capsys.readouterr()
    assert f"{url}/" in out  # results name the objects by URL
    for text in (out, err, caplog.text):
        assert SECRET not in text
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert files and not [p for p in files if SECRET.encode() in p.read_bytes()]
    with picsift.Library(url, storage_options={"endpoint_url": s3_endpoint, "key": "AKIDPICSIFT", "secret": SECRET},
                         workspace=workspace, model=tiny_model) as lib:
        assert SECRET not in repr(lib) + repr(lib.root) + str(lib.status())


def test_default_workspace_is_in_the_cache_and_announced_once(photos: tuple[str, dict[str, bytes]],
                                                               options: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    url, _ = photos
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="picsift"):
        with picsift.Library(url, storage_options=options) as lib:
            assert lib.workspace == default_workspace(url)
            assert lib.workspace.is_relative_to(tmp_path / "cache" / "picsift")
            assert url.removeprefix("s3://").replace("/", "-") in lib.workspace.name
        with picsift.Library(url, storage_options=options):
            pass
    announced = [r for r in caplog.records if "workspace of" in r.getMessage()]
    assert len(announced) == 1 and str(default_workspace(url)) in announced[0].getMessage()


def test_a_vanished_bucket_stops_the_update_and_deletes_nothing(photos: tuple[str, dict[str, bytes]],
                                                                 options: dict[str, Any], s3: Any, tiny_model: str,
                                                                 tmp_path: Path) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=False)
        s3.rm(url.removeprefix("s3://").split("/")[0], recursive=True)
        with pytest.raises(StorageUnavailableError, match=r"does not exist.*nothing was changed"):
            lib.update(progress=False)
        assert len(lib.images()) == len(objects) and len(lib.store) == len(objects) - 1
        assert len(lib.search("a car", limit=3)) == 3


def test_an_emptied_prefix_stops_the_update_and_deletes_nothing(photos: tuple[str, dict[str, bytes]],
                                                                options: dict[str, Any], s3: Any, tiny_model: str,
                                                                tmp_path: Path) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=False)
        s3.rm(url.removeprefix("s3://"), recursive=True)  # the bucket stays, holding other prefixes
        with pytest.raises(StorageUnavailableError, match="no object is there"):
            lib.update(progress=False)
        assert len(lib.images()) == len(objects)


def test_an_object_deleted_between_listing_and_reading_is_reported(photos: tuple[str, dict[str, bytes]],
                                                                   options: dict[str, Any], s3: Any,
                                                                   tiny_model: str, tmp_path: Path) -> None:
    url, objects = photos
    victim = sorted(objects)[3]

    def delete_after_listing(done: int, total: int) -> None:
        if done == 0:  # the listing is made, no object is read yet
            s3.rm(f"{url.removeprefix('s3://')}/{victim}")

    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        report = lib.update(progress=False, on_progress=delete_after_listing)
        assert report.skipped == [(victim, "file vanished before it could be read")]
        assert len(lib.images()) == len(objects) - 1
        assert lib.update(progress=False).unchanged == len(objects) - 1


def test_storage_options_are_refused_for_a_local_folder(image_folder: Path) -> None:
    with pytest.raises(PicsiftError, match="apply to a URL"):
        picsift.Library(image_folder, storage_options={"anon": True})


def test_credentials_in_the_url_are_refused_without_being_shown() -> None:
    with pytest.raises(PicsiftError, match="never in the URL") as raised:
        picsift.Library(f"https://user:{SECRET}@127.0.0.1:9/images/")
    assert SECRET not in str(raised.value)


# A child process runs the update and SIGKILLs itself right after the nth batch is committed.
CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys, picsift, picsift.core.store
    url, endpoint, secret, workspace, spec, nth = sys.argv[1:7]
    kill_after(picsift.core.store.EmbeddingStore, "commit_rows", int(nth))
    options = {"endpoint_url": endpoint, "key": "AKIDPICSIFT", "secret": secret}
    picsift.Library(url, storage_options=options, workspace=workspace, model=spec, batch_size=4).update(progress=False)
    """
)


def test_a_killed_update_resumes_without_duplicates(photos: tuple[str, dict[str, bytes]], options: dict[str, Any],
                                                    tiny_model: str, tmp_path: Path) -> None:
    url, objects = photos
    workspace = tmp_path / "ws"
    child = fast_python.run([sys.executable, "-c", CHILD, url, options["endpoint_url"], SECRET, str(workspace),
                             tiny_model, "2"], capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr
    with picsift.Library(url, storage_options=options, workspace=workspace, model=tiny_model, batch_size=4) as lib:
        kept = len(lib.store)
        assert 0 < kept < len(objects) - 1  # what was committed before the kill is kept
        report = lib.update(progress=False)
        assert report.embedded == len(objects) - 1 - kept  # and only the rest is embedded
        ids = lib.store.snapshot().ids.tolist()
        assert len(ids) == len(set(ids)) == len(objects) - 1
        assert sorted(lib.images()["path"]) == sorted(f"{url}/{key}" for key in objects)


def test_a_result_url_is_a_query_image(photos: tuple[str, dict[str, bytes]], options: dict[str, Any],
                                       tiny_model: str, tmp_path: Path) -> None:
    url, objects = photos
    with picsift.Library(url, storage_options=options, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=False)
        key = sorted(objects)[5]
        for reference in (f"{url}/{key}", key):  # the URL a result shows, or the key under the root
            found = lib.similar(reference, limit=1)
            assert found.ids.tolist() == [content_id(objects[key])]


@pytest.mark.parametrize("url", ["s3://../../etc", "https://host/../../x/", "gs://b/" + "a/" * 200, "s3://b/\x00/.."])
def test_a_default_workspace_is_one_folder_in_the_cache_whatever_the_url(url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = default_workspace(url)
    assert folder.parent == tmp_path / "picsift" / "remote" and folder.name not in ("", ".", "..")
    assert len(folder.name) < 80 and default_workspace(url) == folder != default_workspace(url + "x")
