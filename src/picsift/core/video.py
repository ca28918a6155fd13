"""Videos as images: sample frames with PyAV, keep them as JPEGs, remember where each came from.

A video is sampled every ``every`` seconds and, in between, on scene changes: each decoded frame is
reduced to a small grayscale thumbnail, and a frame whose thumbnail differs from the previous one by
more than :data:`SCENE_THRESHOLD` (mean absolute difference, as a fraction of full range) starts a new
shot and is sampled too; the regular interval then restarts from it. Sampled frames are written to the
workspace's frame cache (``WORKSPACE/frames/<video id[:16]>/<milliseconds>.jpg``) and catalogued like
any image; the ``video_frames`` table links each back to its video and timestamp.

PyAV (``pip install "picsift[video]"``) ships FFmpeg in its wheel, so no system decoder is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import PicsiftError
from ..reading import open_regular_file
from ..terminal import printable
from ..workspace_files import FRAME_FILE, FRAME_FOLDER, UnsafeWorkspaceFileError, WorkspaceFiles, checked_name
from .catalog import ID_HEX_LENGTH, VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

__all__ = ["VIDEO_EXTENSIONS", "SampledFrame", "VideoDecodeError", "moment_url", "sample_frames"]
#: Seconds between regularly sampled frames.
DEFAULT_EVERY = 2.0
#: A frame whose thumbnail differs from the previous frame's by more than this is a scene change.
SCENE_THRESHOLD = 0.1
#: Scene changes closer than this to the last sampled frame are not sampled (flashes, fast cuts).
MIN_SCENE_GAP = 0.5
#: Cached frames are reduced to this longest side; the video itself keeps the full picture.
FRAME_MAX_SIDE = 1280
FRAME_QUALITY = 90
#: A cached frame larger than this is not one picsift wrote (a 1280 px JPEG at quality 90 is under 1 MB).
FRAME_FILE_LIMIT = 64 * 2**20
_THUMB_SIZE = (48, 27)
_HASH_CHUNK = 8 << 20


class VideoDecodeError(Exception):
    """A video could not be read; ``str(e)`` is the reason recorded in the catalog."""


@dataclass
class SampledFrame:
    t: float  # seconds from the start of the video
    image: Image.Image  # RGB, upright, longest side at most FRAME_MAX_SIDE
    scene_change: bool


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def sampling_key(every: float) -> str:
    """What the frames of a video depend on besides its bytes: a change re-extracts every video."""
    return json.dumps({"every": every, "scene": SCENE_THRESHOLD, "gap": MIN_SCENE_GAP, "side": FRAME_MAX_SIDE,
                       "quality": FRAME_QUALITY})


def file_content_id(path: str | os.PathLike[str]) -> str:
    """:func:`picsift.core.catalog.content_id` of a file, read in chunks (videos can be many gigabytes)."""
    digest = hashlib.blake2b(digest_size=ID_HEX_LENGTH // 2)
    f, _ = open_regular_file(path)  # a named pipe called x.mp4 would block a plain open() forever
    with f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def frame_name(t: float) -> str:
    """File name of the frame at ``t`` seconds: zero-padded milliseconds, so names sort by time."""
    return f"{round(t * 1000):09d}.jpg"


class FrameCache:
    """The frame JPEGs picsift writes under ``WORKSPACE/frames``, and the manifests that say which they are.

    Each video's folder (``<video id[:16]>``) holds a manifest (:attr:`MANIFEST`) naming every frame file
    written there, appended before the file itself is written, so a process killed in between leaves a
    name without a file, never a file without a name. Only files that a manifest names, in a video
    folder of this cache, are ever deleted: whatever a catalog or a workspace says, a file picsift did not
    write is never removed. Every file is reached through :class:`~picsift.workspace_files.WorkspaceFiles`:
    a link planted anywhere in the cache is never followed (a frame is written under a new name and renamed
    into place; the manifest must be a regular file with one link).
    """

    MANIFEST = "written.txt"
    _FOLDER = FRAME_FOLDER
    _NAME = FRAME_FILE

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._files = WorkspaceFiles(self.folder.parent)
        self._lock = threading.Lock()
        self._checked = False

    def _relative(self, *names: str) -> str:
        return "/".join((self.folder.name, *names))

    def _own_folder(self) -> None:
        """Replace a link or file planted where the cache's folder belongs by a folder of its own (once)."""
        if self._checked:
            return
        name = self.folder.name
        if self._files.exists(name) and not self._files.is_folder(name):
            log.warning("%s is not a folder picsift made (a link or a file): replacing it with a new frame cache; "
                        "nothing it points to is touched", self.folder)
            self._files.remove(name)
        self._checked = True

    def write(self, video_id: str, t: float, data: bytes) -> Path:
        """Write the frame of ``video_id`` at ``t`` seconds; returns its path."""
        video_folder = checked_name(video_id[:16], self._FOLDER, "video id")
        name = frame_name(t)
        with self._lock:  # frames are written from several threads
            self._own_folder()
            manifest_file = self._relative(video_folder, self.MANIFEST)
            try:
                manifest = self._files.open_update(manifest_file, append=True)
            except UnsafeWorkspaceFileError as e:  # planted: it lists nothing picsift wrote
                log.warning("%s: starting a new frame manifest (what it points to is not touched)", e)
                self._files.remove(manifest_file)
                manifest = self._files.open_update(manifest_file, append=True)
            with manifest:
                manifest.write(f"{name}\n".encode())
        self._files.write_bytes(self._relative(video_folder, name), data)
        return self.folder / video_folder / name

    def intact(self, file: Path) -> bool:
        """Whether the frame ``file`` is in place as picsift wrote it: a regular file with one link, of a frame's
        size, in a video folder of this cache (anything else is sampled again from its video)."""
        file = Path(os.path.normpath(file))
        folder = file.parent
        if folder.parent != self.folder or not self._FOLDER.fullmatch(folder.name) or not self._NAME.fullmatch(
                file.name):
            return False
        info = self._files.lstat(self._relative(folder.name, file.name))
        return (info is not None and stat.S_ISREG(info.st_mode) and info.st_nlink == 1
                and 0 < info.st_size <= FRAME_FILE_LIMIT)

    def written(self, folder: Path) -> set[str]:
        """Names of the frame files the manifest of ``folder`` lists (an empty set for any other folder)."""
        if folder.parent != self.folder or not self._FOLDER.fullmatch(folder.name):
            return set()
        try:  # a regular file of reasonable size, reached without links: a shared workspace could hold anything
            data = self._files.read_bytes(self._relative(folder.name, self.MANIFEST), 64 * 2**20)
        except OSError:
            return set()
        lines = data.decode("utf-8", errors="replace").splitlines()
        return {name for name in lines if self._NAME.fullmatch(name)}

    def delete(self, files: Iterable[Path]) -> None:
        """Delete those of ``files`` this cache wrote (others are left alone), and video folders left empty."""
        by_folder: dict[Path, list[Path]] = {}
        for file in files:
            file = Path(os.path.normpath(file))
            by_folder.setdefault(file.parent, []).append(file)
        for folder, group in by_folder.items():
            written = self.written(folder)
            for file in group:
                if file.name in written:
                    with suppress(OSError):
                        self._files.remove(self._relative(folder.name, file.name))
            self._tidy(folder, written)

    def sweep(self, keep: set[str]) -> None:
        """Delete the frame files this cache wrote that are not in ``keep`` (paths as strings)."""
        if not self._files.is_folder(self.folder.name):
            return
        for name in self._files.list(self.folder.name):
            folder = self.folder / name
            self.delete(folder / frame for frame in self.written(folder) if str(folder / frame) not in keep)

    def _tidy(self, folder: Path, written: set[str]) -> None:
        """Rewrite ``folder``'s manifest to the frames still there; remove the folder when none are."""
        if not written:
            return
        left = sorted(name for name in written if self._files.exists(self._relative(folder.name, name)))
        with suppress(OSError):
            if left:
                self._files.write_bytes(self._relative(folder.name, self.MANIFEST),
                                        "".join(f"{name}\n" for name in left))
            else:
                self._files.remove(self._relative(folder.name, self.MANIFEST))
                if not self._files.list(self._relative(folder.name)):  # only when empty: anything else stays
                    self._files.remove(self._relative(folder.name))


