"""Ingest throughput: picsift's update() versus a straightforward open_clip loop and the model alone.

Three ways to embed the same files with the same model object (by default ViT-B-32 with seeded random
weights, which do not change the compute; ``--model picsift-offline`` measures the shipped offline
default), the same batch size and the same torch threads:

* **model-only**: ``encode_image`` + L2-normalise on the same images' tensors, made beforehand (already in
  the memory layout the embedder feeds the model), under ``torch.inference_mode`` as the embedder runs it:
  the bound no pipeline beats;
* **straightforward**: for each batch, ``Image.open(path).convert("RGB")``, the model's ``preprocess``,
  ``torch.stack``, ``encode_image``, normalise, one file after another, as open_clip's README does;
* **picsift**: ``Library(folder, workspace=fresh, model="ViT-B-32:random", index="exact").update()``, the
  whole pipeline: scan, read and hash, decode (JPEG draft), resize and crop on reader threads (taking
  turns with the forward passes when torch uses every core, else overlapped with them), one float
  conversion per batch, vectors fsynced, catalog rows committed per batch, exact index synced.

Two image sets: real small pictures (Tux Paint stamps, PNG) and large photos (12 MP JPEGs at quality
90, generated once from stamps and cached in ``~/.cache/picsift/bench``), where decoding dominates.
The three are measured in turns (rotating order) ``--repeats`` times; the table shows the best of the
repeats and the ratios of those, plus the median of per-round ratios.

    python bench/ingest.py                 # 300 small + 60 large, batch 32, 3 rounds
    python bench/ingest.py --quick         # smoke test, well under a minute
    python bench/ingest.py --model picsift-offline --n-large 0   # the offline default on the stamps
    python bench/ingest.py --ray --n-small 400   # in-process vs a Ray cluster of 1 and 2 nodes (bench/ingest_ray.py)
    python bench/ingest.py --objects       # labelled objects' crops vs the model alone per crop (ingest_objects.py)
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import cache_dir, header, median, table, timed
from PIL import Image

from picsift import Library
from picsift.demo import fetch_tuxpaint
from picsift.embedding import Embedder, decode_image

MODEL = "ViT-B-32:random"
LARGE_SIZE = (4000, 3000)  # 12 MP, a typical phone/camera frame
LARGE_QUALITY = 90
NOISE_SIGMA = 12  # grey levels; gives ~3 MB files, like a phone's 12 MP JPEG at this quality
GOAL_LARGE = 2.0  # picsift / straightforward on large photos
GOAL_SMALL = 0.9  # picsift / model-only on small images


# -- inputs ---------------------------------------------------------------------------------------
def stamp_files() -> list[Path]:
    """The Tux Paint stamp PNGs, distinct contents only, in a fixed shuffled order."""
    root = fetch_tuxpaint()
    files = sorted(root.rglob("*.png"))
    rng = np.random.default_rng(0)
    rng.shuffle(files)  # type: ignore[arg-type]
    seen: set[str] = set()
    unique = []
    for path in files:
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(path)
    return unique


def small_set(folder: Path, n: int) -> list[Path]:
    sources = stamp_files()
    if n > len(sources):
        raise SystemExit(f"--n-small {n}: only {len(sources)} distinct stamps are available")
    out = []
    for i, src in enumerate(sources[:n]):
        dst = folder / f"{i:04d}_{src.name}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def make_large(src: Path, dst: Path, seed: int) -> None:
    """A stamp composited on white, scaled to cover 4000x3000, centre-cropped, with sensor-like gaussian
    noise (so the JPEG carries a photo's detail and file size, ~3 MB), saved at quality 90."""
    image = Image.open(src)
    image.load()
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, rgba).convert("RGB")
    w, h = rgb.size
    scale = max(LARGE_SIZE[0] / w, LARGE_SIZE[1] / h)
    big = rgb.resize((max(LARGE_SIZE[0], round(w * scale)), max(LARGE_SIZE[1], round(h * scale))),
                     Image.Resampling.BICUBIC)
    left, top = (big.width - LARGE_SIZE[0]) // 2, (big.height - LARGE_SIZE[1]) // 2
    big = big.crop((left, top, left + LARGE_SIZE[0], top + LARGE_SIZE[1]))
    pixels = np.asarray(big, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, NOISE_SIGMA, size=pixels.shape).astype(np.int16)
    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    tmp = dst.with_suffix(".tmp")
    Image.fromarray(pixels).save(tmp, format="JPEG", quality=LARGE_QUALITY)
    os.replace(tmp, dst)  # a killed run never leaves a half-written cache file


