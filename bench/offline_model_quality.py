"""Quality of picsift's offline image-text model: the shipped model against the previous one, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/offline_model_quality.py [--skip-held-out]

Models (both loaded through open_clip's standard path from a config JSON and a checkpoint):
- ``new``: the shipped ``picsift-offline`` (EfficientNet-Lite0 ImageNet trunk + trained MLP head + MiniLM);
- ``old``: the model it replaced, ``picsift-minilm-rn64`` (a 64 px ResNet trained from scratch), kept in
  bench/baselines/ for this comparison.

1. Zero-shot on the Tux Paint stamps (never trained on; the demo images, fetched once into
   ~/.cache/picsift/demo/tuxpaint): per category precision@10 of "a picture of {category}"; caption ->
   image recall@1/5/10 over every captioned stamp (caption = line 1 of the stamp's .txt); image -> image:
   for each stamp, the share of its 10 nearest neighbours in the same sub-folder; everyday prompts
   (below, fixed before any result was seen), each judged by the sub-folders it names.
2. Held-out splits of the training sets (needs training/fetch_data.py): Fashion-MNIST test split (P@10 of
   "a photo of {class}", zero-shot accuracy), held-out emoji (Noto + Twemoji, as before; Fluent 3D
   separately) and OpenClipart (each item's own caption -> image recall@10 among that source's held-out
   items, P@10 of "a picture of {class}").
3. Speed of each model's image tower (images/s, model only, batch 32, this machine's threads).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

BASELINE = REPO / "bench" / "baselines" / "picsift-minilm-rn64"
PRETTY = {"naturalforces": "natural forces"}
# prompt -> sub-folders (prefixes under the stamps folder) whose stamps are the right answers
EVERYDAY = {
    "a bird": ["animals/birds"], "a fish": ["animals/fish"], "an insect": ["animals/insects"],
    "a cow": ["animals/mammals/bovines"], "a mouse": ["animals/mammals/rodents"],
    "a flower": ["plants/flowers"], "a tree": ["plants/trees"], "a mushroom": ["plants/mushrooms"],
    "a fruit": ["food/fruit"], "a vegetable": ["food/vegetables"], "a hat": ["clothes/hats"],
    "a coin": ["symbols/money/canadian/coins", "symbols/money/euro/coins", "symbols/money/us/coins"],
    "a musical instrument": ["hobbies/music"], "a house": ["town/houses"],
    "a traffic sign": ["town/roadsigns"], "a flag": ["town/flags"], "a planet": ["space/planets"],
    "a chess piece": ["symbols/chess"], "a train": ["vehicles/locomotive"], "a tool": ["household/tools"],
    "a Christmas decoration": ["seasonal/christmas"], "a Halloween decoration": ["seasonal/halloween"],
    "a hand sign": ["symbols/alphabets/asl"], "a math symbol": ["symbols/math"], "a musical note": ["symbols/music"],
}


def baseline_spec(out: Path) -> tuple[str, str]:
    """Assemble the old model's open_clip config + checkpoint (its image tower + the installed MiniLM)."""
    from safetensors.torch import load_file

    from picsift.embedding import offline_model as om

    arch = "picsift-minilm-rn64"
    minilm = om.minilm_dir()
    cfg = (BASELINE / "config_template.json").read_text().replace("@MINILM@", minilm.as_posix())
    (out / f"{arch}.json").write_text(cfg)
    state = dict(om.minilm_state(minilm))
    state.update({k: v.float() for k, v in load_file(str(BASELINE / "image_tower.safetensors")).items()})
    buf = io.BytesIO()
    torch.save(state, buf)
    (out / f"{arch}.pt").write_bytes(buf.getvalue())
    return str(out / f"{arch}.json"), str(out / f"{arch}.pt")


class Model:
    def __init__(self, name: str, cfg: str, ckpt: str):
        import open_clip

        arch = Path(cfg).stem
        open_clip.add_model_config(cfg)
        self.name = name
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=ckpt)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.seconds = 0.0
        self.images = 0

    @torch.no_grad()
    def embed_images(self, images, batch=32) -> torch.Tensor:
        from training_data import to_rgb_on_white

        out = []
        for s in range(0, len(images), batch):
            x = torch.stack([self.preprocess(to_rgb_on_white(im)) for im in images[s: s + batch]])
            t0 = time.perf_counter()
            out.append(self.model.encode_image(x, normalize=True))
            self.seconds += time.perf_counter() - t0
            self.images += len(x)
        return torch.cat(out)

    @torch.no_grad()
    def embed_texts(self, texts) -> torch.Tensor:
        return torch.cat([self.model.encode_text(self.tokenizer(texts[s: s + 256]), normalize=True)
                          for s in range(0, len(texts), 256)])


