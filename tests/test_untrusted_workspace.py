"""A workspace someone else prepared is untrusted end to end (issue 20): nothing it holds makes picsift write outside
the library, block, run out of memory or crash; a refused file is rebuilt from what is trusted.

Each test plays the attacker: it prepares a folder with its ``.picsift`` workspace for a victim, then runs what the
victim runs (an update, a search, the gallery's thumbnails, a map) and checks the victim's own files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import picsift
from picsift.embedding.spec import parse_model_spec, slug
from picsift.errors import PicsiftError

from . import fast_python
from .conftest import stamp_files

av = pytest.importorskip("av")
from .test_video import picture, write_video  # noqa: E402 - needs PyAV


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, stamps_root: Path, tiny_model: str) -> Path:
    """A library after a full update with images and a video, every persisted index (ivf, qdrant-edge, hnsw), a saved
    map and cached thumbnails: every file the workspace layout has."""
    root = tmp_path_factory.mktemp("prepared") / "images"
    root.mkdir()
    files = stamp_files(stamps_root, ("animals", "vehicles", "food"), 3)
    for path in files:
        shutil.copy2(path, root / path.name)
    write_video(root / "clips" / "clip.mp4", [(picture(files[0]), 3), (picture(files[4]), 3)])
    for index in ("ivf", "qdrant-edge", "hnsw"):  # hnsw last: the backend the catalog records
        exercise(root, tiny_model, index)
    return root


def exercise(root: Path, model: str, index: str | None = None) -> dict[str, Any]:
    """What a victim does with a library: update, search by text and by image, thumbnails, a map."""
    from picsift.widgets._source import ImageSource

    with picsift.Library(root, model=model, **({"index": index} if index else {})) as library:
        report = library.update(progress=False)
        hits = library.search("a photo of an animal", limit=5)
        similar = library.similar(hits.ids[:1], limit=3)
        ids = library.images()["id"].tolist()
        _, thumbnails = ImageSource(library).thumbnail_batch(sorted(set(ids)))
        mapped = library.maps.get("pca", 2)
        return {"report": report, "hits": len(hits), "similar": len(similar), "images": len(set(ids)),
                "thumbnails": sum(bool(t) for t in thumbnails), "mapped": len(mapped.ids),
                "embedded": len(library.store), "index": library.index_name}


def in_time(work: Callable[[], Any], seconds: float = 240) -> Any:
    """Run ``work`` in a thread; fail if it blocks longer than ``seconds`` (a named pipe read would wait forever)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as e:  # handed to the test thread
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """The victim's own files, which nothing in a workspace may change."""
    home = tmp_path / "victim"
    (home / "folder").mkdir(parents=True)
    (home / "notes.txt").write_text("my notes\n")
    (home / "folder" / "data.bin").write_bytes(os.urandom(4096))
    return home


