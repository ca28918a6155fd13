"""Text prompts: the offline model's MiniLM runs without the padding to its context length, on one thread, and
recent prompts are kept (issue 25, item 4); the vectors are those of the full-length forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from picsift.embedding.openclip import TEXT_CACHE, Embedder, _normalise

PROMPTS = ["a bird", "a red bicycle leaning on a wall", "a dog", "a photo of a Christmas decoration"]


def full_length(embedder: Embedder, prompts: list[str]) -> np.ndarray:
    """What embed_text computed before: the tokenizer's full-context tokens through the text tower."""
    import torch

    with torch.inference_mode():
        return _normalise(embedder._model.encode_text(embedder._tokenizer(prompts)))


@pytest.mark.offline_model
def test_the_offline_text_tower_gives_the_full_length_vectors_without_the_padding() -> None:
    embedder = Embedder("picsift-offline", device="cpu")
    tokens = embedder._tokenizer(PROMPTS)
    assert embedder._pad_token_id is not None and int((tokens != embedder._pad_token_id).sum(1).max()) < tokens.shape[1]
    import torch

    threads = torch.get_num_threads()
    got = embedder.embed_text(PROMPTS)  # one batch of different lengths, on one thread
    assert torch.get_num_threads() == threads  # the setting is restored
    want = full_length(embedder, PROMPTS)  # on torch's whole thread pool
    assert got.shape == want.shape and (np.sum(got * want, axis=1) > 0.99999).all()
    alone = np.stack([embedder.embed_text([p])[0] for p in reversed(PROMPTS)])[::-1]  # from the cache
    assert np.array_equal(alone, got)
    embedder._text_cache.clear()
    again = np.stack([embedder.embed_text([p])[0] for p in PROMPTS])  # each prompt alone: its own length
    assert (np.sum(again * want, axis=1) > 0.99999).all()


def test_open_clip_text_transformers_keep_their_full_context_and_the_cache_stays_bounded(tiny_model: str) -> None:
    embedder = Embedder(tiny_model, device="cpu")
    assert embedder._pad_token_id is None  # its positional embedding spans the whole context: nothing trimmed
    assert np.allclose(embedder.embed_text(PROMPTS), full_length(embedder, PROMPTS), atol=1e-6)
    first = embedder.embed_text(["prompt 0"])
    for i in range(1, TEXT_CACHE + 10):
        embedder.embed_text([f"prompt {i}"])
    assert len(embedder._text_cache) == TEXT_CACHE and "prompt 0" not in embedder._text_cache
    assert np.array_equal(embedder.embed_text(["prompt 0"]), first)  # embedded again, the same vector
    returned = embedder.embed_text(["a"])
    kept = returned.copy()
    returned[0, :] = 0.0  # what a caller does with its result never reaches the cache
    assert np.array_equal(embedder.embed_text(["a"]), kept)
    assert embedder.embed_text([]).shape == (0, embedder.dim)