def precision_at(row: torch.Tensor, relevant: np.ndarray, k=10, capped=False) -> float:
    """Precision of the top k; ``capped``: of the top min(k, number relevant), so that a sub-folder of
    6 stamps can reach 1.0 (the everyday prompts). Categories use plain P@10, as the earlier card did."""
    if capped:
        k = min(k, int(relevant.sum())) or k
    return float(relevant[row.topk(k).indices.numpy()].mean())


def tuxpaint_data():
    from picsift.demo import fetch_tuxpaint

    root = fetch_tuxpaint()
    paths = sorted(root.rglob("*.png"))
    rel = [p.relative_to(root) for p in paths]
    images = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            images.append(im.copy())
    captions = {}
    for i, p in enumerate(paths):
        txt = p.with_suffix(".txt")
        if txt.is_file():
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            if lines and lines[0].strip():
                captions[i] = lines[0].strip()
    return rel, images, captions


def tuxpaint(m: Model, rel, images, captions) -> dict:
    emb = m.embed_images(images)
    cats = np.array([r.parts[0] for r in rel])
    folders = np.array([str(r.parent) for r in rel])
    names = sorted(set(cats))
    sims = m.embed_texts([f"a picture of {PRETTY.get(c, c)}" for c in names]) @ emb.T
    category = {c: precision_at(sims[i], cats == c) for i, c in enumerate(names)}
    idx = sorted(captions)
    sc = m.embed_texts([captions[i] for i in idx]) @ emb[idx].T
    ranks = (sc > sc.diag().unsqueeze(1)).sum(1)
    recall = {k: float((ranks < k).float().mean()) for k in (1, 5, 10)}
    g = emb @ emb.T
    g.fill_diagonal_(-2)
    nn = g.topk(10, dim=1).indices.numpy()
    same_folder = float((folders[nn] == folders[:, None]).mean())
    prompts = list(EVERYDAY)
    se = m.embed_texts(prompts) @ emb.T
    everyday = {}
    for i, p in enumerate(prompts):
        relevant = np.array([any(f == d or f.startswith(d + "/") for d in EVERYDAY[p]) for f in folders])
        everyday[p] = precision_at(se[i], relevant, capped=True)
    chance_folder = float(np.mean([(folders == f).sum() - 1 for f in folders]) / (len(folders) - 1))
    return dict(category=category, chance={c: float((cats == c).mean()) for c in names}, recall=recall,
                n=len(rel), n_captions=len(idx), same_folder=same_folder, chance_folder=chance_folder,
                everyday=everyday)


def held_out(m: Model, fmnist_n=2000) -> dict:
    import fetch_data
    import training_data as D

    cache = fetch_data.CACHE
    sets = {
        "fashion-mnist": [(it, im) for it, im in D.fmnist_items(cache / "fashion-mnist") if it.split == "test"],
        "emoji": [(it, im) for it, im in D.emoji_items([cache / "emoji-google", cache / "emoji-twitter"])
                  if it.split == "test"],
        "emoji-fluent-3d": [(it, im) for it, im in D.fluent_items(cache / "emoji-fluent-3d", cache / "emoji-google")
                            if it.split == "test"],
        "openclipart": [(it, im) for it, im in D.clipart_items(cache / "openclipart") if it.split == "test"],
    }
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(sets["fashion-mnist"]), fmnist_n, replace=False).tolist())
    sets["fashion-mnist"] = [sets["fashion-mnist"][i] for i in pick]
    res = {}
    for source, pairs in sets.items():
        emb = m.embed_images([im for _, im in pairs])
        labels = np.array([it.label for it, _ in pairs])
        classes = sorted(set(labels))
        rows = []
        if source == "fashion-mnist":
            spec = {lab: s for lab, s, _ in D.FMNIST_CLASSES}
            sims = m.embed_texts([f"a photo of {spec[c]}" for c in classes]) @ emb.T
            pred = np.array(classes)[sims.argmax(0).numpy()]
            for ci, c in enumerate(classes):
                mask = labels == c
                rows.append((c, int(mask.sum()), precision_at(sims[ci], mask), float((pred[mask] == c).mean())))
            res[source] = (rows, float((pred == labels).mean()))
        else:
            sc = m.embed_texts([it.captions["specific"][1] for it, _ in pairs]) @ emb.T
            ranks = (sc > sc.diag().unsqueeze(1)).sum(1).numpy()
            sims = m.embed_texts([f"a picture of {c}" for c in classes]) @ emb.T
            for ci, c in enumerate(classes):
                mask = labels == c
                rows.append((c, int(mask.sum()), float((ranks[mask] < 10).mean()), precision_at(sims[ci], mask)))
            res[source] = (rows, float((ranks < 10).mean()))
    return res


