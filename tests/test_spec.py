"""Model spec strings and the embedder around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picsift.embedding import Embedder, parse_model_spec

from .conftest import TINY_CONFIG


def test_pretrained_hub_checkpoint_random_and_config_specs_parse(tmp_path: Path) -> None:
    spec = parse_model_spec("ViT-B-32:laion2b_s34b_b79k")
    assert (spec.kind, spec.arch, spec.tag) == ("pretrained", "ViT-B-32", "laion2b_s34b_b79k")
    assert spec.identity() == "ViT-B-32:laion2b_s34b_b79k"
    assert parse_model_spec("hf-hub:timm/ViT-B-16-SigLIP").kind == "hf-hub"
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"abc")
    spec = parse_model_spec(f"RN50:{checkpoint}")
    assert spec.kind == "checkpoint" and spec.checkpoint == checkpoint
    identity = spec.identity()
    checkpoint.write_bytes(b"abcd")  # new weights, new identity: embeddings never mix
    assert parse_model_spec(f"RN50:{checkpoint}").identity() != identity
    random = parse_model_spec("ViT-B-32:random")
    assert random.is_random and "RANDOM weights" in random.label()
    configured = parse_model_spec(f"{TINY_CONFIG}:random")
    assert configured.arch == "picsift-test-tiny" and configured.config_json == TINY_CONFIG


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty model spec"), ("ViT-B-32", "has no weights part"), ("hf-hub:nope", "hf-hub:ORG/REPO"),
     ("missing.json:random", "does not exist")],
)
def test_bad_specs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_spec(text)


def test_the_embedder_loads_a_real_architecture_from_a_checkpoint_file(tmp_path: Path, stamps_root: Path) -> None:
    """ViT-B-32 (random weights) saved to a file and loaded back by spec gives identical embeddings."""
    import open_clip
    import torch

    from picsift.embedding import decode_image

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    checkpoint = tmp_path / "vit-b-32-random.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    embedder = Embedder(f"ViT-B-32:{checkpoint}", device="cpu", batch_size=2)
    assert embedder.dim == 512 and embedder.image_size == 224
    images = [decode_image(p.read_bytes(), 224).image for p in sorted((stamps_root / "food").rglob("*.png"))[:3]]
    vectors = embedder.embed_images(images)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():
        direct = model.encode_image(torch.stack([preprocess(i) for i in images])).numpy()
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, direct, atol=1e-5)
    text = embedder.embed_text(["a plate of food", "a rocket"])
    assert text.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_random_weights_are_seeded_so_runs_agree() -> None:
    first = Embedder(f"{TINY_CONFIG}:random", device="cpu").embed_text(["a cat"])
    second = Embedder(f"{TINY_CONFIG}:random", device="cpu").embed_text(["a cat"])
    np.testing.assert_array_equal(first, second)
