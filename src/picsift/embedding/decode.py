"""Turning image files into model-ready RGB pictures, robustly.

Every failure becomes a short human-readable reason; nothing here raises for a bad file except
:class:`ImageDecodeError`, which carries that reason.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: Larger pictures are refused as likely decompression bombs (Pillow's own default limit).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

_ROTATING_ORIENTATIONS = {5, 6, 7, 8}


class ImageDecodeError(Exception):
    """A file could not be turned into a picture; ``str(e)`` is the reason recorded in the catalog."""


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, possibly reduced by JPEG draft decoding
    width: int  # original size, after EXIF orientation
    height: int


def decode_image(data: bytes, target_size: int | None = None, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode ``data`` into an RGB picture.

    Parameters
    ----------
    data
        The file's bytes.
    target_size
        The model's input side in pixels. JPEGs are then decoded at the smallest DCT scale that keeps
        both sides at least this large (Pillow's ``draft``), which the model's own resize to
        ``target_size`` makes indistinguishable while decoding many times faster.
    max_pixels
        Larger pictures are refused as decompression bombs.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"{width}x{height} pixels exceeds the {max_pixels:,}-pixel limit (decompression bomb?)"
                )
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            if orientation in _ROTATING_ORIENTATIONS:
                width, height = height, width
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            if target_size and image.format in ("JPEG", "MPO"):  # MPO: multi-picture JPEGs from cameras
                image.draft("RGB", (target_size, target_size))
            image.load()
            # exif_transpose copies even an upright picture; only pictures that need turning go through it.
            upright = image if orientation == 1 else ImageOps.exif_transpose(image) or image
            return DecodedImage(to_rgb(upright), width, height)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as e:
        raise ImageDecodeError("not a readable image (unknown or corrupt format)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"decompression bomb refused: {e}") from e
    except OSError as e:
        raise ImageDecodeError(f"corrupt or truncated image: {e}") from e
    except (ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise ImageDecodeError(f"cannot decode image: {type(e).__name__}: {e}") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: wide integer modes scaled, transparency composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow clips (not scales) wide integer modes on convert("L"); scale them ourselves.
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) if array.size else 0.0
        scale = 255.0 / 65535.0 if mode.startswith("I;16") or peak > 255 else 1.0
        if mode == "F" and peak <= 1.0:
            scale = 255.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        # Cut-outs on white look like what people photograph; black would invent a dark background.
        # Pasting through the alpha band gives exactly alpha_composite's pixels on opaque white (checked for
        # every value and alpha) without its two extra RGBA copies.
        if mode not in ("RGBA", "LA"):
            image = image.convert("RGBA")
        composited = Image.new("RGB", image.size, (255, 255, 255))
        composited.paste(image, mask=image)
        return composited
    if mode != "RGB":
        return image.convert("RGB")
    return image


class SplitPreprocess:
    """A model's image transform split into a per-image half and a per-batch half, same pixels as the whole.

    open_clip's transform ends in ``ToTensor`` + ``Normalize``: per image, a float copy and two more passes
    over it, then ``torch.stack`` copies every image again (and a convolutional tower a third time, into
    channels-last layout). Here :meth:`prepare` runs the transform's geometric steps (resize, crop, RGB) and
    keeps the 8-bit pixels, a quarter of the bytes; :meth:`collate` turns a batch of them into the model's
    input in one conversion, straight into the layout the model wants, with the same float operations
    (``/255``, ``- mean``, ``/ std``), so the result equals ``torch.stack([preprocess(i) for i in images])``
    bit for bit. A transform that does not end that way is applied whole per image and stacked.

    Parameters
    ----------
    preprocess
        The model's transform (a torchvision ``Compose``, as open_clip builds it).
    channels_last
        Give :meth:`collate`'s batches channels-last memory layout (what convolutional towers run fastest on).
    """

    def __init__(self, preprocess: Callable[[Any], Any], channels_last: bool = False):
        import torch
        from torchvision.transforms import Compose, Normalize, ToTensor

        self.preprocess = preprocess
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        steps = list(getattr(preprocess, "transforms", []))
        tail = steps[-2:]
        self.split = (
            isinstance(preprocess, Compose) and len(tail) == 2 and type(tail[1]) is Normalize
            and (type(tail[0]) is ToTensor or type(tail[0]).__name__ == "MaybeToTensor")  # open_clip's subclass
        )
        self.geometry = Compose(steps[:-2]) if self.split else None
        self.tail = Compose(tail) if self.split else None
        if self.split:
            self.mean = torch.as_tensor(tail[1].mean, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
            self.std = torch.as_tensor(tail[1].std, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
        self._plane_cache: dict[tuple[int, int], tuple[Any, Any]] = {}

    def prepare(self, image: Image.Image) -> Any:
        """One decoded picture's pixels for :meth:`collate` (safe to call from several threads at once)."""
        if self.geometry is None:
            return self.preprocess(image)
        return np.asarray(self.geometry(image))

    def collate(self, items: Sequence[Any]) -> Any:
        """The model input ``(n, C, H, W)`` float tensor for :meth:`prepare`'s results."""
        import torch

        if self.tail is None:
            return torch.stack(list(items)).contiguous(memory_format=self.memory_format)
        first = items[0]
        if any(a.dtype != np.uint8 or a.ndim != 3 or a.shape != first.shape for a in items) or first.shape[2] != 3:
            # Not 8-bit RGB of one size (a transform that keeps other modes): the transform's own tail per image.
            return torch.stack([self.tail(np.array(a)) for a in items]).contiguous(memory_format=self.memory_format)
        pixels = torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2)  # NHWC bytes seen as NCHW
        batch = pixels.to(torch.get_default_dtype(), memory_format=self.memory_format)
        mean, std = self._planes(first.shape[0], first.shape[1])
        # ToTensor's img.float().div(255), then Normalize's sub_(mean).div_(std): the same operations in order.
        return batch.div_(255).sub_(mean).div_(std)

    def _planes(self, height: int, width: int) -> tuple[Any, Any]:
        """Mean and std as whole image planes in the batch's layout: broadcasting a 3-vector over a batch is
        several times slower in torch than an elementwise pass against a plane laid out like the batch."""
        planes = self._plane_cache.get((height, width))
        if planes is None:
            mean, std = (v.expand(1, v.shape[1], height, width).contiguous(memory_format=self.memory_format)
                         for v in (self.mean, self.std))
            planes = self._plane_cache[(height, width)] = (mean, std)
        return planes
