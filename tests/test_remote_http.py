"""A library over an ``https``-style URL: a web server's page listing its images (fsspec's HTTP file system follows
its links), served by the standard library on 127.0.0.1, with faults injected: 5xx answers, slow answers, a refusal."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import picsift
from picsift.core.catalog import FileState
from picsift.core.image_files import read_image_object
from picsift.core.storage import REMOTE_READERS, StorageUnavailableError, list_objects, remote_root

from .conftest import stamp_files

pytest.importorskip("upath")
pytest.importorskip("aiohttp")


@dataclass
class Faults:
    """What the server does wrong, and what it saw."""

    fail_first: dict[str, int] = field(default_factory=dict)  # path -> GETs answered 503 before it works
    fail_always: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds before answering each image GET
    refuse: bool = False  # 403 to everything (credentials withdrawn)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    faults: Faults

    def do_GET(self) -> None:
        faults = self.faults
        if faults.refuse:
            self.send_error(403)
            return
        with faults.lock:
            failing = self.path in faults.fail_always or faults.fail_first.get(self.path, 0) > 0
            if self.path in faults.fail_first and faults.fail_first[self.path] > 0:
                faults.fail_first[self.path] -= 1
            faults.in_flight += 1
            faults.peak = max(faults.peak, faults.in_flight)
        try:
            if failing:
                self.send_error(503)
                return
            if self.path.endswith(".png"):
                time.sleep(faults.delay)
            super().do_GET()
        finally:
            with faults.lock:
                faults.in_flight -= 1

    def do_HEAD(self) -> None:
        if self.faults.refuse:
            self.send_error(403)
            return
        super().do_HEAD()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, stamps_root: Path) -> Iterator[tuple[str, Path, Faults]]:
    """http://127.0.0.1:PORT/images/ listing 9 real stamps (6 in a subfolder), served until the test ends."""
    folder = tmp_path / "site" / "images"
    for i, path in enumerate(stamp_files(stamps_root, ("animals", "food", "town"), 3)):
        target = folder / ("sub" if i < 6 else "") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    faults = Faults()
    handler = functools.partial(type("Handler", (FaultyHandler,), {"faults": faults}), directory=str(folder.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/images/", folder, faults
    server.shutdown()
    server.server_close()
    thread.join()


def _relative(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_a_web_listing_is_a_library(site: tuple[str, Path, Faults], tiny_model: str, tmp_path: Path,
                                    stamps_root: Path) -> None:
    url, folder, _ = site
    with picsift.Library(url, workspace=tmp_path / "ws", model=tiny_model) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 9 and report.skipped == []
        assert sorted(lib.images()["path"]) == [url + p for p in _relative(folder)]
        assert lib.update(progress=False).unchanged == 9  # sizes and Last-Modified are compared, nothing read
        changed = sorted(folder.rglob("*.png"))[0]
        changed.write_bytes(stamp_files(stamps_root, ("space",), 1)[0].read_bytes())
        again = lib.update(progress=False)
        assert (again.changed, again.embedded, again.unchanged) == (1, 1, 8)


def test_5xx_answers_are_retried_then_skipped_and_reported(site: tuple[str, Path, Faults], tiny_model: str,
                                                           tmp_path: Path) -> None:
    url, folder, faults = site
    flaky, broken = (f"/images/{p}" for p in _relative(folder)[:2])
    faults.fail_first[flaky] = 2  # answers 503 twice, then the image
    faults.fail_always.add(broken)
    with picsift.Library(url, workspace=tmp_path / "ws", model=tiny_model) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 8  # the rest completes, the flaky one included
        assert [path for path, _ in report.skipped] == [broken.removeprefix("/images/")]
        reason = report.skipped[0][1]
        assert "503" in reason and "after 4 attempts" in reason
        faults.fail_always.clear()  # the server heals: the next update reads what was skipped
        healed = lib.update(progress=False)
        assert healed.embedded == 1 and healed.skipped == [] and len(lib.store) == 9


def test_slow_answers_are_read_concurrently_within_a_bound(site: tuple[str, Path, Faults], tiny_model: str,
                                                           tmp_path: Path) -> None:
    url, _, faults = site
    faults.delay = 0.3
    with picsift.Library(url, workspace=tmp_path / "ws", model=tiny_model) as lib:
        assert lib.update(progress=False).embedded == 9
    assert 1 < faults.peak <= REMOTE_READERS  # reads overlap each other, and never more than the readers at once


def test_refused_access_stops_the_update_and_deletes_nothing(site: tuple[str, Path, Faults], tiny_model: str,
                                                             tmp_path: Path) -> None:
    url, _, faults = site
    with picsift.Library(url, workspace=tmp_path / "ws", model=tiny_model) as lib:
        lib.update(progress=False)
        faults.refuse = True
        with pytest.raises(StorageUnavailableError, match="access was refused"):
            lib.update(progress=False)
        assert len(lib.images()) == 9 and len(lib.store) == 9


def test_a_ray_workers_read_retries_then_reports_and_names_the_version_it_read(site: tuple[str, Path, Faults]) -> None:
    """What each Ray worker runs for an object (picsift.core.ray_embed): the same retries and skip-and-report as
    this process's reads, and the read version's state, which the driver compares with its listing."""
    url, folder, faults = site
    flaky, broken = _relative(folder)[:2]
    faults.fail_first[f"/images/{flaky}"] = 2  # answers 503 twice, then the image
    faults.fail_always.add(f"/images/{broken}")
    root = remote_root(url)
    listed = list_objects(root).files
    read = read_image_object(root, flaky)
    assert read.error is None and read.data == (folder / flaky).read_bytes()
    assert read.state == listed[flaky]  # the version read is the version listed
    failed = read_image_object(root, broken)
    assert failed.state == FileState(0, 0) and failed.data == b""  # no listing names (0, 0): read again next time
    assert failed.error is not None and "503" in failed.error and "after 4 attempts" in failed.error
    assert read_image_object(root, "sub/gone.png").state is None  # vanished
