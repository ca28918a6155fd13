"""The embedder's split preprocessing (resize and crop per image on the reader threads, float conversion and
normalisation once per batch) hands the model exactly the input open_clip's own transform gives, bit for bit,
for every kind of picture an update meets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

from picsift.embedding import Embedder, decode_image
from picsift.embedding.decode import SplitPreprocess

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def embedder(tiny_model: str) -> Embedder:
    return Embedder(tiny_model, device="cpu", batch_size=8)


def encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pictures(stamps_root: Path) -> list[Image.Image]:
    """Decoded pictures of every mode and shape: stamps (RGBA, LA, palette), 16-bit and grey PNGs, CMYK and
    EXIF-rotated JPEGs, a 12 MP JPEG (draft-decoded), panoramas, slivers and pictures below the model's size."""
    stamps = sorted(stamps_root.rglob("*.png"))[::23][:30]
    modes = {Image.open(p).mode for p in stamps}
    assert {"RGBA", "P"} <= modes  # the real stamps cover transparency and palettes
    data = [p.read_bytes() for p in stamps]
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    data += [
        encoded(Image.fromarray((rng.integers(0, 65536, (90, 70))).astype(np.uint16)), "PNG"),
        encoded(noise.convert("L"), "PNG"),
        encoded(noise.convert("CMYK"), "JPEG"),
        encoded(noise, "JPEG", exif=exif),
        encoded(noise.resize((4000, 3000)), "JPEG", quality=80),
        encoded(noise.resize((2000, 150)), "PNG"),
        encoded(noise.resize((31, 700)), "PNG"),
        encoded(noise.resize((5, 3)), "PNG"),
        encoded(noise.resize((224, 224)), "PNG"),
    ]
    return [decode_image(d, 224).image for d in data]


@pytest.mark.parametrize("channels_last", [False, True])
def test_split_preprocess_equals_the_models_transform_bit_for_bit(
    embedder: Embedder, pictures: list[Image.Image], channels_last: bool
) -> None:
    split = SplitPreprocess(embedder.preprocess, channels_last)
    assert split.split  # open_clip's standard transform is recognised
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(pictures), 8):
        chunk = pictures[start : start + 8]
        expected = torch.stack([embedder.preprocess(p) for p in chunk])
        got = split.collate([split.prepare(p) for p in chunk])
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.equal(got, expected), f"pictures {start}..{start + len(chunk)} differ"
        assert got.is_contiguous(memory_format=layout)


def test_embedding_prepared_pictures_gives_the_vectors_of_the_whole_transform(
    embedder: Embedder, pictures: list[Image.Image]
) -> None:
    chunk = pictures[:8]
    whole = embedder.embed_batch(torch.stack([embedder.preprocess(p) for p in chunk]))
    split = embedder.embed_prepared([embedder.prepare(p) for p in chunk])
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(embedder.embed_images(chunk), whole)
    assert embedder.embed_prepared([]).shape == (0, embedder.dim)


def test_a_transform_that_keeps_grey_pictures_grey_falls_back_to_its_own_tail(pictures: list[Image.Image]) -> None:
    transform = Compose([Resize(32, interpolation=InterpolationMode.BICUBIC), CenterCrop(32), ToTensor(),
                         Normalize((0.5,), (0.25,))])
    grey = [p.convert("L") for p in pictures[:6]]
    split = SplitPreprocess(transform)
    assert split.prepare(grey[0]).shape == (32, 32)
    assert torch.equal(split.collate([split.prepare(p) for p in grey]), torch.stack([transform(p) for p in grey]))


def test_an_unrecognised_transform_is_applied_whole(pictures: list[Image.Image]) -> None:
    transform = Compose([Resize(40), CenterCrop(40), ToTensor()])  # no Normalize at the end
    split = SplitPreprocess(transform)
    assert not split.split
    assert torch.equal(split.collate([split.prepare(p) for p in pictures[:4]]),
                       torch.stack([transform(p) for p in pictures[:4]]))