def large_set(folder: Path, n: int) -> list[Path]:
    cache = cache_dir() / f"large-{LARGE_SIZE[0]}x{LARGE_SIZE[1]}-q{LARGE_QUALITY}-n{NOISE_SIGMA}"
    cache.mkdir(parents=True, exist_ok=True)
    sources = stamp_files()
    todo = [i for i in range(n) if not (cache / f"{i:04d}.jpg").exists()]
    if todo:
        print(f"generating {len(todo)} 12 MP JPEGs into {cache} (once) ...", flush=True)
    for i in todo:
        make_large(sources[(len(sources) - 1 - i) % len(sources)], cache / f"{i:04d}.jpg", seed=i)
    out = []
    for i in range(n):
        dst = folder / f"{i:04d}.jpg"
        shutil.copyfile(cache / f"{i:04d}.jpg", dst)
        out.append(dst)
    return out


# -- the three contenders -------------------------------------------------------------------------
def model_only(model: torch.nn.Module, batches: list[torch.Tensor]) -> int:
    count = 0
    with torch.inference_mode():
        for batch in batches:
            features = F.normalize(model.encode_image(batch), dim=-1)
            count += len(features.numpy())
    return count


def straightforward(model: torch.nn.Module, preprocess: Callable, paths: list[Path], batch_size: int) -> int:
    count = 0
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([preprocess(Image.open(p).convert("RGB"))
                                 for p in paths[start : start + batch_size]])
            features = F.normalize(model.encode_image(batch), dim=-1)
            count += len(features.numpy())
    return count


def picsift_update(
    embedder: Embedder, folder: Path, workspace_parent: Path, batch_size: int
) -> tuple[int, float]:
    workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=workspace_parent))
    try:
        lib = Library(folder, workspace=workspace, model=embedder.spec.text, index="exact", batch_size=batch_size)
        lib._engine._embedder = embedder  # the already-loaded model: the same object the baselines use
        seconds, report = timed(lambda: lib.update(progress=False))
        lib.close()
        if report.skipped:
            print(f"  warning: picsift skipped {len(report.skipped)}: {report.skipped[:3]}")
        return report.embedded, seconds
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


