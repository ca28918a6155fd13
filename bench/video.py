"""Frame extraction speed: picsift's video sampling vs a plain decode of every frame with PyAV.

```
.venv/bin/python bench/video.py [--seconds 60] [--every 2] [--repeats 3] [--quick]
```

The input is a generated H.264 (libx264, yuv420p, 30 fps, 1280x720) video made of real Tux Paint stamps:
shots of 3 to 7 s, each a stamp composited on a coloured background and panning slowly (so every frame
differs and the encoder uses P and B frames as a camera video would), cached in
``~/.cache/picsift/bench/video-...mp4``. Contenders, run interleaved ``--repeats`` times (best of each):

* **decode-all** (baseline): ``for frame in container.decode(stream)``, FFmpeg threads on (``AUTO``),
  nothing else: the bound a sampler that looks at every frame cannot beat.
* **sample**: :func:`picsift.core.video.sample_frames`: decode every frame, a 48x27 grayscale thumbnail per
  frame for scene changes, RGB pictures of the sampled frames.
* **extract**: sample + JPEG (quality 90) of each sampled frame written to disk, as ``update()`` does
  (before hashing and embedding).
* **no-scenes**: sample with ``scene_threshold=None`` (regular interval only), to show the cost of the
  scene test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cache_dir, header, table

FPS = 30
SIZE = (1280, 720)


def stamp_images(count: int) -> list[Image.Image]:
    from picsift.demo import fetch_tuxpaint

    root = fetch_tuxpaint()
    paths = sorted(root.rglob("*.png"))[:: max(1, len(list(root.rglob("*.png"))) // count)][:count]
    return [Image.open(p).convert("RGBA") for p in paths]


def make_video(seconds: int) -> Path:
    import av

    target = cache_dir() / f"video-{seconds}s-noise24-{SIZE[0]}x{SIZE[1]}-{FPS}fps.mp4"
    if target.exists():
        return target
    rng = np.random.default_rng(0)
    images = stamp_images(seconds // 3 + 1)
    partial = target.with_suffix(".part.mp4")
    # sensor noise that changes every frame, so the bitrate is a camera's (about 8 Mbit/s), not a cartoon's
    noise = [rng.integers(0, 24, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(7)]
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "fast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        frame_index, shot = 0, 0
        while frame_index < seconds * FPS:
            length = int(rng.integers(3, 8)) * FPS
            colour = tuple(int(c) for c in rng.integers(40, 220, 3))
            canvas = Image.new("RGB", (SIZE[0] + 400, SIZE[1] + 200), colour)
            stamp = images[shot % len(images)]
            stamp = stamp.resize((560, round(560 * stamp.height / stamp.width)))
            canvas.paste(stamp, (420, 120), stamp)
            pixels = np.asarray(canvas)
            for i in range(min(length, seconds * FPS - frame_index)):
                x, y = (i * 2) % 400, (i // 2) % 200  # a slow pan
                view = pixels[y : y + SIZE[1], x : x + SIZE[0]] + noise[frame_index % len(noise)]
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(view), format="rgb24")):
                    container.mux(packet)
                frame_index += 1
            shot += 1
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(target)
    return target


def decode_all(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def sample(path: Path, every: float, scenes: bool) -> int:
    from picsift.core.video import SCENE_THRESHOLD, sample_frames

    return sum(1 for _ in sample_frames(path, every, scene_threshold=SCENE_THRESHOLD if scenes else None))


def extract(path: Path, every: float) -> int:
    from picsift.core.video import FRAME_QUALITY, frame_name, sample_frames

    with tempfile.TemporaryDirectory() as folder:
        count = 0
        for frame in sample_frames(path, every):
            frame.image.save(Path(folder) / frame_name(frame.t), "JPEG", quality=FRAME_QUALITY)
            count += 1
        return count


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 10 s video, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 10, 1
    header("picsift video frame extraction", ["bench/video.py", *argv])
    path = make_video(args.seconds)
    frames = args.seconds * FPS
    print(f"input: {path.name} ({path.stat().st_size / 2**20:.1f} MiB, {frames} frames)\n")
    contenders = {
        "decode-all": lambda: decode_all(path),
        "sample": lambda: sample(path, args.every, scenes=True),
        "extract": lambda: extract(path, args.every),
        "no-scenes": lambda: sample(path, args.every, scenes=False),
    }
    best: dict[str, float] = {}
    produced: dict[str, int] = {}
    names = list(contenders)
    for round_ in range(args.repeats):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            start = time.perf_counter()
            produced[name] = contenders[name]()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    base = best["decode-all"]
    rows = [[name, best[name], frames / best[name], produced[name] if name != "decode-all" else frames,
             base / best[name]] for name in names]
    print(table(rows, ["contender", "best s", "video frames/s", "frames out", "speed vs decode-all"]))


if __name__ == "__main__":
    main(sys.argv[1:])
