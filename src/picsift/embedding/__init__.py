"""Embedding: model specs, robust image decoding and the open_clip embedder."""

from __future__ import annotations

from .decode import IMAGE_EXTENSIONS, DecodedImage, ImageDecodeError, decode_image
from .openclip import DEFAULT_MODEL, Embedder, pick_device
from .spec import ModelSpec, parse_model_spec

__all__ = [
    "DEFAULT_MODEL",
    "IMAGE_EXTENSIONS",
    "DecodedImage",
    "Embedder",
    "ImageDecodeError",
    "ModelSpec",
    "decode_image",
    "parse_model_spec",
    "pick_device",
]
