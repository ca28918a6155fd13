"""Bad input: every file is either embedded correctly or skipped with its reason, and the run completes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import picsift
import picsift.core.update
from picsift.embedding.decode import ImageDecodeError, decode_image
from picsift.errors import PicsiftError

from . import fast_python
from .test_formats import make_coco, make_supervisely, make_yolo


@pytest.fixture
def photo(stamps_root: Path) -> Image.Image:
    """A real photo-like stamp, flattened on white, as an RGB picture."""
    with Image.open(next((stamps_root / "animals" / "mammals").rglob("*.png"))) as image:
        rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, "white")
    return Image.alpha_composite(background, rgba).convert("RGB")


def jpeg_bytes(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **kwargs)
    return buffer.getvalue()


def make_bad_folder(folder: Path, photo: Image.Image, image_folder: Path) -> dict[str, str]:
    """Write every kind of awkward file; returns name -> 'ok' or the expected reason fragment."""
    shutil.copytree(image_folder, folder)
    expected: dict[str, str] = {}
    (folder / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "empty file"
    full = jpeg_bytes(photo)
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    expected["truncated.jpg"] = "truncated"
    (folder / "notes.jpg").write_text("this is a text file, not a picture\n")
    expected["notes.jpg"] = "not a readable image"
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png")  # 400 Mpx, a few kB on disk
    expected["bomb.png"] = "decompression bomb"
    photo.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    expected["cmyk.jpg"] = "ok"
    wide = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(wide).save(folder / "sixteen-bit.png")
    expected["sixteen-bit.png"] = "ok"
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    palette.save(folder / "palette-transparent.png", transparency=0)
    expected["palette-transparent.png"] = "ok"
    frames = [photo, photo.rotate(90), photo.rotate(180)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    expected["animated.gif"] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers rotate 90 degrees clockwise
    photo.rotate(90, expand=True).save(folder / "exif-rotated.jpg", "JPEG", exif=exif)
    expected["exif-rotated.jpg"] = "ok"
    unicode_name = "ünïcödé name with spaces 猫.JPG"
    (folder / unicode_name).write_bytes(full)
    expected[unicode_name] = "ok"
    (folder / "loop").mkdir()
    (folder / "loop" / "back-to-top").symlink_to(folder, target_is_directory=True)
    shutil.copy(next((image_folder / "animals").glob("*.png")), folder / "vanishing.png")
    return expected


def test_every_awkward_file_is_embedded_or_skipped_with_its_reason(
    tmp_path: Path, photo: Image.Image, image_folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bad"
    expected = make_bad_folder(folder, photo, image_folder)
    good = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("*.png"))

    real_scan = picsift.core.update.scan

    def scan_then_delete(root: Path, skip: object = ()) -> object:
        found = real_scan(root, skip)  # type: ignore[arg-type]
        (Path(root) / "vanishing.png").unlink()  # deleted between scan and read
        return found

    monkeypatch.setattr(picsift.core.update, "scan", scan_then_delete)
    library = picsift.Library(folder, model=tiny_model)
    report = library.update(progress=False)

    skipped = dict(report.skipped)
    assert skipped["vanishing.png"] == "file vanished before it could be read"
    images = library.images().assign(name=lambda df: [Path(p).relative_to(folder).as_posix() for p in df.path])
    rows = images.set_index("name")
    for name, outcome in expected.items():
        if outcome == "ok":
            assert pd.isna(rows.loc[name, "error"]), (name, rows.loc[name, "error"])
            assert isinstance(rows.loc[name, "id"], str)
        else:
            assert outcome in rows.loc[name, "error"], (name, rows.loc[name, "error"])
            assert outcome in skipped[name]
    for name in good:  # the real images all made it, once each despite the symlink loop
        assert pd.isna(rows.loc[name, "error"])
    assert not any(name.startswith("loop/") for name in rows.index)
    assert "vanishing.png" not in rows.index
    ok = [n for n, o in expected.items() if o == "ok"] + good
    assert library.status()["embedded"] == len({rows.loc[n, "id"] for n in ok})
    assert rows.loc["exif-rotated.jpg", ["width", "height"]].tolist() == [photo.width, photo.height]
    # Searching still works and can return every good image.
    results = library.search("a photo", limit=None)
    assert len(results) == library.status()["embedded"]
    library.close()

    # A second run re-reads nothing: the skipped files are unchanged, so they stay skipped quietly.
    monkeypatch.undo()
    library = picsift.Library(folder, model=tiny_model)
    again = library.update(progress=False)
    assert again.embedded == 0 and again.added == 0 and again.changed == 0
    library.close()


def test_decode_orients_exif_rotated_photos_upright(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_bytes(photo.rotate(90, expand=True), exif=exif)
    decoded = decode_image(data)
    assert (decoded.width, decoded.height) == photo.size
    difference = np.abs(np.asarray(decoded.image, float) - np.asarray(photo, float)).mean()
    assert difference < 12  # upright again, up to JPEG loss


def test_decode_scales_16_bit_images_instead_of_clipping(photo: Image.Image) -> None:
    gray = np.asarray(photo.convert("L"), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gray * 257).save(buffer, "PNG")
    decoded = np.asarray(decode_image(buffer.getvalue()).image.convert("L"), dtype=float)
    assert np.abs(decoded - gray).mean() < 1.5
    assert decoded.std() > 10  # not clipped to white


def test_decode_composites_transparency_on_white() -> None:
    image = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (10, 10, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    decoded = decode_image(buffer.getvalue()).image
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((20, 20)) == (0, 0, 255)


def test_decode_converts_cmyk_to_matching_rgb(photo: Image.Image) -> None:
    decoded = decode_image(jpeg_bytes(photo.convert("CMYK"))).image
    assert decoded.mode == "RGB"
    assert np.abs(np.asarray(decoded, float) - np.asarray(photo, float)).mean() < 15


def test_decode_takes_the_first_frame_of_an_animated_gif(photo: Image.Image) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert decode_image(buffer.getvalue()).image.getpixel((5, 5)) == (255, 0, 0)


def test_large_jpegs_are_draft_decoded_at_reduced_scale_with_the_same_content(photo: Image.Image) -> None:
    big = photo.resize((photo.width * 8, photo.height * 8), Image.Resampling.BICUBIC)
    decoded = decode_image(jpeg_bytes(big), target_size=224)
    assert (decoded.width, decoded.height) == big.size  # the original size is what gets recorded
    assert min(decoded.image.size) >= 224
    assert decoded.image.width < big.width  # but the decoder skipped most of the pixels
    reference = big.resize(decoded.image.size, Image.Resampling.BICUBIC)
    assert np.abs(np.asarray(decoded.image, float) - np.asarray(reference, float)).mean() < 8


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty file"), (b"GIF89a\x00", "corrupt"), (b"hello", "not a readable image")],
)
def test_decode_errors_name_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_unreadable_folder_names_are_reported_not_fatal(tmp_path: Path, image_folder: Path, tiny_model: str) -> None:
    folder = tmp_path / "names"
    shutil.copytree(image_folder, folder)
    bad = os.fsencode(folder) + b"/caf\xe9.png"  # not valid UTF-8
    with open(bad, "wb") as f:
        f.write(next(image_folder.rglob("*.png")).read_bytes())
    report = picsift.Library(folder, model=tiny_model).update(progress=False)
    assert any("not valid UTF-8" in reason for _, reason in report.skipped)
    assert report.embedded == 24


def _edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# Each case breaks one entry of a real project; the error names the file, the entry and the problem. A label the
# Metadata API would refuse (a NaN corner, a tag value that is a mapping, a class title that is a number) is
# skipped with a warning instead, and the rest imported: see test_label_checks.py.
MALFORMED: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("coco", "missing file_name", lambda p: _edit_json(p / "annotations" / "instances_train.json",
                                                      lambda d: d["images"][1].pop("file_name")),
     r"instances_train\.json, images\[1\]: missing field 'file_name'"),
    ("coco", "bbox of text", lambda p: _edit_json(p / "annotations" / "instances_val.json",
                                                 lambda d: d["annotations"][0].update(bbox="wide")),
     r"instances_val\.json, annotations\[0\]: malformed entry"),
    ("coco", "categories not a list", lambda p: _edit_json(p / "annotations" / "instances_val.json",
                                                          lambda d: d.update(categories={"7": "fruit"})),
     r"instances_val\.json: 'categories' must be a list"),
    ("coco", "width too large", lambda p: _edit_json(p / "annotations" / "instances_val.json",
                                                    lambda d: d["images"][0].update(width=2**63)),
     "width and height must be positive whole numbers"),
    ("coco", "deep nesting", lambda p: (p / "annotations" / "instances_val.json").write_text("[" * 100_000),
     r"instances_val\.json: RecursionError"),
    ("yolo", "infinite coordinate", lambda p: next((p / "labels" / "train").iterdir()).write_text("0 inf 0.5 .1 .1\n"),
     r"\.txt:1: coordinates must be finite numbers"),
    ("yolo", "label not UTF-8", lambda p: next((p / "labels" / "train").iterdir()).write_bytes(b"0 \xff\xfe\n"),
     "can't decode byte 0xff"),
]


@pytest.mark.parametrize(("fmt", "case", "breaks", "message"), MALFORMED, ids=[c[1] for c in MALFORMED])
def test_malformed_annotations_get_an_error_naming_the_entry(
    tmp_path: Path, stamps_root: Path, fmt: str, case: str, breaks: Callable[[Path], None], message: str,
) -> None:
    make = {"coco": make_coco, "supervisely": make_supervisely, "yolo": make_yolo}[fmt]
    project = make(tmp_path / "src", stamps_root)
    breaks(project)
    (tmp_path / "lib").mkdir()
    library = picsift.Library(tmp_path / "lib")
    with pytest.raises(PicsiftError, match=message):
        library.labels.import_project(project, fmt)
    assert library.labels.dataset_names() == [] and library.labels.objects().empty  # nothing half-imported


# -- special files, vanished disks, what status lists (issue 11) ----------------------------------------------
SPECIAL_FILES_CHILD = """
import json, os, resource, sys
from pathlib import Path
# a runaway read fails fast, not the machine (8 GiB: the default index, qdrant-edge, maps its files; 4 was too tight)
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
import picsift, picsift.reading, picsift.core.update
folder, spec, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
picsift.reading.MAX_FILE_BYTES = limit
real_scan = picsift.core.update.scan

