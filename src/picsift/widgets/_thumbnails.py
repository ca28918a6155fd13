"""Thumbnails for the gallery and the explorer: WebP bytes, cached in memory and in the workspace."""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from ..reading import read_file_bytes
from ..workspace_files import IMAGE_ID, WorkspaceFiles, checked_name

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 160
DETAIL_SIZE = 640
#: A cached WebP thumbnail larger than this is not one picsift wrote (a 640 px one is tens of kB).
THUMBNAIL_FILE_LIMIT = 8 * 2**20


#: ``(width, height)`` of a picture -> the ``(left, top, right, bottom)`` pixels to keep (an object's crop).
Crop = Callable[[int, int], tuple[int, int, int, int]]
#: ``[x, y, w, h]`` in pixels.
Box = Sequence[float]


def encode(path: Path | str, size: int, *, crop: Crop | None = None,
           boxes: Sequence[tuple[Box, str, bool]] = ()) -> bytes:
    """The image at ``path`` fitted into ``size`` x ``size``, as WebP (keeps transparency).

    ``crop``: only the region it gives (an object's crop: ``lib.objects.crop_region``). ``boxes``: ``(box, class,
    highlighted)`` drawn over the picture (``[x, y, w, h]`` in the upright picture's pixels). Only a regular file
    is read (a named pipe swapped in for an image would block), up to :data:`picsift.reading.MAX_FILE_BYTES`.
    """
    with Image.open(io.BytesIO(read_file_bytes(path))) as opened:
        image: Image.Image = ImageOps.exif_transpose(opened)  # upright, as decode_image gives it to the model
        if crop is not None:
            image = image.crop(crop(*image.size))
        scale = min(1.0, size / max(image.size))
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        if boxes:
            draw = ImageDraw.Draw(image)
            for (x, y, w, h), cls, highlighted in sorted(boxes, key=lambda b: b[2]):  # the chosen one on top
                corners = [x * scale, y * scale, (x + w) * scale, (y + h) * scale]
                colour = (255, 200, 0) if highlighted else (0, 200, 255)
                draw.rectangle(corners, outline=colour, width=3 if highlighted else 1)
                draw.text((corners[0] + 2, corners[1] + 1), cls, fill=colour)
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=75, method=0)
        return out.getvalue()


class ThumbnailCache:
    """``get(image_id, path)`` -> WebP bytes; an LRU in memory over files in ``folder`` (optional).

    Files are reached through :class:`~picsift.workspace_files.WorkspaceFiles` rooted at ``folder``'s parent
    (the workspace): an image id becomes a file name only when it is one (32 hex digits), a cached file is
    read only when it is a regular file of reasonable size, and a new one is written under a random name
    and renamed into place, so a link planted in the cache is never followed.
    """

    def __init__(self, folder: Path | None = None, size: int = THUMBNAIL_SIZE, capacity: int = 4096):
        self.folder = Path(folder) / str(size) if folder is not None else None
        self._files = WorkspaceFiles(Path(folder).parent) if folder is not None else None
        self.size = size
        self.capacity = capacity
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, image_id: str, path: Path | str, *, crop: Crop | None = None) -> bytes:
        """The thumbnail of ``image_id`` (with ``crop``: of that object id, its region of ``path``'s picture)."""
        with self._lock:
            data = self._memory.get(image_id)
            if data is not None:
                self._memory.move_to_end(image_id)
                return data
        data = self._load_or_make(image_id, path, crop)
        with self._lock:
            self._memory[image_id] = data
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)
        return data

    def _load_or_make(self, image_id: str, path: Path | str, crop: Crop | None) -> bytes:
        cached = None
        if self.folder is not None and self._files is not None:
            name = checked_name(image_id, IMAGE_ID, "image id")  # an id from a catalog is untrusted
            cached = f"{self.folder.parent.name}/{self.folder.name}/{name}.webp"
            if self._files.exists(cached):
                try:  # the workspace's own file, but a shared workspace could hold a link, pipe or device there
                    return self._files.read_bytes(cached, THUMBNAIL_FILE_LIMIT)
                except OSError as e:
                    log.warning("ignoring cached thumbnail %s (%s)", self._files.path(cached), e)
        data = encode(path, self.size, crop=crop)
        if cached is not None and self._files is not None:
            try:
                self._files.write_bytes(cached, data)
            except OSError as e:  # a read-only workspace still gets thumbnails, just not cached on disk
                log.debug("cannot cache thumbnail %s: %s", cached, e)
        return data
