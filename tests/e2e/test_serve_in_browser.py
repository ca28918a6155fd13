"""``picsift serve``: the app as a web page on Voila, in Chromium; the token, several tabs, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS
from .flows import (
    box_select_on_map,
    parts_shown,
    search_and_see_thumbnails,
    wait_for_selection_from_python,
    wait_until_searchable,
)
from .harness import chromium, free_port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    token: str
    log: Path
    kernels: set[int]  # pids of the kernels it started, recorded while they run


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float = 180) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if process.poll() is not None:
            raise RuntimeError(f"picsift serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"picsift serve printed no {pattern!r} in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def kernel_pids(pid: int) -> set[int]:
    import psutil

    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def stop(pids: set[int]) -> None:
    """End exactly these processes (those a test started), if they still run."""
    import psutil

    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


@pytest.fixture(scope="module")
def served(shared_folder: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pytest.importorskip("voila")  # pip install "picsift[serve]" (in .[dev])
    root = tmp_path_factory.mktemp("serve")
    log = root / "serve.log"
    port, token = free_port(), secrets.token_urlsafe(16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "picsift", "serve", str(shared_folder), "--model", tiny_model, "--index", "exact",
             "--no-browser", "--port", str(port), f"--token={token}", "--limit", "100"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
            # Ctrl-C reaches it as in a terminal even when pytest itself runs in the background (where a shell
            # starts jobs with SIGINT ignored, and a child inherits that)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    served = Served(process, "", port, token, log, set())
    try:
        served.url = wait_for_line(log, r"picsift: open (\S+)", process)[1]
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        stop(served.kernels | kernel_pids(process.pid))


def status_of(url: str) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=60) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_the_url_carries_a_token_and_without_it_there_is_nothing(served: Served) -> None:
    assert served.url == f"http://127.0.0.1:{served.port}/?token={served.token}"
    base = f"http://127.0.0.1:{served.port}"
    for path in ("/", "/?token=wrong", "/voila/render/picsift.ipynb", "/api/kernels", "/voila/files/picsift.ipynb"):
        code, body = status_of(base + path)
        assert code in (302, 403, 404), (path, code)  # a redirect to the login form at most
        assert "picsift-page" not in body and "picsift.widgets" not in body, path
    code, body = status_of(served.url)
    assert code == 200 and "picsift · images" in body  # the page, titled after the folder


def test_the_page_searches_shows_thumbnails_and_the_map_selection_reaches_python(served: Served) -> None:
    with chromium() as page:
        page.set_default_timeout(120_000)
        try:
            page.goto(served.url)
            wait_until_searchable(page)
            assert page.title() == "picsift · images"
            status = page.locator(".picsift-page-status").inner_text()
            assert "36 images" in status and "36 embedded" in status and "index exact" in status
            shown = parts_shown(page)
            assert all(n >= 1 for n in shown.values()), shown
            assert search_and_see_thumbnails(page, "a red car") == 36
            served.kernels |= kernel_pids(served.process.pid)
            selected = box_select_on_map(page)
            wait_for_selection_from_python(page, selected)
            page.screenshot(path=str(ARTIFACTS / "serve-page.png"))
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "serve-failure.png"))
            print(served.log.read_text()[-4000:])
            raise


def test_two_tabs_work_at_once_each_with_its_own_kernel(served: Served) -> None:
    with chromium() as first:
        second = first.context.browser.new_page(viewport={"width": 1500, "height": 1500})
        for page in (first, second):
            page.set_default_timeout(120_000)
            page.goto(served.url)
        for page in (first, second):
            wait_until_searchable(page)
        served.kernels |= kernel_pids(served.process.pid)
        assert search_and_see_thumbnails(second, "a flower") == 36
        assert search_and_see_thumbnails(first, "a green apple") == 36
        assert "a flower" in second.locator(".picsift-gallery .picsift-title").inner_text()  # tabs do not share views
        selected = box_select_on_map(first)
        wait_for_selection_from_python(first, selected)
        wait_for_selection_from_python(second, 0)


def test_ctrl_c_stops_the_server_and_its_kernels(served: Served) -> None:
    import psutil

    kernels = served.kernels | kernel_pids(served.process.pid)
    assert kernels, "the tests above ran kernels"
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=60) == 0
    assert wait_for_line(served.log, r"picsift: stopped", served.process)
    for pid in kernels:
        try:
            process = psutil.Process(pid)
            process.wait(timeout=30)  # a kernel still shutting down; it must be gone soon
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            pytest.fail(f"kernel {pid} ({process.cmdline()}) still runs after Ctrl-C")
