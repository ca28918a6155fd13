"""Videos: frames sampled with PyAV become images that link back to their moment in the video.

The videos are real H.264 files written with PyAV from real pictures (Tux Paint stamps): picture A for
8 s, picture B for 4 s ("the rare moment"), A again for 8 s.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import picsift
import picsift.core.video
from picsift.core.video import VideoDecodeError, moment_url, sample_frames

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER

av = pytest.importorskip("av")

SIZE = (320, 240)
FPS = 10


def picture(path: Path) -> Image.Image:
    """A stamp composited on white and fitted into the video frame."""
    stamp = Image.open(path).convert("RGBA")
    stamp.thumbnail((SIZE[0] - 20, SIZE[1] - 20))
    canvas = Image.new("RGB", SIZE, "white")
    canvas.paste(stamp, ((SIZE[0] - stamp.width) // 2, (SIZE[1] - stamp.height) // 2), stamp)
    return canvas


def write_video(path: Path, shots: list[tuple[Image.Image, float]], codec: str = "libx264") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for image, seconds in shots:
            pixels = np.asarray(image)
            for _ in range(round(seconds * FPS)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def pictures(stamps_root: Path) -> dict[str, Image.Image]:
    (a,), (b,), (c,) = (stamp_files(stamps_root, (category,), 1) for category in ("animals", "vehicles", "space"))
    return {"A": picture(a), "B": picture(b), "C": picture(c)}


@pytest.fixture(scope="module")
def rare_video(pictures: dict[str, Image.Image], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "line.mp4"
    write_video(path, [(pictures["A"], 8), (pictures["B"], 4), (pictures["A"], 8)])
    return path


@pytest.fixture
def folder(tmp_path: Path, rare_video: Path, stamps_root: Path) -> Path:
    """A video in a subfolder, beside three ordinary images."""
    root = tmp_path / "images"
    (root / "cams").mkdir(parents=True)
    shutil.copy2(rare_video, root / "cams" / "line.MP4")  # extensions are case-insensitive
    for path in stamp_files(stamps_root, ("food",), 3):
        shutil.copy2(path, root / path.name)
    return root


def test_frames_are_sampled_every_interval_and_at_scene_changes(rare_video: Path) -> None:
    frames = list(sample_frames(rare_video, every=3.0))
    times = [f.t for f in frames]
    assert times[0] == 0.0 and times == sorted(times)
    assert max(np.diff(times)) <= 3.0 + 1 / FPS  # never a longer gap than the interval
    cuts = [f.t for f in frames if f.scene_change]
    assert len(cuts) == 2  # both cuts found, nothing else taken for one
    assert 8.0 <= cuts[0] <= 8.0 + 1 / FPS and 12.0 <= cuts[1] <= 12.0 + 1 / FPS
    assert frames[0].image.size == SIZE and frames[0].image.mode == "RGB"
    # without scene detection the interval alone decides, and neither cut falls on it
    plain = [f.t for f in sample_frames(rare_video, every=3.0, scene_threshold=None)]
    assert plain == pytest.approx([0, 3, 6, 9, 12, 15, 18])


def test_update_embeds_frames_and_results_link_back_to_the_moment(
    folder: Path, tiny_model: str, pictures: dict[str, Image.Image], tmp_path: Path
) -> None:
    with picsift.Library(folder, model=tiny_model) as lib:
        report = lib.update(progress=False)
        frames = lib.videos.frames()
        # every 2 s from 0 to 18 (the cuts at 8 and 12 fall on that grid): 10 frames, each an image
        assert report.frames == len(frames) == 10, frames
        assert report.added == 4 and not report.skipped
        assert lib.status()["embedded"] >= 3 + 1  # the three images and the (partly identical) frames
        assert lib.status()["videos"] == 1
        assert set(frames["video"]) == {str(folder / "cams" / "line.MP4")}
        assert all(Path(p).is_file() and Path(p).suffix == ".jpg" for p in frames["path"])
        assert all(Path(p).is_relative_to(lib.workspace / "frames") for p in frames["path"])

        query = tmp_path / "b.png"  # the rare picture, as a file outside the library
        pictures["B"].save(query)
        results = lib.similar(query, limit=5)
        assert list(results.df.columns) == ["rank", "id", "path", "score", "video", "t"]
        top = results.df.iloc[0]
        assert 8.0 <= top["t"] < 12.0 and top["video"] == str(folder / "cams" / "line.MP4")
        assert Path(top["path"]).is_file()  # the gallery shows the frame itself
        video, t = lib.videos.moment(top["id"])
        assert video == folder / "cams" / "line.MP4" and 8.0 <= t < 12.0
        assert moment_url(video, t, base=folder).startswith("cams/line.MP4#t=")

        image = next(p for p in folder.glob("*.png"))
        image_results = lib.similar(image, limit=20)
        assert np.isnan(image_results.df.set_index("path").loc[str(image), "t"])
        assert lib.videos.moment(image_results.ids[0]) is None


def test_unchanged_video_is_not_read_again_and_changes_replace_its_frames(
    folder: Path, tiny_model: str, pictures: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    video = folder / "cams" / "line.MP4"
    with picsift.Library(folder, model=tiny_model) as lib:
        lib.update(progress=False)
        old = lib.videos.frames()

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("an unchanged video was decoded again")

        monkeypatch.setattr(picsift.core.video, "sample_frames", refuse)
        again = lib.update(progress=False)
        assert (again.embedded, again.frames, again.removed, again.unchanged) == (0, 0, 0, 4)
        assert lib.videos.frames().equals(old)
        monkeypatch.undo()

        write_video(video, [(pictures["C"], 5)])  # different content under the same name
        changed = lib.update(progress=False)
        assert changed.changed == 1 and changed.frames == 3  # 0, 2, 4 s
        new = lib.videos.frames()
        assert sorted(new["t"]) == pytest.approx([0, 2, 4])
        assert not any(Path(p).exists() for p in old["path"])  # the old frames' files are gone
        assert not set(old["id"]) & set(lib.store.embedded_ids())  # and so are their embeddings
        assert all(lib.videos.moment(i) is None for i in old["id"])

        video.unlink()
        removed = lib.update(progress=False)
        assert removed.removed == 1 and lib.videos.frames().empty
        assert not any(Path(p).exists() for p in new["path"])
        assert set(lib.images()["path"]) == {str(p) for p in folder.glob("*.png")}
        assert lib.status()["videos"] == 0


def test_moved_or_copied_video_reuses_its_frames(folder: Path, tiny_model: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with picsift.Library(folder, model=tiny_model) as lib:
        lib.update(progress=False)
        before = lib.videos.frames()
        monkeypatch.setattr(picsift.core.video, "sample_frames", None)  # decoding again would fail
        (folder / "cams" / "line.MP4").rename(folder / "moved.mkv")
        shutil.copy2(folder / "moved.mkv", folder / "copy.mov")
        report = lib.update(progress=False)
        assert (report.added, report.removed, report.embedded, report.reused) == (2, 1, 0, 2 * len(before))
        frames = lib.videos.frames()
        assert set(frames["video"]) == {str(folder / "moved.mkv"), str(folder / "copy.mov")}
        assert set(frames["path"]) == set(before["path"]) and all(Path(p).exists() for p in frames["path"])


def test_unreadable_videos_are_skipped_with_a_reason_and_the_rest_is_embedded(
    folder: Path, tiny_model: str, rare_video: Path
) -> None:
    (folder / "random.mp4").write_bytes(os.urandom(50_000))
    (folder / "truncated.mov").write_bytes(rare_video.read_bytes()[: rare_video.stat().st_size // 3])
    (folder / "empty.webm").write_bytes(b"")
    with picsift.Library(folder, model=tiny_model) as lib:
        report = lib.update(progress=False)
        reasons = dict(report.skipped)
        assert set(reasons) == {"random.mp4", "truncated.mov", "empty.webm"}
        assert all("video" in reason for reason in reasons.values()), reasons
        assert dict(lib.skipped()) == reasons
        assert report.frames == 10 and lib.status()["embedded"] >= 4
        assert lib.update(progress=False).skipped == []  # an unchanged bad file is not read again

        shutil.copy2(rare_video, folder / "random.mp4")  # fixed: now it is sampled and its error is gone
        fixed = lib.update(progress=False)
        assert fixed.changed == 1 and fixed.reused == 10 and "random.mp4" not in dict(lib.skipped())


def test_without_pyav_videos_are_reported_and_taken_up_once_it_is_installed(
    folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with picsift.Library(folder, model=tiny_model) as lib:
        monkeypatch.setattr(picsift.core.video, "av_available", lambda: False)
        report = lib.update(progress=False)
        assert report.skipped == [("cams/line.MP4", 'reading videos needs PyAV: pip install "picsift[video]"')]
        assert lib.videos.frames().empty and lib.skipped() == []  # nothing recorded: it is not the file's fault
        monkeypatch.undo()
        assert lib.update(progress=False).frames == 10


def test_frames_outside_the_root_have_absolute_paths(folder: Path, tiny_model: str, tmp_path: Path) -> None:
    with picsift.Library(folder, model=tiny_model, workspace=tmp_path / "elsewhere") as lib:
        lib.update(progress=False)
        frames = lib.videos.frames()
        assert all(Path(p).is_relative_to(tmp_path / "elsewhere" / "frames") and Path(p).is_file()
                   for p in frames["path"])
        assert lib.paths(frames["id"].tolist()[:1]) == {frames["id"][0]: Path(frames["path"][0])}


def test_moment_url() -> None:
    assert moment_url("/data/cams/a b.mp4", 12.5) == "file:///data/cams/a%20b.mp4#t=12.5"
    assert moment_url("/data/cams/a.mp4", 8.0, base="/data") == "cams/a.mp4#t=8"
    with pytest.raises(VideoDecodeError, match="not a readable video"):
        next(sample_frames(Path(__file__)))


# The child SIGKILLs itself right after the nth call of one function, mid-way through sampling a video.
CHILD = KILL_AFTER + """
import sys
import picsift, picsift.core.catalog.videos, picsift.core.store, picsift.core.video_update
folder, spec, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
owners = {"commit_rows": picsift.core.store.EmbeddingStore, "write_video": picsift.core.catalog.videos,
          "delete_frame_files": picsift.core.video_update.VideoPass}
