"""The app in marimo (its widgets as ``mo.ui.anywidget`` elements, laid out by
:func:`picsift.widgets.marimo.layout`), served by a real ``marimo run`` and driven in Chromium: search,
thumbnails, score range, the map's selection in Python."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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

NOTEBOOK = '''
import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import marimo as mo
    import picsift
    from picsift.widgets.marimo import elements

    panel = picsift.app({folder!r}, model={model!r}, index="exact", limit=100)
    explorer = elements(panel)["explorer"]
    panel  # marimo shows it with picsift.widgets.marimo.layout
    return explorer, mo, panel


@app.cell
def _(explorer, mo, panel):
    explorer.value  # re-runs when the map's selection changes in the browser
    mo.Html(f"<p>Python sees <span class='py-selected'>{{len(panel.selection)}}</span> selected</p>")
    return
'''


@contextlib.contextmanager
def marimo_run(notebook: Path, timeout: float = 120) -> object:
    """``marimo run`` on 127.0.0.1 (free port, random token); yields the page's URL; stops what it started."""
    import psutil

    port, token = free_port(), secrets.token_urlsafe(16)
    log = notebook.with_suffix(".log")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARIMO_SKIP_UPDATE_CHECK": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "marimo", "run", str(notebook), "--headless", "--host", "127.0.0.1", "--port",
             str(port), f"--token-password={token}", "--no-sandbox", "--no-skew-protection"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=notebook.parent)
    started: set[int] = {process.pid}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"marimo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"marimo did not answer in {timeout}s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/?access_token={token}", log
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            started |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        for pid in started - {process.pid}:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def test_the_app_in_marimo_searches_filters_and_the_map_selection_reaches_python(
        shared_folder: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("marimo")
    notebook = tmp_path_factory.mktemp("marimo") / "picsift_app.py"
    notebook.write_text(NOTEBOOK.format(folder=str(shared_folder), model=tiny_model))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with marimo_run(notebook) as (url, log), chromium() as page:
        page.set_default_timeout(120_000)
        try:
            page.goto(url)
            wait_until_searchable(page)
            shown = parts_shown(page)
            assert all(n == 1 for n in shown.values()), shown
            assert search_and_see_thumbnails(page, "a red car") == 36
            selected = box_select_on_map(page)
            wait_for_selection_from_python(page, selected)  # map -> Python -> the gallery
            page.wait_for_selector(f".py-selected:text-is('{selected}')")  # and a cell that reads panel.selection
            page.locator(".picsift-preset-above").click()  # the score range narrows the gallery, through Python
            gallery = page.locator(".picsift-gallery").element_handle()
            count = page.locator(".picsift-range-count").element_handle()
            page.wait_for_function("([g, c]) => Number(g.dataset.count) < 36 && g.dataset.count === c.dataset.count",
                                   arg=[gallery, count])
            page.screenshot(path=str(ARTIFACTS / "marimo.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "marimo-failure.png"))
            print(log.read_text()[-4000:])
            raise
