"""A prompt through the text tower: today's path against the full-context path it replaced (issue 25, item 4).

``Embedder.embed_text`` runs a Hugging Face text tower (the offline model's MiniLM) on the prompt's tokens
without the padding to the context length, and keeps recent prompts' vectors. Measured in one process,
alternating: the padded forward pass (``model.encode_text`` on the tokenizer's full-length tokens, what
``embed_text`` did before), the trimmed one on torch's whole thread pool (before issue 25) and on one thread
(today, a new prompt), and a prompt asked again (the cache). The vectors
of the two forward passes are compared (cosine, and the largest element difference).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/text_tower.py [--model picsift-offline] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import header, median, table, timed

from picsift.embedding.openclip import Embedder, _normalise, _trim_padding

PROMPTS = ["a bird", "a red bicycle", "a dog on a beach", "a musical instrument", "a house", "a flower",
           "a traffic sign", "a picture of vehicles", "a cat", "a tree", "a boat", "a coin", "a hat", "a fish",
           "a train", "a planet", "a chess piece", "a fruit", "a tool", "a photo of a Christmas decoration"]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="picsift-offline")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    header(f"text tower, one prompt at a time, {args.model}", sys.argv)
    embedder = Embedder(args.model, device="cpu")
    model, tokenizer = embedder._model, embedder._tokenizer

    def padded(prompt: str) -> np.ndarray:
        with torch.inference_mode():
            return _normalise(model.encode_text(tokenizer([prompt])))

    def trimmed(prompt: str) -> np.ndarray:
        embedder._text_cache.pop(prompt, None)  # a new prompt
        return embedder.embed_text([prompt])

    def both_threads(prompt: str) -> np.ndarray:  # trimmed, on torch's whole pool (before the one-thread pass)
        with torch.inference_mode():
            return _normalise(model.encode_text(_trim_padding(tokenizer([prompt]), embedder._pad_token_id)))

    times: dict[str, list[float]] = {"padded (before)": [], f"trimmed, {torch.get_num_threads()} threads": [],
                                     "trimmed, 1 thread (new prompt)": [], "cached (asked again)": []}
    cosines, differences = [], []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            t_a, a = timed(lambda p=prompt: padded(p))
            t_d, _ = timed(lambda p=prompt: both_threads(p))
            t_b, b = timed(lambda p=prompt: trimmed(p))
            t_c, _ = timed(lambda p=prompt: embedder.embed_text([p]))
            times["padded (before)"].append(t_a)
            times[f"trimmed, {torch.get_num_threads()} threads"].append(t_d)
            times["trimmed, 1 thread (new prompt)"].append(t_b)
            times["cached (asked again)"].append(t_c)
            cosines.append(float(a[0] @ b[0]))
            differences.append(float(np.abs(a - b).max()))
    base = median(times["padded (before)"])
    print(table([[name, f"{1000 * median(values):.2f}", f"{median(values) / base:.3f}x"]
                 for name, values in times.items()], ["path", "median ms", "ratio to padded"]))
    tokens = tokenizer(PROMPTS)
    print(f"\ncontext length {tokens.shape[1]} tokens; prompts use {int((tokens != 0).sum(1).max())} at most")
    print(f"cosine trimmed vs padded: min {min(cosines):.7f}; largest element difference {max(differences):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
