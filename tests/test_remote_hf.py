"""A Hugging Face dataset saved with ``save_to_disk``, indexed in place (``hfdataset:///PATH``): its images are
read from the Arrow files, never written out, and a crafted dataset folder is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import picsift
from picsift.core.catalog import content_id
from picsift.errors import PicsiftError

from .conftest import stamp_files

datasets = pytest.importorskip("datasets")
pytest.importorskip("upath")


@pytest.fixture
def saved(tmp_path: Path, stamps_root: Path) -> tuple[Path, list[bytes]]:
    """A DatasetDict (train: 6 images, test: 3) whose Image column holds the bytes, and a ClassLabel column."""
    files = stamp_files(stamps_root, ("animals", "food", "town"), 3)
    images = [p.read_bytes() for p in files]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})

    def part(rows: range) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"image": [{"bytes": images[i], "path": None} for i in rows],
                                           "label": [i // 3 for i in rows]}, features=features)

    folder = tmp_path / "dataset"
    datasets.DatasetDict({"train": part(range(6)), "test": part(range(6, 9))}).save_to_disk(str(folder))
    return folder, images


def test_a_saved_dataset_is_indexed_in_place(saved: tuple[Path, list[bytes]], tiny_model: str,
                                             tmp_path: Path) -> None:
    folder, images = saved
    url = f"hfdataset://{folder}"
    with picsift.Library(url, workspace=tmp_path / "ws", model=tiny_model) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 9 and report.skipped == []
        listing = lib.images()
        assert sorted(listing["path"]) == sorted([f"{url}/train/{i:08d}.png" for i in range(6)]
                                                 + [f"{url}/test/{i:08d}.png" for i in range(3)])
        assert set(listing["id"]) == {content_id(data) for data in images}  # the same ids as the files would get
        assert lib.update(progress=False).unchanged == 9
        assert len(lib.search("a cat", limit=3)) == 3
    assert not [p for p in (tmp_path / "ws").rglob("*") if p.suffix == ".png"]  # nothing copied out


def test_a_dataset_folder_naming_files_outside_is_refused(saved: tuple[Path, list[bytes]], tiny_model: str,
                                                          tmp_path: Path) -> None:
    folder, _ = saved
    state = folder / "train" / "state.json"
    crafted = json.loads(state.read_text())
    crafted["_data_files"] = [{"filename": "../../outside.arrow"}]
    state.write_text(json.dumps(crafted))
    with (picsift.Library(f"hfdataset://{folder}", workspace=tmp_path / "ws", model=tiny_model) as lib,
          pytest.raises(PicsiftError, match="not a plain name")):
        lib.update(progress=False)
