"""Region search on real files: a small real picture pasted into a corner of a larger one is found by its region."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.cli import main
from picsift.core.regions import CELLS, crop_pixels, pixel_box, region_id
from picsift.errors import NotIndexedError

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER

#: The bottom-right cell of the 3x3 grid: a picture pasted there fills it exactly.
CORNER = len(CELLS) - 1


def flat(path: Path, size: tuple[int, int]) -> Image.Image:
    """A stamp (an RGBA cut-out) on white, resized to ``size``."""
    with Image.open(path) as image:
        rgba = image.convert("RGBA").resize(size)
    out = Image.new("RGB", size, "white")
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def composite(background: Path, small: Path, side: int = 600) -> Image.Image:
    """``background`` at ``side`` px with ``small`` filling the bottom-right cell of the 3x3 grid."""
    picture = flat(background, (side, side))
    left, top, right, bottom = crop_pixels(CORNER, side, side)
    picture.paste(flat(small, (right - left, bottom - top)), (left, top))
    return picture


def stamp(root: Path, name: str) -> Path:
    return next(root.rglob(name))


@pytest.fixture
def corner_folder(tmp_path: Path, stamps_root: Path) -> Path:
    """Ten real stamps (houses, fruit, vehicles) and ``corner.png``: a house with a giraffe in its corner."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in stamp_files(stamps_root, ("town", "food", "vehicles"), 4)[:10]:
        flat(path, (300, 300)).save(folder / f"{path.parent.name}-{path.stem}.png")
    composite(stamp(stamps_root, "farm.png"), stamp(stamps_root, "giraffe.png")).save(folder / "corner.png")
    return folder


def corner_id(lib: Library) -> str:
    return lib.labels.image_id(str(lib.root / "corner.png"))


def region_ids(lib: Library) -> set[str]:
    store = lib._engine.region_store(create=False)
    return set() if store is None else set(store.snapshot().ids.tolist())


def test_a_pasted_picture_is_found_by_its_region_above_the_whole_image(corner_folder: Path, stamps_root: Path,
                                                                      tiny_model: str) -> None:
    giraffe = flat(stamp(stamps_root, "giraffe.png"), (240, 240))
    with Library(corner_folder, model=tiny_model, regions=True, batch_size=8) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 11 and report.regions == 11 * len(CELLS)
        assert f"{11 * len(CELLS)} regions embedded" in report.summary()
        assert lib.status()["models"] == {lib.spec.text: 11}  # the region store is no second model
        assert lib.status()["embedded_regions"] == 11 * len(CELLS)
        whole = lib.similar(giraffe, limit=None)
        found = lib.similar(giraffe, regions=True, limit=None)
        target = corner_id(lib)
        rank_whole = whole.ids.tolist().index(target)
        assert found.ids[0] == target and rank_whole > 0  # first by its region, not by the whole picture
        row = found.df.iloc[0]
        assert row["score"] > 0.999 and row["score"] > row["image_score"]  # its corner cell holds the query picture
        assert row["box"] == pixel_box(CORNER, 600, 600) == [360.0, 360.0, 240.0, 240.0]
        assert np.isclose(row["image_score"], whole.df.set_index("id").loc[target, "score"], atol=1e-4)
        # every image in scope is scored, and none scores below its whole picture
        assert len(found.scores) == len(whole.scores) == 11 and found.histogram(bins=4)[0].sum() == 11
        by_id = dict(zip(whole.scope_ids.tolist(), whole.scores.tolist(), strict=True))
        assert all(s >= by_id[i] - 1e-4 for i, s in zip(found.scope_ids.tolist(), found.scores.tolist(), strict=True))
        # a box is the whole picture where that scores higher than every region, else a cell inside the picture
        for box, score, image_score in zip(found.df["box"], found.df["score"], found.df["image_score"], strict=True):
            assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= 600.01 and box[1] + box[3] <= 600.01
            assert (box[:2] == [0.0, 0.0] and box[2] in (300.0, 600.0)) or score > image_score
        top = lib.similar(giraffe, regions=True, limit=3)  # the same best three, boxes and scores, as with no limit
        assert top.ids.tolist() == found.ids[:3].tolist() and top.df["box"].tolist() == found.df["box"][:3].tolist()
        np.testing.assert_allclose(top.df["score"], found.df["score"][:3], atol=1e-6)
        # within a scope: only those images
        assert set(lib.similar(giraffe, regions=True, within=[target]).ids) == {target}


