"""Every notebook in notebooks/ runs top to bottom in a real kernel, on real images, with the offline model.

Notebooks read ``PICSIFT_NOTEBOOK_FOLDER`` (here: 120 Tux Paint stamps from six categories, to keep the suite
quick; by default the whole demo set) and ``PICSIFT_NOTEBOOK_MODEL`` (here: the shipped offline model, which
really understands images and text). The executed copies are kept in test-artifacts/notebooks/ to look at.
Each notebook gets a kernel of its own, forked from a zygote that has imported torch and ipykernel
(tests/fast_python.py; ``PICSIFT_TEST_FRESH_PYTHON=1`` starts fresh ones): 53 s for the nine tests instead of 144.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from . import fast_python
from .conftest import stamp_files

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "notebooks"
CATEGORIES = ("animals", "vehicles", "food", "plants", "town", "space")

pytestmark = pytest.mark.offline_model


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory: pytest.TempPathFactory, stamps_root: Path) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("notebooks") / "images"
    for path in stamp_files(stamps_root, CATEGORIES, 20):
        target = folder / path.relative_to(stamps_root).parts[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return {"PICSIFT_NOTEBOOK_FOLDER": str(folder), "PICSIFT_NOTEBOOK_MODEL": "picsift-offline", "HF_HUB_OFFLINE": "1"}


def test_the_notebooks_are_stored_without_outputs() -> None:
    import nbformat

    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "curation"}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs stored in git"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, notebook_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    for key, value in notebook_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the pictures
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}},
                            kernel_manager_class=fast_python.kernel_manager_class())  # forked: imports paid once
    try:
        client.execute()
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, ARTIFACTS / path.name)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 2, f"{path.name} should show its results as pictures"