def fingerprint(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` with its kind and content hash."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        kind = "dir" if path.is_dir() else "file"
        seen[str(path.relative_to(folder))] = kind + (":" + hashlib.sha256(path.read_bytes()).hexdigest()
                                                      if kind == "file" else "")
    return seen


@pytest.fixture
def library_copy(prepared: Path, tmp_path: Path) -> Path:
    root = tmp_path / "images"
    shutil.copytree(prepared, root, symlinks=True)
    return root


def model_folder(root: Path, model: str) -> Path:
    return root / ".picsift" / "models" / slug(parse_model_spec(model).identity())


# -- item 1: the embedding store ------------------------------------------------------------------------------
def test_a_link_at_the_vectors_file_is_never_written_through(
    library_copy: Path, tiny_model: str, victim: Path, stamps_root: Path
) -> None:
    before = fingerprint(victim)
    vectors = next(model_folder(library_copy, tiny_model).glob("vectors-*.f16"))
    vectors.unlink()
    vectors.symlink_to(victim / "notes.txt")
    shutil.copy2(stamp_files(stamps_root, ("space",), 1)[0], library_copy / "new.png")  # vectors to write
    result = exercise(library_copy, tiny_model)
    assert fingerprint(victim) == before
    assert result["embedded"] == result["images"] == 13 and result["hits"] == 5  # embedded again, all there
    assert not any(p.is_symlink() for p in model_folder(library_copy, tiny_model).iterdir())


@pytest.mark.parametrize("name", ["absolute", "../../../../victim/notes.txt", "vectors-0.f16/../../x"])
def test_a_vectors_file_name_from_the_catalog_never_becomes_a_path(
    library_copy: Path, tiny_model: str, victim: Path, name: str
) -> None:
    before = fingerprint(victim)
    planted = str(victim / "notes.txt") if name == "absolute" else name
    with sqlite3.connect(library_copy / ".picsift" / "catalog.sqlite") as db:
        db.execute("UPDATE models SET vectors_file=?", (planted,))
    result = exercise(library_copy, tiny_model)
    assert fingerprint(victim) == before
    assert result["embedded"] == result["images"] and result["hits"] == 5


# -- item 2: video frames ---------------------------------------------------------------------------------------
def test_links_planted_in_the_frame_cache_are_never_written_through(
    prepared: Path, tmp_path: Path, tiny_model: str, victim: Path
) -> None:
    from picsift.core.video import file_content_id

    root = tmp_path / "images"
    shutil.copytree(prepared, root, ignore=shutil.ignore_patterns(".picsift"))
    frames = root / ".picsift" / "frames" / file_content_id(root / "clips" / "clip.mp4")[:16]
    frames.mkdir(parents=True)
    (frames / "000000000.jpg").symlink_to(victim / "notes.txt")
    (frames / "written.txt").symlink_to(victim / "folder" / "data.bin")
    before = fingerprint(victim)
    with picsift.Library(root, model=tiny_model) as library:
        report = library.update(progress=False)
        assert report.frames >= 2 and len(library.videos.frames()) == report.frames
    assert fingerprint(victim) == before
    assert (frames / "000000000.jpg").is_file() and not (frames / "000000000.jpg").is_symlink()


def test_a_frame_cache_folder_that_is_a_link_is_replaced_not_followed(
    prepared: Path, tmp_path: Path, tiny_model: str, victim: Path
) -> None:
    root = tmp_path / "images"
    shutil.copytree(prepared, root, ignore=shutil.ignore_patterns(".picsift"))
    (root / ".picsift").mkdir()
    (root / ".picsift" / "frames").symlink_to(victim / "folder", target_is_directory=True)
    before = fingerprint(victim)
    with picsift.Library(root, model=tiny_model) as library:
        assert library.update(progress=False).frames >= 2
    assert fingerprint(victim) == before and not (root / ".picsift" / "frames").is_symlink()


# -- item 3: qdrant-edge settings, thumbnails -----------------------------------------------------------------------
def test_links_at_qdrant_edge_settings_and_thumbnails_are_never_written_through(
    library_copy: Path, tiny_model: str, victim: Path
) -> None:
    settings = model_folder(library_copy, tiny_model) / "qdrant-edge" / "picsift.json"
    settings.unlink()
    settings.symlink_to(victim / "notes.txt")
    thumbnails = library_copy / ".picsift" / "thumbnails" / "160"
    for cached in sorted(thumbnails.glob("*.webp"))[:3]:
        cached.unlink()
        cached.symlink_to(victim / "folder" / "data.bin")
        cached.with_suffix(".tmp").symlink_to(victim / "notes.txt")
    before = fingerprint(victim)
    result = exercise(library_copy, tiny_model, "qdrant-edge")
    assert fingerprint(victim) == before
    assert result["thumbnails"] == result["images"] and result["hits"] == 5
    assert not settings.is_symlink() and not any(p.is_symlink() for p in thumbnails.glob("*.webp"))


# -- items 5 and 6: hnsw's files and state ---------------------------------------------------------------------------
CRAFTED_HNSW = textwrap.dedent(
    """
    import sys
    import picsift
    root, model = sys.argv[1], sys.argv[2]
    with picsift.Library(root, model=model) as library:
        library.update(progress=False)
        print(len(library.search("a photo of an animal", limit=5)), len(library.index), library.status()["images"])
    """
)


def test_a_crafted_hnsw_index_is_rebuilt_not_loaded(library_copy: Path, tiny_model: str) -> None:
    index = model_folder(library_copy, tiny_model) / "hnsw" / "index.bin"
    data = bytearray(index.read_bytes())
    data[52:60] = (2**40).to_bytes(8, "little")  # the entry point, far outside the graph
    index.write_bytes(bytes(data))
    child = fast_python.run([sys.executable, "-c", CRAFTED_HNSW, str(library_copy), tiny_model],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert child.returncode == 0, child.stderr[-3000:]  # a segmentation fault is -11
    assert child.stdout.split() == ["5", "12", "12"]  # 9 images and 3 distinct video frames, all indexed again
    assert "rebuilding it from the embedding store" in child.stderr


def test_a_pipe_at_the_index_state_and_dev_zero_as_its_meta_neither_hang_nor_exhaust_memory(
    library_copy: Path, tiny_model: str
) -> None:
    folder = model_folder(library_copy, tiny_model)
    (folder / "hnsw.state.json").unlink()
    os.mkfifo(folder / "hnsw.state.json")
    (folder / "hnsw" / "meta.json").unlink()
    (folder / "hnsw" / "meta.json").symlink_to("/dev/zero")
    (library_copy / ".picsift" / "update.progress.json").symlink_to("/dev/zero")
    result = in_time(lambda: exercise(library_copy, tiny_model))
    assert result["hits"] == 5 and result["embedded"] == 12


# -- item 7: ids from the catalog ----------------------------------------------------------------------------------
def test_an_image_id_that_is_a_path_never_becomes_a_thumbnail_file(library_copy: Path, tiny_model: str,
                                                                     victim: Path) -> None:
    from picsift.widgets._source import ImageSource

    planted = str(victim / "planted")
    with sqlite3.connect(library_copy / ".picsift" / "catalog.sqlite") as db:
        db.execute("PRAGMA foreign_keys=OFF")
        first, second = db.execute(
            "SELECT path, image_id FROM files WHERE path LIKE '%.png' ORDER BY path LIMIT 2").fetchall()
        db.execute("UPDATE files SET image_id=? WHERE path=?", (planted, first[0]))
    with picsift.Library(library_copy, model=tiny_model) as library:
        source = ImageSource(library)
        _, buffers = source.thumbnail_batch([planted, second[1]])
    assert buffers[0] == b"" and buffers[1]  # refused; the real id still gets its thumbnail
    assert not list(victim.glob("planted*"))


# -- item 10: qdrant-edge settings that are malformed ----------------------------------------------------------------
@pytest.mark.parametrize("settings", [
    '{"dim": 64, "datatype": "uint8", "centre": [0.0, 1.0], "scale": 10.0}',
    '{"dim": 64, "datatype": "uint8", "centre": CENTRE, "scale": 0}',
    '{"dim": 64, "datatype": "uint8", "centre": CENTRE, "scale": "NaN"}',
    '{"dim": 64, "datatype": "uint8", "ef": 1e12, "centre": CENTRE, "scale": 10.0}',
    '[1, 2, 3]',
])
def test_malformed_qdrant_edge_settings_rebuild_the_index(
    library_copy: Path, tiny_model: str, settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = model_folder(library_copy, tiny_model) / "qdrant-edge"
    (folder / "picsift.json").write_text(settings.replace("CENTRE", str([0.0] * 64)))
    result = exercise(library_copy, tiny_model, "qdrant-edge")
    assert result["hits"] == 5 and "rebuilding it from the embedding store" in caplog.text
    with picsift.Library(library_copy, model=tiny_model, index="qdrant-edge") as library:
        assert len(library.index) == 12  # rebuilt, and usable the next time without a rebuild


def test_a_planted_file_larger_than_the_free_disk_in_the_qdrant_edge_index_is_rebuilt_not_refused(
    library_copy: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A sparse file takes no disk but claims any size: counted as the index's mapped files, it made the update
    refuse with "the disk is full" on any disk with less free space than it claims (CI had 9.4 GiB free against
    five planted 2 GiB files). The engine never leaves more than one chunk of a file unwritten, so such a file is
    not the engine's: the index is rebuilt."""
    folder = model_folder(library_copy, tiny_model) / "qdrant-edge"
    chunk = next(folder.glob("segments/*/vector_storage/vectors/chunk_0.mmap"))
    with open(chunk, "r+b") as f:
        f.truncate(shutil.disk_usage(folder).free + 2**30)
    result = exercise(library_copy, tiny_model, "qdrant-edge")
    assert result["hits"] == 5 and result["embedded"] == 12 and "rebuilding it from the embedding store" in caplog.text
    assert "never written" in caplog.text
    with picsift.Library(library_copy, model=tiny_model, index="qdrant-edge") as library:
        assert len(library.index) == 12 and len(library.search("a photo of an animal", limit=5)) == 5


# -- the catalog itself ------------------------------------------------------------------------------------------
def test_a_catalog_that_is_a_link_is_refused_with_a_clear_error(library_copy: Path, tiny_model: str,
                                                                  victim: Path) -> None:
    catalog = library_copy / ".picsift" / "catalog.sqlite"
    shutil.copy2(catalog, victim / "catalog.sqlite")
    catalog.unlink()
    catalog.symlink_to(victim / "catalog.sqlite")
    before = fingerprint(victim)
    with pytest.raises(PicsiftError, match="link"):
        picsift.Library(library_copy, model=tiny_model)
    assert fingerprint(victim) == before


# -- every path of the layout ----------------------------------------------------------------------------------
HUGE = 2**31 + 4096  # sparse: takes no disk, larger than any limit picsift reads (2 GiB at most)


def plant(path: Path, kind: str, victim: Path) -> None:
    """Replace ``path`` (a file or a folder) by a link out of the library, a named pipe, a huge file or a hard link
    to one of the victim's files."""
    was_folder = path.is_dir() and not path.is_symlink()
    if was_folder:
        shutil.rmtree(path)
    else:
        path.unlink()
    if kind == "symlink":
        path.symlink_to(victim / "folder" if was_folder else victim / "notes.txt", target_is_directory=was_folder)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(HUGE)
    else:
        os.link(victim / "notes.txt", path)


def layout(root: Path) -> list[Path]:
    """Every file and folder of the workspace, deepest first."""
    workspace = root / ".picsift"
    return sorted(workspace.rglob("*"), key=lambda p: (-len(p.relative_to(workspace).parts), str(p)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["symlink", "fifo", "huge", "hardlink"])
def test_anything_planted_anywhere_in_the_workspace_is_used_or_rebuilt_never_followed(
    prepared: Path, tmp_path: Path, tiny_model: str, victim: Path, kind: str
) -> None:
    """One round per depth of the layout: every path at that depth is planted at once (paths of one depth never
    hold each other), then the victim updates, searches by text and image, shows thumbnails and a map, with the
    recorded backend (hnsw) and with qdrant-edge. The catalog, which nothing can rebuild, is planted on its own
    and must be refused with a clear error."""
    paths = [p.relative_to(prepared) for p in layout(prepared)]
    assert len(paths) > 30  # the layout: store, frames, both indexes, state files, maps, thumbnails, locks
    depths = sorted({len(p.parts) for p in paths}, reverse=True)
    catalog = Path(".picsift/catalog.sqlite")
    rounds = [[p for p in paths if len(p.parts) == depth and p != catalog] for depth in depths] + [[catalog]]
    for number, planted in enumerate(rounds):
        root = tmp_path / f"round-{number}"
        shutil.copytree(prepared, root, symlinks=True)
        for path in planted:
            plant(root / path, kind, victim)
        before = fingerprint(victim)
        if planted == [catalog]:
            with pytest.raises(PicsiftError, match="catalog"):
                in_time(lambda root=root: exercise(root, tiny_model))
        else:
            for index in ("hnsw", "qdrant-edge", "ivf"):
                result = in_time(lambda root=root, index=index: exercise(root, tiny_model, index))
                assert result["hits"] == 5 and result["embedded"] == result["images"] == 12, (planted, result)
                assert result["thumbnails"] == result["images"] and result["mapped"] == 12, (planted, result)
        assert fingerprint(victim) == before, planted
        shutil.rmtree(root)
