"""Turning image files into model-ready RGB pictures, robustly.

Every failure becomes a short human-readable reason; nothing here raises for a bad file except
:class:`ImageDecodeError`, which carries that reason.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

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

