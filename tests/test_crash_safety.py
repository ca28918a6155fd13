"""Kill -9 an update at its most delicate moments, run it again, and check nothing is lost or doubled."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.catalog import content_id

from .conftest import stamp_files
from .kill import KILL_AFTER

# The child wraps one real function so that the process SIGKILLs itself right after its nth call.
CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import picsift, picsift.catalog, picsift.store
    folder, spec, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    owners = {
        "write_vectors": picsift.store.EmbeddingStore,  # vectors on disk, rows not committed
        "commit_rows": picsift.store.EmbeddingStore,    # inside the batch transaction
        "delete_files": picsift.catalog.Catalog,        # inside the removal transaction
        "rename": Path,                                 # between the index folder's two renames
    }
    kill_after(owners[point], point, nth, static=point == "delete_files")
    picsift.Library(folder, model=spec, batch_size=8).update(progress=False)
    """
)


@pytest.fixture(scope="module")
def source(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "images"
    folder.mkdir()
    for path in stamp_files(stamps_root, ("animals", "town", "space"), 16):
        shutil.copy2(path, folder / f"{path.parent.name}-{path.name}")
    return folder


@pytest.fixture(scope="module")
def reference(source: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """id -> vector from an uninterrupted run."""
    with picsift.Library(source, model=tiny_model, workspace=tmp_path_factory.mktemp("ref"), batch_size=8) as lib:
        lib.update(progress=False)
        snapshot = lib.store.snapshot()
        return dict(zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True))


def run_killed_child(folder: Path, spec: str, point: str, nth: int) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(folder), spec, point, str(nth)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def assert_consistent(folder: Path, spec: str, reference: dict[str, np.ndarray]) -> None:
    with picsift.Library(folder, model=spec) as lib:
        files = {p.name: content_id(p.read_bytes()) for p in folder.glob("*.png")}
        rows = lib.catalog.files()
        assert {Path(p).name: r.image_id for p, r in rows.items()} == files
        assert all(r.error is None for r in rows.values())
        pairs = lib.catalog.db.execute(
            "SELECT image_id, row FROM embeddings WHERE model=?", (lib.spec.identity(),)
        ).fetchall()
        assert len(pairs) == len({i for i, _ in pairs}) == len({r for _, r in pairs})  # no duplicates
        assert {i for i, _ in pairs} == set(files.values())  # nothing lost, nothing stale
        snapshot = lib.store.snapshot()
        for image_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors(), strict=True):
            np.testing.assert_allclose(vector, reference[image_id], atol=1e-5)
        assert lib.index.ids() == set(files.values())
        assert len(lib.search("a house", limit=100, distribution=False)) == len(files)


@pytest.mark.parametrize(("point", "nth"), [("write_vectors", 3), ("commit_rows", 2), ("commit_rows", 5)])
def test_an_update_killed_while_embedding_finishes_on_the_next_run(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray], point: str, nth: int
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    run_killed_child(folder, tiny_model, point, nth)
    with picsift.Library(folder, model=tiny_model) as lib:
        committed = lib.status()["embedded"]
        assert 0 < committed < len(reference)  # it really died half way
        report = lib.update(progress=False)
        assert report.embedded == len(reference) - committed
    assert_consistent(folder, tiny_model, reference)


def test_an_update_killed_while_forgetting_removed_files_finishes_on_the_next_run(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray]
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    with picsift.Library(folder, model=tiny_model) as lib:
        lib.update(progress=False)
    removed = sorted(folder.glob("*.png"))[:10]
    for path in removed:
        path.unlink()
    run_killed_child(folder, tiny_model, "delete_files", 1)
    with picsift.Library(folder, model=tiny_model) as lib:
        assert lib.status()["files"] == 48  # the removal transaction was rolled back whole
        assert lib.update(progress=False).removed == 10
    assert_consistent(folder, tiny_model, {k: v for k, v in reference.items()})


def test_an_update_killed_while_saving_the_index_recovers_it(
    source: Path, tmp_path: Path, tiny_model: str, reference: dict[str, np.ndarray]
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    extra = sorted(folder.glob("*.png"))[:6]
    for path in extra:
        shutil.move(path, tmp_path / path.name)
    with picsift.Library(folder, model=tiny_model) as lib:
        lib.update(progress=False)
    for path in extra:
        shutil.move(tmp_path / path.name, folder / path.name)
    run_killed_child(folder, tiny_model, "rename", 1)  # old index moved aside, new one not yet in place
    assert_consistent(folder, tiny_model, reference)
