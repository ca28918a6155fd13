"""Train picsift's offline image-text model (the one command; seeded, CPU, progress bar).

    HF_HUB_OFFLINE=1 .venv/bin/python training/train_offline_model.py

Steps: fetch the data (training/fetch_data.py, idempotent) -> prepare 72 px images and
captions (cached) -> embed every caption once with the frozen MiniLM text tower (cached)
-> train the open_clip ModifiedResNet image tower LiT-style against those fixed text
embeddings -> write src/picsift/offline_model/image_tower.safetensors (fp16).

Loss: image->text cross-entropy against the whole bank of unique training captions
(multi-positive soft target: the image's own captions at three levels of detail) plus an
in-batch text->image term; learnable temperature. The text projection is a frozen identity,
so text embeddings stay exactly the sentence-transformers embeddings (see model card).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "training"))

import fetch_data  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import training_data as D  # noqa: E402
from tqdm import tqdm  # noqa: E402

from picsift import offline_model as om  # noqa: E402

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def embed_texts(texts: list[str], cache: Path, batch: int = 256) -> torch.Tensor:
    """L2-normalised MiniLM mean-pooled embeddings (what open_clip's HF text tower gives with
    an identity projection). Cached by the hash of the caption list."""
    key = hashlib.sha256(("\n".join(texts) + str(om.minilm_dir())).encode()).hexdigest()[:16]
    path = cache / f"text-emb-{key}.pt"
    if path.is_file():
        return torch.load(path)
    from transformers import AutoModel, AutoTokenizer

    d = str(om.minilm_dir())
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModel.from_pretrained(d).eval()
    out = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted: little padding
    for s in tqdm(range(0, len(texts), batch), desc="embedding captions", unit="batch"):
        idx = order[s: s + batch]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        e = (h * m).sum(1) / m.sum(1)
        out.append((torch.tensor(idx), F.normalize(e, dim=-1)))
    emb = torch.empty(len(texts), out[0][1].shape[1])
    for idx, e in out:
        emb[idx] = e
    tmp = path.with_suffix(".tmp")
    torch.save(emb, tmp)
    tmp.replace(path)
    return emb


def build_caption_bank(items):
    """Unique caption strings, and per item a list of (caption id, weight)."""
    texts: dict[str, int] = {}
    per_item = []
    for it in items:
        pairs = []
        for level, w in D.LEVEL_WEIGHTS.items():
            caps = it.captions[level]
            for c in caps:
                cid = texts.setdefault(c, len(texts))
                pairs.append((cid, w / len(caps)))
        per_item.append(pairs)
    return list(texts), per_item


def augment(x: torch.Tensor, out_res: int, g: torch.Generator) -> torch.Tensor:
    """x: uint8 [B,H,W,3] -> normalised float [B,3,out,out] with random scale/shift/rotation/flip
    (white padding) and colour jitter / random greyscale."""
    b = x.shape[0]
    x = x.permute(0, 3, 1, 2).float() / 255.0
    r = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=g)  # noqa: E731
    scale = r(0.78, 1.12)  # <1 zooms in (crop), >1 zooms out (white border)
    ang = r(-0.2, 0.2)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    tx, ty = r(-0.12, 0.12), r(-0.12, 0.12)
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, (b, 3, out_res, out_res), align_corners=False)
    x = 1.0 - F.grid_sample(1.0 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # colour jitter
    bright = r(0.8, 1.2).view(b, 1, 1, 1)
    contrast = r(0.75, 1.25).view(b, 1, 1, 1)
    sat = r(0.6, 1.4).view(b, 1, 1, 1)
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = gray + (x - gray) * sat
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    x = x * bright
    to_gray = (torch.rand(b, generator=g) < 0.12).view(b, 1, 1, 1)
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = torch.where(to_gray, gray, x).clamp(0, 1)
    return (x - MEAN) / STD


def tint_gray(x: torch.Tensor, is_gray: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Give Fashion-MNIST (grey) items a random colour some of the time, so colour alone
    does not tell clothes from the rest. x uint8 [B,H,W,3]."""
    b = x.shape[0]
    sel = is_gray & (torch.rand(b, generator=g) < 0.6)
    if not sel.any():
        return x
    col = torch.rand(b, 1, 1, 3, generator=g)
    xf = x.float() / 255.0
    tinted = 1.0 - (1.0 - xf) * (1.0 - col * 0.85)  # dark pixels take the colour, white stays white
    tinted = torch.where(sel.view(b, 1, 1, 1), tinted, xf)
    return (tinted * 255).round().to(torch.uint8)


