"""Fixtures for the real-browser tests: a JupyterLab with a notebook showing picsift.app(), in Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ids_by_folder, stamp_files
from .harness import CHROMIUM, chromium, jupyterlab, open_and_run, write_notebook

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
#: Labels of the 9 vehicles (in path order): how many "car" objects each has, and which carry the image
#: tag "outdoor" (so do the first two animals). The filter tests check the gallery against these.
VEHICLE_CARS = (0, 1, 2, 3, 0, 1, 2, 3, 2)
OUTDOOR_VEHICLES = frozenset({0, 2, 4, 6, 8})
OUTDOOR_ANIMALS = 2


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


@pytest.fixture(scope="session")
def labelled_counts() -> dict[str, int]:
    """How many of the 36 images pass the filters the tests add, counted from the labels above."""
    cars = [i for i, n in enumerate(VEHICLE_CARS) if n >= 2]
    return {"cars>=2": len(cars), "cars>=2 and outdoor": len([i for i in cars if i in OUTDOOR_VEHICLES])}


def label(library: Any) -> None:
    """Car objects and "outdoor" tags (see VEHICLE_CARS) on the e2e library's images."""
    folders = ids_by_folder(library)
    meta = library.labels
    for i, image_id in enumerate(folders["vehicles"]):
        for k in range(VEHICLE_CARS[i]):
            meta.add_object(image_id, "car", bbox=(10 * k, 10, 10 * k + 8, 18), author="ann")
        if i in OUTDOOR_VEHICLES:
            meta.add_tag(image_id, "outdoor")
    for image_id in folders["animals"][:OUTDOOR_ANIMALS]:
        meta.add_tag(image_id, "outdoor")


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
        label(library)
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


@pytest.fixture(scope="session")
def shared_folder(e2e_ready: None, tmp_path_factory: pytest.TempPathFactory, tiny_model: str,
                  stamps_root: Path) -> Path:
    """36 real images in four folders, embedded with the tiny model (exact index): shared, read-mostly, by the
    tests of the other front ends (picsift serve, Notebook 7, marimo), which open it one server at a time."""
    from picsift import Library

    folder = tmp_path_factory.mktemp("shared") / "images"
    for path in stamp_files(stamps_root, ("animals", "vehicles", "food", "plants"), 9):
        target = folder / path.relative_to(stamps_root).parts[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    with Library(folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
    return folder
