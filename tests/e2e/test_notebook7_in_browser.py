"""The app in Jupyter Notebook 7 (the classic-style notebook page built on JupyterLab's parts), in Chromium."""

from __future__ import annotations

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
from .harness import chromium, jupyterlab, open_and_run, write_notebook


def test_the_app_in_notebook_7_searches_and_the_map_selection_reaches_python(
        shared_folder: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("notebook", minversion="7")
    root = tmp_path_factory.mktemp("notebook7")
    write_notebook(root / "app.ipynb", [
        "import picsift\n"
        f"panel = picsift.app({str(shared_folder)!r}, model={tiny_model!r}, index='exact', limit=100)\n"
        "panel",
    ])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(root, app="notebook") as server, chromium() as page:
        page.set_default_timeout(120_000)
        try:
            open_and_run(page, server, "app.ipynb")
            assert "/notebooks/app.ipynb" in page.url  # Notebook 7's page, not JupyterLab's
            wait_until_searchable(page)
            shown = parts_shown(page, ".jp-OutputArea-output")
            assert all(n == 1 for n in shown.values()), shown
            assert search_and_see_thumbnails(page, "a red car") == 36
            selected = box_select_on_map(page)
            wait_for_selection_from_python(page, selected)
            page.locator(".jp-OutputArea-output").first.screenshot(path=str(ARTIFACTS / "notebook7.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook7-failure.png"))
            print(server.log.read_text()[-4000:])
            raise