def save(model, visual, logit_scale, cfg, args, step):
    """Write image tower + identity text projection + logit scale (fp16), atomically."""
    was_training = visual.training
    visual.eval()
    state = {f"visual.{k}": v.detach().clone() for k, v in visual.state_dict().items()}
    state["text.proj.weight"] = torch.eye(cfg["embed_dim"])
    state["logit_scale"] = logit_scale.detach().clamp(max=math.log(100.0)).clone().reshape(())
    ref = model.state_dict()
    for k in state:
        assert k in ref, k
        state[k] = state[k].reshape(ref[k].shape)
        if state[k].is_floating_point():
            state[k] = state[k].half()
    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
              metadata={"arch": om.ARCH_NAME, "seed": str(args.seed), "steps_done": str(step),
                        "train_args": json.dumps({k: str(v) for k, v in vars(args).items()})})
    os.chmod(tmp, 0o644)
    tmp.replace(args.out)
    visual.train(was_training)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--fmnist-per-epoch", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--save-every", type=int, default=50, help="also write the weights every N steps")
    ap.add_argument("--out", type=Path, default=om.WEIGHTS_PATH)
    ap.add_argument("--cache", type=Path, default=fetch_data.CACHE)
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.set_num_threads(args.threads)
    seed_all(args.seed)
    for name in fetch_data.SOURCES:
        fetch_data.fetch(name)
    print("preparing images and captions (cached after the first run)...", flush=True)
    items, images = D.build_all(args.cache)
    train_idx = np.array([i for i, it in enumerate(items) if it.split == "train"])
    is_fm = np.array([it.source == "fashion-mnist" for it in items])
    fm_train = train_idx[is_fm[train_idx]]
    other_train = train_idx[~is_fm[train_idx]]
    train_items = [items[i] for i in train_idx]
    texts, per_item_local = build_caption_bank(train_items)
    per_item = {int(i): p for i, p in zip(train_idx, per_item_local, strict=False)}
    print(f"{len(fm_train)} Fashion-MNIST + {len(other_train)} emoji/clip-art train images, "
          f"{len(texts)} unique captions", flush=True)
    bank = embed_texts(texts, args.cache)  # [T, 384], normalised, frozen

    # model: built through open_clip's own config so the state-dict keys match exactly
    import open_clip

    cfg = om.model_config()
    cfg["text_cfg"]["hf_model_pretrained"] = False
    model = open_clip.model.CustomTextCLIP(**cfg)
    res = cfg["vision_cfg"]["image_size"]
    visual = model.visual
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    decay = [p for n, p in visual.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in visual.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.wd}, {"params": [*no_decay, logit_scale], "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98),
    )
    warm = max(1, args.steps // 15)
    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, args.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    images_t = torch.from_numpy(images)

    def epoch_order():
        fm = rng.choice(fm_train, size=min(args.fmnist_per_epoch, len(fm_train)), replace=False)
        idx = np.concatenate([other_train, fm])
        rng.shuffle(idx)
        return idx

    order, pos = epoch_order(), 0
    visual.train()
    pbar = tqdm(range(args.steps), desc="training image tower", unit="step")
    ema = None
    for step in pbar:
        if pos + args.batch > len(order):
            order, pos = epoch_order(), 0
        bidx = order[pos: pos + args.batch]
        pos += args.batch
        x = tint_gray(images_t[bidx], torch.from_numpy(is_fm[bidx]), g)
        x = augment(x, res, g)
        b = len(bidx)
        # soft multi-positive targets over the caption bank
        tgt = torch.zeros(b, len(texts))
        sampled = []
        for r_, i in enumerate(bidx):
            pairs = per_item[int(i)]
            cids = [c for c, _ in pairs]
            ws = torch.tensor([w for _, w in pairs])
            tgt[r_, cids] = ws
            sampled.append(cids[int(torch.multinomial(ws, 1, generator=g))])
        img = F.normalize(visual(x), dim=-1)
        scale = logit_scale.exp().clamp(max=100.0)
        logits_bank = scale * img @ bank.T
        loss_i2t = -(tgt * F.log_softmax(logits_bank, dim=-1)).sum(1).mean()
        # in-batch text->image: sampled caption of row i is positive for every image that has it
        sampled_t = torch.tensor(sampled)
        pos_mask = (tgt[:, sampled_t] > 0).T.float()  # [caption row, image col]
        logits_t2i = scale * bank[sampled_t] @ img.T
        loss_t2i = -((pos_mask / pos_mask.sum(1, keepdim=True)) * F.log_softmax(logits_t2i, dim=-1)).sum(1).mean()
        loss = loss_i2t + 0.5 * loss_t2i
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(visual.parameters(), 5.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save(model, visual, logit_scale, cfg, args, step + 1)
        if step % 10 == 0:
            pbar.set_postfix(loss=f"{ema:.3f}", T=f"{1 / scale.item():.3f}")

    save(model, visual, logit_scale, cfg, args, args.steps)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