def show(old: dict, new: dict, old_h: dict | None, new_h: dict | None, speed: dict) -> None:
    print(f"\n## Zero-shot: Tux Paint stamps ({new['n']} images, never trained on)\n")
    print("| category | stamps | chance | old P@10 | **new P@10** |")
    print("|---|---:|---:|---:|---:|")
    for c in new["category"]:
        print(f"| {c} | {round(new['chance'][c] * new['n'])} | {new['chance'][c]:.2f} | {old['category'][c]:.2f} "
              f"| **{new['category'][c]:.2f}** |")
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    print(f"| **mean** | | {mean(new['chance']):.3f} | {mean(old['category']):.3f} | **{mean(new['category']):.3f}** |")
    print("\n| measure | chance | old | **new** | new / old |\n|---|---:|---:|---:|---:|")
    for k in (1, 5, 10):
        print(f"| caption -> image recall@{k} ({new['n_captions']} captions) | {k / new['n_captions']:.3f} | "
              f"{old['recall'][k]:.3f} | **{new['recall'][k]:.3f}** | "
              f"{new['recall'][k] / max(old['recall'][k], 1e-9):.1f}x |")
    print(f"| image -> image: share of 10 nearest in the same sub-folder | {new['chance_folder']:.3f} | "
          f"{old['same_folder']:.3f} | **{new['same_folder']:.3f}** | "
          f"{new['same_folder'] / old['same_folder']:.1f}x |")
    print(f"| everyday prompts, mean P@10 ({len(EVERYDAY)} prompts) | | {mean(old['everyday']):.3f} | "
          f"**{mean(new['everyday']):.3f}** | {mean(new['everyday']) / max(mean(old['everyday']), 1e-9):.1f}x |")
    print("\n### Everyday prompts (P@10; P@n for a sub-folder of n < 10 stamps)\n")
    print("| prompt | right answers in | old | **new** |\n|---|---|---:|---:|")
    for p, folders in EVERYDAY.items():
        print(f"| {p} | {', '.join(folders)} | {old['everyday'][p]:.2f} | **{new['everyday'][p]:.2f}** |")
    fails = sorted([(v, p) for p, v in new["everyday"].items()] + [(v, f"a picture of {c}")
                    for c, v in new["category"].items()])[:8]
    print("\nWhere the new model still fails (lowest P@10): " + "; ".join(f"{p!r} {v:.1f}" for v, p in fails))
    if new_h and old_h:
        rows_o, acc_o = old_h["fashion-mnist"]
        rows, acc = new_h["fashion-mnist"]
        print("\n## Held out: Fashion-MNIST test split (2,000 images)\n")
        print("| class | images | old P@10 | **new P@10** | old accuracy | **new accuracy** |")
        print("|---|---:|---:|---:|---:|---:|")
        for (c, k, p, a), (_, _, po, ao) in zip(rows, rows_o, strict=True):
            print(f"| {c} | {k} | {po:.2f} | **{p:.2f}** | {ao:.2f} | **{a:.2f}** |")
        print(f"| **all** | | {np.mean([r[2] for r in rows_o]):.3f} | **{np.mean([r[2] for r in rows]):.3f}** | "
              f"{acc_o:.3f} | **{acc:.3f}** (chance 0.100) |")
        for source in ("emoji", "emoji-fluent-3d", "openclipart"):
            rows_o, r_o = old_h[source]
            rows, r = new_h[source]
            n = sum(x[1] for x in rows)
            print(f"\n## Held out: {source} ({n} items never trained on)\n")
            print("| class | items | old recall@10 | **new recall@10** | old P@10 | **new P@10** |")
            print("|---|---:|---:|---:|---:|---:|")
            for (c, k, rc, p), (_, _, rco, po) in zip(rows, rows_o, strict=True):
                print(f"| {c} | {k} | {rco:.2f} | **{rc:.2f}** | {po:.2f} | **{p:.2f}** |")
            print(f"| **all** | {n} | {r_o:.3f} | **{r:.3f}** (chance {10 / n:.3f}) | "
                  f"{np.mean([x[3] for x in rows_o]):.3f} | **{np.mean([x[3] for x in rows]):.3f}** |")
    print("\n## Speed of the image tower (model only, batch 32)\n")
    for name, ips in speed.items():
        print(f"- {name}: {ips:.1f} images/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-held-out", action="store_true", help="only the Tux Paint zero-shot part")
    ap.add_argument("--json", type=Path, help="also write every number to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from picsift.embedding import offline_model as om

    data = tuxpaint_data()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"old": Model("old", *baseline_spec(Path(tmp))), "new": Model("new", *om.model_spec().rsplit(":", 1))}
        for key, m in models.items():
            results[key] = {"tux": tuxpaint(m, *data)}
            results[key]["speed"] = m.images / m.seconds
            results[key]["held_out"] = None if args.skip_held_out else held_out(m)
    show(results["old"]["tux"], results["new"]["tux"], results["old"]["held_out"], results["new"]["held_out"],
         {f"{k} ({'picsift-minilm-rn64, 64 px' if k == 'old' else om.ARCH_NAME + ', 224 px'})": v["speed"]
          for k, v in results.items()})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
