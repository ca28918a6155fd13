"""The image tower with its batch norms folded into its convolutions (:mod:`picsift.embedding.fold`) against the
same tower unfolded, in one process, alternating, on real images (Tux Paint stamps).

Both are ``Embedder``s of the same model on the CPU (channels-last, as picsift runs a CNN there); the unfolded one
is made with the fold turned off. Reported: ms per image of ``embed_batch`` (the model alone on preprocessed
batches), the ratio, the least cosine between the two towers' vectors and the largest element difference.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fold.py [--model picsift-offline] [--images 128] [--rounds 5]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from common import header, median, table

from picsift.demo import fetch_tuxpaint
from picsift.embedding import openclip


def main(argv: list[str] | None = None) -> int:
    import torch
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="picsift-offline")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: what each ingest worker uses)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    header(f"image tower, batch norms folded vs not, {args.model}, {args.images} real images", sys.argv)
    files = sorted(fetch_tuxpaint().rglob("*.png"))
    files = files[:: max(1, len(files) // args.images)][: args.images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # palette images with transparency
        images = [Image.open(f).convert("RGB") for f in files]
    folded = openclip.Embedder(args.model, device="cpu")
    real = openclip.fold_batch_norms
    openclip.fold_batch_norms = lambda *a: 0
    try:
        plain = openclip.Embedder(args.model, device="cpu")
    finally:
        openclip.fold_batch_norms = real
    batches = [torch.stack([folded.preprocess(i) for i in images[s : s + args.batch]])
               for s in range(0, len(images), args.batch)]

    def run(embedder: openclip.Embedder) -> np.ndarray:
        return np.concatenate([embedder.embed_batch(b) for b in batches])

    a, b = run(plain), run(folded)  # warm
    times: dict[str, list[float]] = {"unfolded": [], "folded": []}
    for _ in range(args.rounds):
        for name, embedder in (("unfolded", plain), ("folded", folded)):
            start = time.perf_counter()
            run(embedder)
            times[name].append(time.perf_counter() - start)
    base = median(times["unfolded"])
    print(table([[name, f"{1000 * median(v) / len(images):.2f}", f"{median(v) / base:.2f}x"]
                 for name, v in times.items()], ["image tower", "ms per image", "vs unfolded"]))
    norms = sum(type(m).__name__ in ("BatchNorm2d", "BatchNormAct2d") for m in plain._model.visual.modules())
    left = sum(type(m).__name__ in ("BatchNorm2d", "BatchNormAct2d") for m in folded._model.visual.modules())
    print(f"batch norms: {norms} unfolded, {left} left after folding; vectors: least cosine "
          f"{float(np.min(np.sum(a * b, axis=1))):.7f}, largest difference {float(np.abs(a - b).max()):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