kill_after(owners[point], point, nth)
picsift.Library(folder, model=spec, batch_size=4).update(progress=False)
"""


@pytest.mark.parametrize(("point", "nth", "change"), [
    ("commit_rows", 1, False),  # the first batch of frames committed, the video not finished
    ("write_video", 1, False),  # inside the transaction that finishes the video
    ("delete_frame_files", 1, True),  # a changed video's old frames forgotten, their files not deleted yet
])
def test_an_update_killed_while_sampling_a_video_is_finished_by_the_next(
    folder: Path, tiny_model: str, pictures: dict[str, Image.Image], tmp_path: Path, point: str, nth: int,
    change: bool,
) -> None:
    import signal
    import sys

    video = folder / "cams" / "line.MP4"
    if change:
        with picsift.Library(folder, model=tiny_model, batch_size=4) as lib:
            lib.update(progress=False)
        write_video(video, [(pictures["C"], 5)])
    with picsift.Library(folder, model=tiny_model, workspace=tmp_path / "reference", batch_size=4) as lib:
        lib.update(progress=False)
        reference = lib.videos.frames()
    child = fast_python.run([sys.executable, "-c", CHILD, str(folder), tiny_model, point, str(nth)],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with picsift.Library(folder, model=tiny_model, batch_size=4) as lib:
        lib.update(progress=False)
        frames = lib.videos.frames()
        assert frames[["id", "t"]].equals(reference[["id", "t"]])
        assert sorted(map(str, (lib.workspace / "frames").glob("*/*.jpg"))) == sorted(frames["path"])
        embedded = lib.store.embedded_ids()
        assert set(frames["id"]) <= embedded and len(embedded) == len(set(frames["id"])) + 3
        files = lib.catalog.files()
        assert len(files) == 3 + len(frames) and all(r.error is None for r in files.values())