# -- one image set --------------------------------------------------------------------------------
def run_set(name: str, paths: list[Path], folder: Path, embedder: Embedder, batch_size: int, repeats: int,
            tmp: Path) -> dict:
    model, preprocess = embedder._model, embedder.preprocess
    n = len(paths)
    for p in paths:  # everyone reads from the page cache, nobody from a cold disk
        p.read_bytes()
    size = embedder.image_size
    # The model-only bound runs on these very images, preprocessed beforehand (decoded with picsift's
    # draft decoder, which for these inputs is indistinguishable from a full decode).
    layout = torch.channels_last if embedder.channels_last else torch.contiguous_format
    tensors = [preprocess(decode_image(p.read_bytes(), size).image) for p in paths]
    batches = [torch.stack(tensors[s : s + batch_size]).contiguous(memory_format=layout)
               for s in range(0, n, batch_size)]
    del tensors
    model_only(model, batches[:1])  # warm-up

    # Where the time goes, single-threaded, measured once (informational).
    def split(paths: list[Path]) -> list[torch.Tensor]:
        prepared = [embedder.prepare(decode_image(p.read_bytes(), size).image) for p in paths]
        return [embedder._split.collate(prepared[s : s + batch_size]) for s in range(0, n, batch_size)]

    t_plain_decode, _ = timed(lambda: [preprocess(Image.open(p).convert("RGB")) for p in paths])
    t_draft_decode, _ = timed(lambda: [preprocess(decode_image(p.read_bytes(), size).image) for p in paths])
    t_split, _ = timed(lambda: split(paths))

    runs: dict[str, list[float]] = {"model-only": [], "straightforward": [], "picsift": []}

    def run_model_only() -> float:
        seconds, count = timed(lambda: model_only(model, batches))
        assert count == n
        return seconds

    def run_straightforward() -> float:
        seconds, count = timed(lambda: straightforward(model, preprocess, paths, batch_size))
        assert count == n
        return seconds

    def run_picsift() -> float:
        count, seconds = picsift_update(embedder, folder, tmp, batch_size)
        assert count == n, f"picsift embedded {count} of {n}"
        return seconds

    contenders = [("model-only", run_model_only), ("straightforward", run_straightforward),
                  ("picsift", run_picsift)]
    for r in range(repeats):
        order = contenders[r % 3 :] + contenders[: r % 3]  # rotate, so no one always runs first
        for label, fn in order:
            runs[label].append(n / fn())
        done = ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in runs.items())
        print(f"  {name} round {r + 1}/{repeats}: {done}", flush=True)
    best = {k: max(v) for k, v in runs.items()}
    per_round_vs_plain = [p / s for p, s in zip(runs["picsift"], runs["straightforward"], strict=True)]
    per_round_vs_model = [p / m for p, m in zip(runs["picsift"], runs["model-only"], strict=True)]
    return {
        "set": name, "n": n, "best": best,
        "vs_plain": best["picsift"] / best["straightforward"],
        "vs_model": best["picsift"] / best["model-only"],
        "vs_plain_median": median(per_round_vs_plain), "vs_model_median": median(per_round_vs_model),
        "decode_plain": n / t_plain_decode, "decode_draft": n / t_draft_decode, "decode_split": n / t_split,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-small", type=int, default=300, help="small real images (Tux Paint stamps)")
    parser.add_argument("--n-large", type=int, default=60, help="12 MP JPEG photos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best round is reported")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    parser.add_argument("--model", default=MODEL, help=f"model spec (default {MODEL}; e.g. picsift-offline)")
    parser.add_argument("--ray", action="store_true",
                        help="instead: the small set in-process vs through a local Ray cluster of 1 and 2 nodes")
    parser.add_argument("--objects", action="store_true",
                        help="instead: labelled objects' crops embedded by update() vs the model alone per crop")
    parser.add_argument("--n-scenes", type=int, default=60, help="with --objects: scenes (640x480 JPEG)")
    parser.add_argument("--per-scene", type=int, default=5, help="with --objects: labelled stamps per scene")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_small, args.n_large, args.repeats = min(args.n_small, 48), min(args.n_large, 6), 1
        args.n_scenes = min(args.n_scenes, 8)
    logging.getLogger("picsift").setLevel(logging.ERROR)  # no "random weights" warning per Library
    logging.getLogger().setLevel(logging.ERROR)  # nor open_clip's
    # Pillow warns about palette transparency on the straightforward loop's convert("RGB").
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")

    header("picsift ingest benchmark", sys.argv)
    started = time.perf_counter()
    if args.objects:
        from ingest_objects import main_objects

        main_objects(args, stamp_files())
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
        return
    embedder = Embedder(args.model, device="cpu", batch_size=args.batch_size)
    print(f"model {embedder.label} ({embedder.image_size}px input, {embedder.dim}-d), batch {args.batch_size}, "
          f"{args.repeats} round(s)", flush=True)
    results = []
    if args.ray:
        from ingest_ray import run as run_ray

        with tempfile.TemporaryDirectory(prefix="picsift-bench-ingest-") as tmp:
            folder = Path(tmp) / "small"
            folder.mkdir()
            small_set(folder, args.n_small)
            run_ray(folder, args.model, args.batch_size, embedder.dim, Path(tmp))
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
        return
    with tempfile.TemporaryDirectory(prefix="picsift-bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        for name, n, make in [("small PNG stamps", args.n_small, small_set),
                              ("large 12 MP JPEG", args.n_large, large_set)]:
            if n <= 0:
                continue
            folder = tmp_path / name.split()[0]
            folder.mkdir()
            paths = make(folder, n)
            mb = sum(p.stat().st_size for p in paths) / 2**20
            sizes = [Image.open(p).size for p in paths[:50]]
            mp = np.mean([w * h for w, h in sizes]) / 1e6
            print(f"\n{name}: {n} files, {mb:.1f} MiB, mean {mp:.2f} MP", flush=True)
            results.append(run_set(name, paths, folder, embedder, args.batch_size, args.repeats, tmp_path))

    print("\nimages per second (best of rounds) and ratios of picsift to the baselines:")
    rows = []
    for r in results:
        b = r["best"]
        rows.append([r["set"], r["n"], b["model-only"], b["straightforward"], b["picsift"],
                     f"{r['vs_plain']:.2f}x (median {r['vs_plain_median']:.2f}x)",
                     f"{r['vs_model']:.2f}x (median {r['vs_model_median']:.2f}x)"])
    print(table(rows, ["set", "images", "model-only", "straightforward", "picsift",
                       "picsift/straightforward", "picsift/model-only"]))
    print("\nsingle-threaded decode + preprocess only (informational), images per second:")
    print(table([[r["set"], r["decode_plain"], r["decode_draft"], r["decode_split"],
                  f"{r['decode_split'] / r['decode_plain']:.2f}x"] for r in results],
                ["set", "PIL open+convert+preprocess", "decode_image+preprocess",
                 "decode_image+prepare+collate (update)", "update / PIL"]))
    print("\ngoals:")
    for r in results:
        if r["set"].startswith("large"):
            ok = r["vs_plain"] >= GOAL_LARGE
            print(f"  large photos: picsift/straightforward >= {GOAL_LARGE}x: {r['vs_plain']:.2f}x "
                  f"{'MET' if ok else 'NOT MET'}")
        else:
            ok = r["vs_model"] >= GOAL_SMALL
            print(f"  small images: picsift/model-only >= {GOAL_SMALL}x: {r['vs_model']:.2f}x "
                  f"{'MET' if ok else 'NOT MET'}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
