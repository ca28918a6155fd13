"""The compact layout by default (ivf), and workspaces made by an old default (hnsw, then qdrant-edge) moving over on
their next update."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import picsift
from picsift.embedding.spec import parse_model_spec, slug
from picsift.index import DEFAULT_BACKEND
from picsift.index.hnsw import HnswIndex
from picsift.index.ivf import IvfIndex
from picsift.index.layout import CHOSEN_BY_KEY, IndexChoice, choose_index
from picsift.index.qdrant_edge import QdrantEdgeIndex


def model_folder(library: picsift.Library) -> Path:
    return library.workspace / "models" / slug(parse_model_spec(library.spec.text).identity())


def move_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "index moves from" in r.getMessage()]


def assert_exact_top(library: picsift.Library) -> None:
    exact = library.search("a red thing", limit=10)
    via_index = library.search("a red thing", limit=10, distribution=False)
    assert via_index.ids.tolist() == exact.ids.tolist()
    np.testing.assert_allclose(via_index.df["score"], exact.df["score"], atol=1e-4)


def test_a_new_library_gets_the_compact_layout(image_folder: Path, tiny_model: str) -> None:
    with picsift.Library(image_folder, model=tiny_model) as lib:
        lib.update(progress=False)
        assert lib.index_name == DEFAULT_BACKEND == "ivf"
        assert isinstance(lib.index, IvfIndex) and len(lib.index) == 24
        assert (model_folder(lib) / "ivf.state.json").is_file()
        assert not (model_folder(lib) / "hnsw").exists() and not (model_folder(lib) / "qdrant-edge").exists()
        assert_exact_top(lib)


def test_a_workspace_made_by_the_old_default_moves_over_on_its_next_update(
    image_folder: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    with picsift.Library(image_folder, model=tiny_model, index="hnsw") as lib:
        lib.update(progress=False)
        old_results = lib.search("a red thing", limit=10).ids.tolist()
        folder = model_folder(lib)
        # what a workspace updated before the choice was recorded holds: the backend only
        with lib.catalog.transaction() as db:
            lib.catalog.delete_meta(CHOSEN_BY_KEY, db)
    assert (folder / "hnsw" / "index.bin").is_file() and (folder / "hnsw.state.json").is_file()

    caplog.set_level(logging.INFO, logger="picsift")
    with picsift.Library(image_folder, model=tiny_model) as lib:
        assert lib.index_name == "hnsw" and isinstance(lib.index, HnswIndex)  # until the update: the built index
        assert lib.search("a red thing", limit=10).ids.tolist() == old_results
        assert move_lines(caplog) == []
        report = lib.update(progress=False)
        assert report.embedded == 0  # the store is kept: nothing is embedded again
        (line,) = move_lines(caplog)
        assert "hnsw" in line and "ivf" in line and "index='hnsw'" in line
        assert lib.index_name == lib.neighbours.index_name == lib.queries.analysis.index_name == "ivf"
        assert isinstance(lib.index, IvfIndex) and lib.index.ids() == set(lib.store.snapshot().ids.tolist())
        assert lib.search("a red thing", limit=10).ids.tolist() == old_results
        assert_exact_top(lib)
    assert not (folder / "hnsw").exists() and not (folder / "hnsw.state.json").exists()  # its bytes are freed
    assert (folder / "ivf.state.json").is_file()

    caplog.clear()
    with picsift.Library(image_folder, model=tiny_model) as lib:  # moved once: no second line, no second build
        assert lib.index_name == "ivf"
        assert lib.update(progress=False).embedded == 0 and move_lines(caplog) == []
        assert lib.catalog.get_meta(CHOSEN_BY_KEY) == "default"


def test_a_workspace_that_got_qdrant_edge_by_default_moves_to_ivf_and_frees_its_files(
    image_folder: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    with picsift.Library(image_folder, model=tiny_model, index="qdrant-edge") as lib:
        lib.update(progress=False)
        old_results = lib.search("a red thing", limit=10).ids.tolist()
        folder = model_folder(lib)
        with lib.catalog.transaction() as db:  # what the previous default recorded
            lib.catalog.set_meta(CHOSEN_BY_KEY, "default", db)
    assert (folder / "qdrant-edge" / "segments").is_dir()
    caplog.set_level(logging.INFO, logger="picsift")
    with picsift.Library(image_folder, model=tiny_model) as lib:
        assert isinstance(lib.index, QdrantEdgeIndex)  # until the update: the built index
        assert lib.update(progress=False).embedded == 0
        (line,) = move_lines(caplog)
        assert "qdrant-edge" in line and "ivf" in line
        assert lib.index_name == "ivf" and isinstance(lib.index, IvfIndex)
        assert lib.search("a red thing", limit=10).ids.tolist() == old_results
        assert_exact_top(lib)
    assert not (folder / "qdrant-edge").exists() and not (folder / "qdrant-edge.state.json").exists()


def test_a_backend_asked_for_is_kept(image_folder: Path, tiny_model: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="picsift")
    for name, kind in (("hnsw", HnswIndex), ("qdrant-edge", QdrantEdgeIndex)):
        with picsift.Library(image_folder, model=tiny_model, index=name) as lib:
            lib.update(progress=False)
        with picsift.Library(image_folder, model=tiny_model) as lib:
            lib.update(progress=False)
            assert lib.index_name == name and isinstance(lib.index, kind)
            assert_exact_top(lib)
        assert move_lines(caplog) == []
        assert (model_folder(lib) / name).is_dir() and not (model_folder(lib) / "ivf.state.json").exists()


@pytest.mark.parametrize(("asked", "recorded", "chosen_by", "expected"), [
    (None, None, None, IndexChoice("ivf", "default")),  # a new workspace
    ("hnsw", None, None, IndexChoice("hnsw", "user")),
    ("hnsw", "qdrant-edge", "default", IndexChoice("hnsw", "user")),  # asked for: used at once
    (None, "hnsw", None, IndexChoice("hnsw", "default", move_to="ivf")),  # the first default's workspace
    (None, "qdrant-edge", "default", IndexChoice("qdrant-edge", "default", move_to="ivf")),  # the second's
    (None, "qdrant-edge", "user", IndexChoice("qdrant-edge", "user")),
    (None, "hnsw", "user", IndexChoice("hnsw", "user")),
    (None, "exact", None, IndexChoice("exact", "user")),  # never a default: a person chose it
    (None, "qdrant", None, IndexChoice("qdrant", "user")),
    (None, "qdrant-edge", None, IndexChoice("qdrant-edge", "user")),  # recorded before the choice was: a person's
    (None, "exact", "default", IndexChoice("exact", "default", move_to="ivf")),  # followed a default
    (None, "ivf", "default", IndexChoice("ivf", "default")),
])
def test_which_backend_a_library_uses(asked: str | None, recorded: str | None, chosen_by: str | None,
                                      expected: IndexChoice) -> None:
    assert choose_index(asked, recorded, chosen_by) == expected