def test_regions_follow_the_images_and_stay_off_until_asked(corner_folder: Path, tiny_model: str) -> None:
    with Library(corner_folder, model=tiny_model, batch_size=8) as lib:
        assert lib.update(progress=False).regions == 0 and lib._engine.region_store(create=False) is None
        with pytest.raises(NotIndexedError, match="regions=True"):
            lib.search("a giraffe", regions=True)
    with Library(corner_folder, model=tiny_model, regions=True, batch_size=8) as lib:
        report = lib.update(progress=False)
        assert report.embedded == 0 and report.regions == 11 * len(CELLS)  # images kept, regions added
        target = corner_id(lib)
        assert {region_id(target, k) for k in range(len(CELLS))} <= region_ids(lib)
    with Library(corner_folder, model=tiny_model, batch_size=8) as lib:  # the workspace remembers regions=True
        assert lib.regions
        (corner_folder / "corner.png").unlink()
        (corner_folder / "extra.png").write_bytes(sorted(corner_folder.glob("*-*.png"))[0].read_bytes())
        report = lib.update(progress=False)
        assert report.removed == 1 and report.regions == 0  # extra.png is a copy: its regions exist already
        assert not any(r.startswith(target[:29]) for r in region_ids(lib))  # removed with the image
        assert len(region_ids(lib)) == 10 * len(CELLS)
        assert len(lib.search("a house", regions=True, limit=None).scores) == 10


def test_cli_update_and_search_with_regions(corner_folder: Path, tiny_model: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["update", str(corner_folder), "--model", tiny_model, "--quiet", "--regions"]) == 0
    assert f"{11 * len(CELLS)} regions embedded" in capsys.readouterr().out
    assert main(["search", str(corner_folder), "a giraffe", "--regions", "--model", tiny_model, "--json",
                 "--limit", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["results"]) == 3 and data["distribution"]["count"] == 11 and data["query"]["regions"] is True
    assert all(len(row["box"]) == 4 and "image_score" in row for row in data["results"])
    assert main(["search", str(corner_folder), "a giraffe", "--regions", "--model", tiny_model]) == 0
    assert "box [" in capsys.readouterr().out


CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys
    import picsift, picsift.core.store
    folder, spec, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    kill_after(picsift.core.store.EmbeddingStore, point, nth)
    picsift.Library(folder, model=spec, batch_size=8, regions=True).update(progress=False)
    """
)


def test_an_update_killed_while_embedding_regions_finishes_on_the_next_run(corner_folder: Path, tmp_path: Path,
                                                                           tiny_model: str) -> None:
    with Library(corner_folder, model=tiny_model, batch_size=8) as lib:
        lib.update(progress=False)  # the images are in: every later write is a region batch
    reference = tmp_path / "reference"
    shutil.copytree(corner_folder / ".picsift", reference)
    child = fast_python.run([sys.executable, "-c", CHILD, str(corner_folder), tiny_model, "commit_rows", "2"],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with Library(corner_folder, model=tiny_model, batch_size=8) as resumed:
        kept = region_ids(resumed)
        assert 0 < len(kept) < 11 * len(CELLS) and len(kept) % len(CELLS) == 0  # whole images committed
        assert resumed.update(progress=False).regions == 11 * len(CELLS) - len(kept)
        store = resumed._engine.region_store()
        assert store is not None
        pairs = resumed.catalog.db.execute("SELECT image_id, row FROM embeddings WHERE model=?",
                                           (store.identity,)).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs}) == 11 * len(CELLS)
        got = dict(zip(store.snapshot().ids.tolist(), store.snapshot().vectors(), strict=True))
    with Library(corner_folder, workspace=reference, model=tiny_model, batch_size=8, regions=True) as fresh:
        fresh.update(progress=False)
        store = fresh._engine.region_store()
        assert store is not None
        want = dict(zip(store.snapshot().ids.tolist(), store.snapshot().vectors(), strict=True))
    assert got.keys() == want.keys()
    for key, vector in want.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-3)


@pytest.mark.offline_model
def test_a_small_giraffe_in_a_corner_is_found_by_text_with_the_offline_model(corner_folder: Path) -> None:
    with Library(corner_folder, model="picsift-offline", regions=True) as lib:
        lib.update(progress=False)
        target = corner_id(lib)
        whole = lib.search("a giraffe", limit=None)
        found = lib.search("a giraffe", regions=True, limit=None)
        assert found.ids[0] == target, found.df[["path", "score", "image_score", "box"]]
        assert whole.ids.tolist().index(target) > 0  # the whole picture is a farm: whole-image search misses it
        row = found.df.iloc[0]
        assert row["box"] == pixel_box(CORNER, 600, 600) and row["score"] > row["image_score"] + 0.1