def moment_url(video: str | os.PathLike[str], t: float, base: str | os.PathLike[str] | None = None) -> str:
    """A link that opens ``video`` at ``t`` seconds (an HTML media fragment, ``...#t=12.5``).

    With ``base`` (e.g. the notebook's folder) the path is relative to it, which is what Jupyter serves
    to the browser; without, it is a ``file://`` URL.
    """
    fragment = f"#t={max(t, 0.0):.3f}".rstrip("0").rstrip(".")
    if base is not None:
        return Path(os.path.relpath(video, base)).as_posix() + fragment
    return Path(video).resolve().as_uri() + fragment


def _require_av() -> Any:
    try:
        import av
    except ImportError as e:
        raise PicsiftError('reading videos needs PyAV: pip install "picsift[video]"') from e
    return av


def av_available() -> bool:
    try:
        _require_av()
    except PicsiftError:
        return False
    return True


def sample_frames(
    path: str | os.PathLike[str],
    every: float = DEFAULT_EVERY,
    *,
    scene_threshold: float | None = SCENE_THRESHOLD,
    progress: bool = False,
) -> Iterator[SampledFrame]:
    """Frames of a video every ``every`` seconds and at scene changes (``scene_threshold=None``: never).

    Raises :class:`VideoDecodeError` when the file is no readable video. A video that breaks off
    half-way keeps the frames sampled before the break (logged as a warning).
    """
    from tqdm.auto import tqdm

    av = _require_av()
    if every <= 0:
        raise ValueError(f"every must be positive seconds, got {every!r}")
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"not a readable video: {_reason(e)}") from e
    with container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's own frame/slice threads
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        duration = _duration(container, stream)
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        bar = tqdm(total=math.ceil(duration / every) if duration else None, unit="frame", leave=False,
                   desc=f"Frames of {printable(Path(path).name)}", disable=not progress or duration < 60)
        previous: np.ndarray | None = None
        next_regular, last, sampled, index = 0.0, -math.inf, 0, 0
        try:
            for frame in container.decode(stream):
                t = max(0.0, frame.time - start) if frame.time is not None else index / rate
                index += 1
                changed = False
                if scene_threshold is not None:
                    thumb = frame.reformat(*_THUMB_SIZE, format="gray", interpolation="AREA").to_ndarray()
                    if previous is not None:
                        changed = float(np.abs(thumb.astype(np.int16) - previous).mean()) > 255 * scene_threshold
                    previous = thumb
                if t >= next_regular or (changed and t - last >= MIN_SCENE_GAP):
                    yield SampledFrame(t, _picture(frame), changed)
                    sampled += 1
                    bar.update(1)
                    last, next_regular = t, t + every
        except (av.FFmpegError, MemoryError, ValueError) as e:
            if not sampled:
                raise VideoDecodeError(f"cannot decode video: {_reason(e)}") from e
            log.warning("%s: decoding stopped at %.1fs (%s); keeping the %d frames before it",
                        path, last, _reason(e), sampled)
        finally:
            bar.close()
        if not sampled:
            raise VideoDecodeError("no decodable frames in the video")


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def _picture(frame: Any) -> Image.Image:
    scale = min(1.0, FRAME_MAX_SIDE / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    image: Image.Image = frame.reformat(width, height, format="rgb24", interpolation="AREA").to_image()
    rotation = getattr(frame, "rotation", 0) or 0  # phone videos: the display matrix says how to turn it
    return image.rotate(rotation, expand=True) if rotation else image


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).rstrip(".")