def scan_then_swap(root, skip=()):
    found = real_scan(root, skip)
    (folder / "swapped.png").unlink()  # a regular image at scan time, a named pipe when it is read
    os.mkfifo(folder / "swapped.png")
    return found

picsift.core.update.scan = scan_then_swap
with picsift.Library(folder, model=spec) as lib:
    report = lib.update(progress=False)
    print(json.dumps({"embedded": report.embedded, "skipped": report.skipped, "listed": lib.skipped(),
                      "count": lib.status()["skipped"]}))
"""


def test_pipes_devices_and_huge_files_are_skipped_and_never_stall_the_update(
    tmp_path: Path, image_folder: Path, tiny_model: str
) -> None:
    folder = tmp_path / "special"
    shutil.copytree(image_folder, folder)
    os.mkfifo(folder / "pipe.png")  # opening it for reading would wait for a writer forever
    (folder / "zero.png").symlink_to("/dev/zero")  # reading it never ends
    shutil.copy(next((image_folder / "animals").glob("*.png")), folder / "swapped.png")
    with open(folder / "huge.png", "wb") as f:  # larger than the (lowered) read limit; sparse, so free
        f.truncate(3 << 20)
    child = fast_python.run([sys.executable, "-c", SPECIAL_FILES_CHILD, str(folder), tiny_model, str(1 << 20)],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout)
    skipped = dict(map(tuple, result["skipped"]))
    assert "not a regular file (a named pipe)" in skipped["pipe.png"]
    assert "not a regular file (a character device)" in skipped["zero.png"]
    assert "not a regular file (a named pipe)" in skipped["swapped.png"]
    assert "larger than the 1 MiB read limit" in skipped["huge.png"]
    assert result["embedded"] == 24  # every real image, despite the rest
    listed = dict(map(tuple, result["listed"]))  # and status --skipped lists them all
    assert {"pipe.png", "zero.png", "swapped.png", "huge.png"} <= set(listed) and result["count"] == len(listed)


def test_a_symlinked_folder_whose_disk_is_unplugged_keeps_its_images(
    tmp_path: Path, image_folder: Path, tiny_model: str
) -> None:
    disk = tmp_path / "disk"
    shutil.move(image_folder / "food", disk)  # 8 of the images live on an external disk, linked in
    (image_folder / "food").symlink_to(disk, target_is_directory=True)
    (image_folder / "cover.png").symlink_to(next(disk.glob("*.png")))  # and one image linked on its own
    with picsift.Library(image_folder, model=tiny_model) as library:
        library.update(progress=False)
        before = library.images()
        assert len(before) == 25 and library.status()["embedded"] == 24

        disk.rename(tmp_path / "unplugged")
        report = library.update(progress=False)
        assert report.removed == 0
        skipped = dict(report.skipped)
        assert "not mounted" in skipped["food"] and "8 catalogued files are kept" in skipped["food"]
        assert "not mounted" in skipped["cover.png"]
        pd.testing.assert_frame_equal(library.images(), before)  # rows, ids and embeddings stay
        assert library.status()["embedded"] == 24 and len(library.search("food", limit=None)) == 24

        (tmp_path / "unplugged").rename(disk)  # plugged back in: nothing to do
        back = library.update(progress=False)
        assert (back.removed, back.embedded, back.unchanged, back.skipped) == (0, 0, 25, [])

        (image_folder / "food").unlink()  # a real removal still removes
        (image_folder / "cover.png").unlink()
        assert library.update(progress=False).removed == 9


def test_status_skipped_lists_undecodable_names_and_broken_symlinks(
    tmp_path: Path, image_folder: Path, tiny_model: str
) -> None:
    folder = tmp_path / "names"
    shutil.copytree(image_folder, folder)
    with open(os.fsencode(folder) + b"/caf\xe9.png", "wb") as f:  # not valid UTF-8
        f.write(next(image_folder.rglob("*.png")).read_bytes())
    (folder / "gone.png").symlink_to(folder / "nowhere.png")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return fast_python.run([sys.executable, "-m", "picsift", *args], capture_output=True, text=True,
                               timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    assert cli("update", str(folder), "--model", tiny_model, "--quiet").returncode == 0
    status = json.loads(cli("status", str(folder), "--model", tiny_model, "--skipped", "--json").stdout)
    listed = {item["path"]: item["reason"] for item in status["skipped_files"]}
    assert "not valid UTF-8" in listed["caf\ufffd.png"]
    assert "symlink target is missing" in listed["gone.png"]
    assert status["skipped"] == len(listed) == 2
    human = cli("status", str(folder), "--model", tiny_model, "--skipped").stdout
    assert "skipped gone.png: " in human and "not valid UTF-8" in human


def test_control_characters_in_file_names_are_escaped_for_people_and_exact_in_json(
    tmp_path: Path, image_folder: Path, tiny_model: str
) -> None:
    folder = tmp_path / "names"
    shutil.copytree(image_folder, folder)
    fake = "\x1b[2J\x1b[Hfake\n   1   0.999  all-clear\r.png"  # clears the screen, forges a result line
    with Image.open(next((image_folder / "animals").glob("*.png"))) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / fake, "PNG")  # an image of its own
    (folder / "\x1b]0;pwned\x07notes.png").write_text("not a picture")  # retitles the terminal, rings

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return fast_python.run([sys.executable, "-m", "picsift", *args], capture_output=True, text=True,
                               timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def assert_inert(output: str) -> None:
        assert not any(char in output for char in "\x1b\x07\r"), output

    update = cli("update", str(folder), "--model", tiny_model, "--quiet")
    assert update.returncode == 0, update.stderr
    assert_inert(update.stdout + update.stderr)
    assert "skipped \\x1b]0;pwned\\x07notes.png: " in update.stdout

    search = cli("search", str(folder), "a cat", "--model", tiny_model, "--limit", "100")
    assert_inert(search.stdout)
    lines = search.stdout.splitlines()
    assert len(lines) == 1 + 25  # the header and one line per image: no forged line
    assert sum("\\x1b[2J\\x1b[Hfake\\n   1   0.999  all-clear\\r.png" in line for line in lines) == 1

    exact = json.loads(cli("search", str(folder), "a cat", "--model", tiny_model, "--limit", "100", "--json").stdout)
    assert str(folder / fake) in {r["path"] for r in exact["results"]}  # JSON keeps the name exactly
    status = cli("status", str(folder), "--model", tiny_model, "--skipped")
    assert_inert(status.stdout)
    assert "pwned\\x07notes.png" in status.stdout


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_transparency_is_composited_on_white_exactly_like_alpha_composite(mode: str) -> None:
    """Every value under every alpha: the same pixels as Pillow's alpha_composite onto opaque white."""
    from picsift.embedding.decode import to_rgb

    value, alpha = (a.astype(np.uint8) for a in np.meshgrid(np.arange(256), np.arange(256)))
    rgba = Image.fromarray(np.stack([value, 255 - value, value // 2, alpha], axis=-1), "RGBA")
    if mode == "P":  # a palette with one transparent entry, as GIFs and many PNGs carry it
        image = rgba.convert("RGB").quantize(64)
        image.info["transparency"] = 5
    else:
        image = rgba.convert(mode)
    expected = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA")).convert("RGB")
    assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(expected))
