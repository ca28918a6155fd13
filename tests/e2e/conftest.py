"""Fixtures for the real-browser tests: a JupyterLab with a notebook showing picsift.app(), in Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import stamp_files
from .harness import CHROMIUM, chromium, jupyterlab, open_and_run, write_notebook

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_ready() -> None:
    pytest.importorskip("playwright")
    pytest.importorskip("anywidget")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (make setup does)")
    static = Path(__file__).resolve().parents[2] / "src" / "picsift" / "static" / "gallery.js"
    if not static.exists():
        pytest.fail("the widget front-ends are not built: npm ci && npm run build (make setup does)")


@pytest.fixture(scope="module")
def lab_page(e2e_ready: None, tmp_path_factory: pytest.TempPathFactory, tiny_model: str,
             stamps_root: Path) -> Iterator[Any]:
    """A Chromium page on a JupyterLab notebook that ran ``picsift.app(folder)`` (36 real images)."""
    from picsift import Library

    root = tmp_path_factory.mktemp("lab")
    folder = root / "images"
    for path in stamp_files(stamps_root, ("animals", "vehicles", "food", "plants"), 9):
        target = folder / path.relative_to(stamps_root).parts[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    with Library(folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)  # the kernel then starts ready (embedding is tested in Python)
    write_notebook(root / "app.ipynb", [
        "import picsift\n"
        f"panel = picsift.app({str(folder)!r}, model={tiny_model!r}, index='exact', limit=100)\n"
        "panel",
    ])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(root) as lab, chromium() as page:
        page.set_default_timeout(60_000)
        try:
            open_and_run(page, lab, "app.ipynb")
            page.wait_for_selector(".picsift-prompt[data-ready='true']", timeout=120_000)
            page.wait_for_selector(".picsift-explorer[data-first-frame]", timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "00-setup-failure.png"))
            print(lab.log.read_text()[-4000:])
            raise
        yield page
        page.screenshot(path=str(ARTIFACTS / "99-final.png"))