class Videos:
    """The frames sampled from a library's videos (``Library.videos``).

    Parameters
    ----------
    catalog, root
        The workspace catalog and the image folder.
    """

    def __init__(self, catalog: Catalog, root: Path):
        self.catalog, self.root = catalog, root

    def frames(self, video: str | os.PathLike[str] | None = None) -> pd.DataFrame:
        """Frames sampled from videos (all, or one video's): ``id``, ``path`` (the frame JPEG), ``video``, ``t``.

        ``t`` is seconds from the start of the video; rows are in video and time order.
        """
        rows = self.catalog.videos.frames(None if video is None else self._relative_video(video))
        df = pd.DataFrame(rows, columns=["id", "path", "video", "t"])
        df["path"] = [str(self.root / p) for p in df["path"]]
        df["video"] = [str(self.root / p) for p in df["video"]]
        return df

    def moment(self, image_id: str) -> tuple[Path, float] | None:
        """The video and second an image was sampled from, or None for an image that is no video frame.

        Open it there with ``picsift.core.video.moment_url(video, t)`` (an HTML media fragment, ``...#t=12.5``).
        """
        found = self.catalog.videos.moments([image_id]).get(image_id)
        return (self.root / found[0], found[1]) if found else None

    def _relative_video(self, video: str | os.PathLike[str]) -> str:
        path = Path(video).expanduser()
        with suppress(ValueError):
            return path.resolve().relative_to(self.root).as_posix() if path.is_absolute() else path.as_posix()
        return path.as_posix()

    def moments(self, ids: list[str]) -> dict[str, tuple[Path, float]] | None:
        """The video and second of each of ``ids`` that is a video frame; None when the library holds no videos."""
        if not ids or not self.catalog.videos.has_frames():
            return None
        return {i: (self.root / video, t) for i, (video, t) in self.catalog.videos.moments(ids).items()}
