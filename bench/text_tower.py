"""A prompt through the text tower, on each runtime tried (issue 25, item 4).

``Embedder.embed_text`` runs a Hugging Face text tower (the offline model's MiniLM) on the prompt's tokens
without the padding to the context length, on onnxruntime where it is installed (torch otherwise), and keeps
recent prompts' vectors. Measured in one process, alternating, one prompt at a time: the padded torch pass
(``model.encode_text`` on the tokenizer's full-length tokens, what ``embed_text`` did before issue 25), the trimmed
torch pass on torch's whole thread pool and on one thread (issue 25's first step), the same traced and frozen
with ``torch.jit`` (one thread), onnxruntime (today, a new prompt), and a prompt asked again (the cache). Every
path's vectors are compared with the padded pass's (the least cosine, the largest element difference).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/text_tower.py [--model picsift-offline] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
from common import header, median, table
from text_query import PROMPTS

from picsift.embedding.openclip import Embedder, _normalise, _normalise_array, _trim_padding


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="picsift-offline")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    header(f"text tower, one prompt at a time, {args.model}", sys.argv)
    embedder = Embedder(args.model, device="cpu")
    model, tokenizer, pad = embedder._model, embedder._tokenizer, embedder._pad_token_id
    embedder.embed_text(["load the fast tower"])
    fast = embedder._fast_text
    pool = torch.get_num_threads()

    def tokens(prompt: str) -> torch.Tensor:
        return _trim_padding(tokenizer([prompt]), pad)

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.text, tokens("a dog"),
                                                                                   check_trace=False).eval()))

    def padded(prompt: str) -> np.ndarray:
        with torch.inference_mode():
            return _normalise(model.encode_text(tokenizer([prompt])))

    def on_pool(prompt: str) -> np.ndarray:
        with torch.inference_mode():
            return _normalise(model.encode_text(tokens(prompt)))

    def one_thread(prompt: str) -> np.ndarray:
        return embedder._encode_text_torch(tokens(prompt))

    def jit(prompt: str) -> np.ndarray:
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return _normalise(traced(tokens(prompt)))
        finally:
            torch.set_num_threads(pool)

    def onnx(prompt: str) -> np.ndarray:
        if fast is None:
            return np.full((1, embedder.dim), np.nan, np.float32)
        return _normalise_array(fast(tokens(prompt).numpy()))

    def new_prompt(prompt: str) -> np.ndarray:
        embedder._text_cache.pop(prompt, None)
        return embedder.embed_text([prompt])

    paths: dict[str, Callable[[str], np.ndarray]] = {
        "torch, padded to 77 tokens (before issue 25)": padded, f"torch, trimmed, {pool} threads": on_pool,
        "torch, trimmed, 1 thread": one_thread, "torch.jit trace + freeze, 1 thread": jit,
        f"onnxruntime, 1 thread ({'loaded' if fast else 'NOT installed'})": onnx,
        "embed_text, new prompt (today)": new_prompt,
        "embed_text, asked again (cache)": lambda p: embedder.embed_text([p])}
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    cosine: dict[str, list[float]] = {name: [] for name in paths}
    difference: dict[str, list[float]] = {name: [] for name in paths}
    prompts = PROMPTS[: 40]
    for r in range(args.rounds):
        for prompt in prompts:
            reference = padded(prompt)
            for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:  # the cache holds it from the last round
                w, c = time.perf_counter(), time.process_time()
                vector = paths[name](prompt)
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)
                cosine[name].append(float(vector[0] @ reference[0]))
                difference[name].append(float(np.abs(vector - reference).max()))
    base = median(cpu[next(iter(paths))])
    print(table([[name, 1000 * median(wall[name]), 1000 * median(cpu[name]), f"{median(cpu[name]) / base:.3f}x",
                  f"{min(cosine[name]):.7f}", f"{max(difference[name]):.1e}"] for name in paths],
                ["path", "median wall ms", "median CPU ms", "CPU vs padded", "least cosine vs padded",
                 "largest difference"]))
    lengths = (tokenizer(prompts) != pad).sum(1)
    print(f"\n{len(prompts)} prompts x {args.rounds} rounds; context length {tokenizer(['a']).shape[1]} tokens; the "
          f"prompts use {int(lengths.min())}-{int(lengths.max())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
