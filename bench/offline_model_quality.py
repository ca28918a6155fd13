"""Quality of picsift's offline image-text model (issue 3), printed as tables.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/offline_model_quality.py

1. Zero-shot on the Tux Paint stamps (never trained on; fetched with ``apt-get download
   tuxpaint-stamps-default`` + ``dpkg-deb -x`` into ~/.cache/picsift/demo/tuxpaint):
   per category precision@10 of "a picture of {category}"; caption -> image recall@1/5/10 over
   all stamps (caption = line 1 of the stamp's .txt).
2. Held-out splits of the training sets (needs the training cache, training/fetch_data.py):
   Fashion-MNIST test split: per class precision@10 of "a photo of {class}" and zero-shot
   accuracy over the 10 class prompts; emoji / OpenClipart held-out items: per class
   caption -> image recall@10 (each item's own caption, ranked among that source's held-out
   items) and precision@10 of "a picture of {class}".

Images go through picsift's rule (transparency composited on white) and then the model's
own open_clip preprocess. The model is loaded with open_clip directly from model_spec().
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DEMO = Path(os.environ.get("PICSIFT_DEMO_CACHE", Path.home() / ".cache/picsift/demo")) / "tuxpaint"
STAMPS = DEMO / "usr/share/tuxpaint/stamps"
PRETTY = {"naturalforces": "natural forces"}


def fetch_tuxpaint() -> Path:
    if STAMPS.is_dir():
        return STAMPS
    with tempfile.TemporaryDirectory() as t:
        subprocess.run(["apt-get", "download", "tuxpaint-stamps-default"], cwd=t, check=True)
        deb = next(Path(t).glob("tuxpaint-stamps-default_*.deb"))
        tmp = DEMO.with_name(DEMO.name + ".tmp")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.replace(DEMO)
    return STAMPS


def load_model():
    import open_clip

    from picsift.offline_model import ARCH_NAME, model_spec

    cfg, ckpt = model_spec().rsplit(":", 1)
    open_clip.add_model_config(cfg)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH_NAME, pretrained=ckpt)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(ARCH_NAME)


def on_white(img: Image.Image) -> Image.Image:
    from training_data import to_rgb_on_white

    return to_rgb_on_white(img)


@torch.no_grad()
def embed_images(model, preprocess, images, batch=256) -> torch.Tensor:
    out = []
    for s in range(0, len(images), batch):
        x = torch.stack([preprocess(on_white(im)) for im in images[s: s + batch]])
        out.append(model.encode_image(x, normalize=True))
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, tokenizer, texts, batch=256) -> torch.Tensor:
    out = []
    for s in range(0, len(texts), batch):
        out.append(model.encode_text(tokenizer(texts[s: s + batch]), normalize=True))
    return torch.cat(out)


def precision_at(sims_row: torch.Tensor, relevant: np.ndarray, k=10) -> float:
    top = sims_row.topk(min(k, len(sims_row))).indices.numpy()
    return float(relevant[top].mean())


def recall_at(sims: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """sims[i, j]: query i vs item j; the right item of query i is item i."""
    ranks = (sims > sims.diag().unsqueeze(1)).sum(1)  # 0 = first
    return {k: float((ranks < k).float().mean()) for k in ks}


def tuxpaint(model, preprocess, tokenizer):
    root = fetch_tuxpaint()
    paths = sorted(root.rglob("*.png"))
    cats = np.array([p.relative_to(root).parts[0] for p in paths])
    imgs = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            imgs.append(im.copy())
    emb = embed_images(model, preprocess, imgs)
    names = sorted(set(cats))
    prompts = [f"a picture of {PRETTY.get(c, c)}" for c in names]
    temb = embed_texts(model, tokenizer, prompts)
    sims = temb @ emb.T
    rows = []
    for i, c in enumerate(names):
        rows.append((c, int((cats == c).sum()), precision_at(sims[i], cats == c), (cats == c).mean()))
    # captions
    cap_idx, caps = [], []
    for i, p in enumerate(paths):
        txt = p.with_suffix(".txt")
        if txt.is_file():
            line = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            if line and line[0].strip():
                cap_idx.append(i)
                caps.append(line[0].strip())
    cemb = embed_texts(model, tokenizer, caps)
    rec = recall_at(cemb @ emb[cap_idx].T)
    return rows, rec, len(paths), len(caps)


def held_out(model, preprocess, tokenizer, fmnist_n=2000):
    import fetch_data
    import training_data as D

    items, images = D.build_all(fetch_data.CACHE)
    test = [i for i, it in enumerate(items) if it.split == "test"]
    res = {}
    rng = np.random.default_rng(0)
    for source in ("fashion-mnist", "emoji", "openclipart"):
        idx = [i for i in test if items[i].source == source]
        if source == "fashion-mnist" and len(idx) > fmnist_n:
            idx = sorted(rng.choice(idx, fmnist_n, replace=False).tolist())
        emb = embed_images(model, preprocess, [Image.fromarray(images[i]) for i in idx])
        labels = np.array([items[i].label for i in idx])
        classes = sorted(set(labels))
        rows = []
        if source == "fashion-mnist":
            spec = {lab: s for lab, s, _ in D.FMNIST_CLASSES}
            temb = embed_texts(model, tokenizer, [f"a photo of {spec[c]}" for c in classes])
            sims = temb @ emb.T
            pred = np.array(classes)[sims.argmax(0).numpy()]
            for ci, c in enumerate(classes):
                m = labels == c
                rows.append((c, int(m.sum()), precision_at(sims[ci], m), float((pred[m] == c).mean())))
            res[source] = (rows, float((pred == labels).mean()))
        else:
            caps = [items[i].captions["specific"][1] for i in idx]
            cemb = embed_texts(model, tokenizer, caps)
            sims_c = cemb @ emb.T
            ranks = (sims_c > sims_c.diag().unsqueeze(1)).sum(1).numpy()
            temb = embed_texts(model, tokenizer, [f"a picture of {c}" for c in classes])
            sims = temb @ emb.T
            for ci, c in enumerate(classes):
                m = labels == c
                rows.append((c, int(m.sum()), float((ranks[m] < 10).mean()), precision_at(sims[ci], m)))
            res[source] = (rows, float((ranks < 10).mean()))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-held-out", action="store_true", help="only the Tux Paint zero-shot part")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, preprocess, tokenizer = load_model()

    rows, rec, n, ncap = tuxpaint(model, preprocess, tokenizer)
    print(f"\n## Zero-shot: Tux Paint stamps ({n} images, never trained on)\n")
    print("| category | stamps | P@10 of 'a picture of {category}' | chance |")
    print("|---|---:|---:|---:|")
    for c, k, p, ch in rows:
        print(f"| {c} | {k} | {p:.2f} | {ch:.2f} |")
    print(f"| **mean** | | **{np.mean([r[2] for r in rows]):.3f}** | {np.mean([r[3] for r in rows]):.3f} |")
    print(f"\nCaption -> image over {ncap} captioned stamps: recall@1 {rec[1]:.3f}, recall@5 {rec[5]:.3f}, "
          f"recall@10 {rec[10]:.3f} (chance@10 {10 / ncap:.3f})")

    if not args.skip_held_out:
        res = held_out(model, preprocess, tokenizer)
        rows, acc = res["fashion-mnist"]
        print("\n## Held out: Fashion-MNIST test split\n")
        print("| class | images | P@10 of 'a photo of {class}' | zero-shot accuracy |")
        print("|---|---:|---:|---:|")
        for c, k, p, a in rows:
            print(f"| {c} | {k} | {p:.2f} | {a:.2f} |")
        print(f"| **all** | | **{np.mean([r[2] for r in rows]):.3f}** | **{acc:.3f}** (chance 0.100) |")
        for source in ("emoji", "openclipart"):
            rows, r10 = res[source]
            n = sum(r[1] for r in rows)
            print(f"\n## Held out: {source} ({n} items never trained on)\n")
            print("| class | items | caption -> image recall@10 | P@10 of 'a picture of {class}' |")
            print("|---|---:|---:|---:|")
            for c, k, r, p in rows:
                print(f"| {c} | {k} | {r:.2f} | {p:.2f} |")
            print(f"| **all** | {n} | **{r10:.3f}** (chance {10 / n:.3f}) | **{np.mean([r[3] for r in rows]):.3f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
