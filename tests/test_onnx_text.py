"""The offline model's text tower on onnxruntime (issue 25, item 4): the vectors of the torch pass, used when
onnxruntime is installed, torch when it is not or when the export fails; a cached tower file that is broken,
foreign or a link is never used: it is rebuilt, with a log line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from picsift.embedding import onnx_text
from picsift.embedding.openclip import Embedder, _fast_text_wanted, _normalise_array, _trim_padding

pytestmark = pytest.mark.offline_model

PROMPTS = ["a bird", "a red bicycle leaning on a wall", "a dog on a beach", "a photo of a Christmas decoration",
           "", " ", "x", "A PHOTO OF A CAT!!!", "ünïcödé 猫 🐱", "a 3D rendering of the number 42",
           "the quick brown fox jumps over the lazy dog " * 12,  # past the 77-token context: truncated
           "a close-up photo of a tabby cat sleeping on a red sofa next to a window on a sunny afternoon",
           "an X-ray of a hand", "traffic sign: stop", "a diagram; with (brackets) & symbols #1", "tree",
           "a painting of a ship at sea in a storm", "a yellow taxi in New York", "a bowl of ramen", "a violin"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("picsift-offline", device="cpu")


@pytest.fixture
def cache(embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model cache of this test's own for the tower file, not made yet (the model's checkpoint stays where it
    was)."""
    monkeypatch.setenv("PICSIFT_MODEL_CACHE", str(tmp_path / "models"))
    embedder._fast_text, embedder._fast_text_tried = None, False
    embedder._text_cache.clear()
    return tmp_path / "models"


def torch_vectors(embedder: Embedder, prompts: list[str]) -> np.ndarray:
    """Today's torch path, one prompt at a time (as a user types them)."""
    return np.concatenate([embedder._encode_text_torch(_trim_padding(embedder._tokenizer([p]), embedder._pad_token_id))
                           for p in prompts])


def probe_tokens(embedder: Embedder):
    return _trim_padding(embedder._tokenizer(list(onnx_text.PROBES)), embedder._pad_token_id)


def test_prompts_run_on_onnxruntime_with_the_vectors_of_torch(embedder: Embedder, cache: Path) -> None:
    alone = np.concatenate([embedder.embed_text([p]) for p in PROMPTS])
    assert embedder._fast_text is not None  # the fast path served them
    for prompt, vector in zip(PROMPTS[:3], alone, strict=False):
        tokens = _trim_padding(embedder._tokenizer([prompt]), embedder._pad_token_id).numpy()
        assert np.array_equal(vector, _normalise_array(embedder._fast_text(tokens))[0])
    assert (cache / onnx_text.file_name(embedder.identity)).is_file()  # kept in the model cache
    want = torch_vectors(embedder, PROMPTS)
    assert alone.dtype == np.float32 and np.allclose(np.linalg.norm(alone, axis=1), 1, atol=1e-6)
    assert np.sum(alone * want, axis=1).min() >= 0.9999
    assert not np.array_equal(alone[0], alone[1])
    embedder._text_cache.clear()
    together = embedder.embed_text(PROMPTS)  # one batch, padded to its longest prompt
    assert np.sum(together * want, axis=1).min() >= 0.9999
    embedder._text_cache.clear()
    embedder._fast_text, embedder._fast_text_tried = None, False
    embedder.embed_text(["a bird"])  # a new process: the cached file is reused, not exported again
    assert embedder._fast_text is not None


def foreign_tower(dim: int) -> bytes:
    """A valid ONNX text tower of the same signature that is not this model (another model's file)."""
    import torch

    class Bag(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = torch.nn.Embedding(30522, dim)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.words(ids).mean(dim=1)

    torch.manual_seed(0)
    return onnx_text._export(Bag(), torch.zeros((2, 5), dtype=torch.int64))


@pytest.mark.parametrize("planted", ["garbage", "empty", "foreign", "link"])
def test_a_bad_cached_tower_is_rebuilt_with_a_log_line(embedder: Embedder, tmp_path: Path, planted: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    name = onnx_text.file_name(embedder.identity)
    target = tmp_path / "cache" / name
    target.parent.mkdir()
    elsewhere = tmp_path / "elsewhere.onnx"
    if planted == "garbage":
        target.write_bytes(b"\x08\x07not an onnx graph" * 100)
    elif planted == "empty":
        target.write_bytes(b"")
    elif planted == "foreign":
        target.write_bytes(foreign_tower(embedder.dim))
    else:
        elsewhere.write_bytes(b"kept as it is")
        os.symlink(elsewhere, target)
    tokens = probe_tokens(embedder)
    with caplog.at_level(logging.INFO, logger="picsift.embedding.onnx_text"):
        tower = onnx_text.load_text_tower(embedder._model.text, tokens, embedder.identity, target.parent)
    assert tower is not None
    assert "rebuilding it" in caplog.text and str(target) in caplog.text
    assert {"foreign": "does not match the model", "link": "cannot be read"}.get(planted, "not a usable ONNX") \
        in caplog.text
    assert target.is_file() and not target.is_symlink()
    if planted == "link":
        assert elsewhere.read_bytes() == b"kept as it is"  # never written through
    got = tower(tokens.numpy())
    want = embedder._encode_text_torch(tokens)
    assert np.sum(got / np.linalg.norm(got, axis=1, keepdims=True) * want, axis=1).min() >= 0.9999
    caplog.clear()
    before = target.read_bytes()
    with caplog.at_level(logging.INFO, logger="picsift.embedding.onnx_text"):
        again = onnx_text.load_text_tower(embedder._model.text, tokens, embedder.identity, target.parent)
    assert again is not None and "rebuilding" not in caplog.text and target.read_bytes() == before


def test_without_onnxruntime_prompts_run_on_torch(embedder: Embedder, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when not installed
    with caplog.at_level(logging.INFO, logger="picsift.embedding.onnx_text"):
        got = np.concatenate([embedder.embed_text([p]) for p in PROMPTS[:5]])
    assert embedder._fast_text is None and "onnxruntime is not installed" in caplog.text
    assert np.array_equal(got, torch_vectors(embedder, PROMPTS[:5]))  # bit for bit: the torch path itself
    assert not cache.exists()  # nothing written


def test_a_failing_export_leaves_prompts_on_torch_and_writes_nothing(embedder: Embedder, cache: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # torch's exporter needs onnx
    with caplog.at_level(logging.WARNING, logger="picsift.embedding.onnx_text"):
        got = np.concatenate([embedder.embed_text([p]) for p in ["a bird", "a violin"]])
    assert embedder._fast_text is None and "cannot export the text tower to ONNX" in caplog.text
    assert np.array_equal(got, torch_vectors(embedder, ["a bird", "a violin"]))
    assert not cache.exists()  # nothing written


def test_picsift_text_runtime_chooses_torch_and_names_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICSIFT_TEXT_RUNTIME", "torch")
    assert not _fast_text_wanted()
    monkeypatch.setenv("PICSIFT_TEXT_RUNTIME", "auto")
    assert _fast_text_wanted()
    monkeypatch.setenv("PICSIFT_TEXT_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="PICSIFT_TEXT_RUNTIME='tensorrt' is not one of: auto"):
        _fast_text_wanted()
