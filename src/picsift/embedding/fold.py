"""Batch norms folded into the convolution before them, for inference on a CPU.

In eval mode a batch norm is an affine map per channel, so the convolution that feeds it can absorb it (its
weights scaled, a bias added), the standard inference rewrite; the arithmetic is torch's own
``fuse_conv_bn_weights``. On these CPUs it is worth it: in the offline model's EfficientNet the batch norms took
about 30% of the image tower's time (channels-last tensors, one thread; ``bench/fold.py``: 0.64x with them
folded). The pairs are found by running the tower once on a probe batch (a norm whose input is the very tensor a
convolution returned), and the folded tower is checked against the original on that batch: any
doubt (a convolution or norm used twice, outputs that moved) leaves the tower as it was.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: Least cosine between the folded and the original tower's outputs on the probe batch (rounding alone: > 0.999999).
MIN_COSINE = 0.99999


def fold_batch_norms(tower: Any, image_size: int) -> int:
    """Fold each batch norm of ``tower`` (in eval mode) into the convolution feeding it; the number folded."""
    import torch
    from torch import nn

    if tower.training:
        return 0
    calls: dict[int, int] = {}
    outputs: dict[int, tuple[Any, Any]] = {}  # id of a convolution's output -> (the convolution, the output)
    pairs: list[tuple[Any, Any]] = []

    def after_conv(module: Any, inputs: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        outputs[id(output)] = (module, output)

    def before_norm(module: Any, inputs: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        found = outputs.get(id(inputs[0]))
        if found is not None and found[1] is inputs[0]:
            pairs.append((found[0], module))

    hooks = [m.register_forward_hook(after_conv) for m in tower.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_norm) for m in tower.modules() if _foldable(m)]
    probe = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    probe = probe.to(next(tower.parameters()).device)
    try:
        with torch.inference_mode():
            expected = tower(probe).float()
    finally:
        for hook in hooks:
            hook.remove()
        outputs.clear()
    pairs = [(conv, norm) for conv, norm in pairs if calls[id(conv)] == calls[id(norm)] == 1]
    if not pairs:
        return 0
    parents = {id(child): (parent, name) for parent in tower.modules() for name, child in parent.named_children()}
    saved = {id(conv): (conv.weight, conv.bias) for conv, _ in pairs}  # _fold gives each new parameters
    with torch.no_grad():
        for conv, norm in pairs:
            _fold(conv, norm)
            parent, name = parents[id(norm)]
            parent._modules[name] = _after_norm(norm)
        with torch.inference_mode():
            got = tower(probe).float()
        cosine = float(torch.nn.functional.cosine_similarity(got.flatten(1), expected.flatten(1)).min())
        if cosine >= MIN_COSINE:
            return len(pairs)
        log.warning("batch norms not folded: the folded image tower moved (cosine %.6f)", cosine)
        for conv, norm in pairs:  # put everything back
            conv.weight, conv.bias = saved[id(conv)]
            parent, name = parents[id(norm)]
            parent._modules[name] = norm
    return 0


def _foldable(module: Any) -> bool:
    """A plain ``BatchNorm2d`` or timm's ``BatchNormAct2d`` (norm, dropout, activation) with running statistics."""
    from torch import nn

    kind = type(module)
    plain = kind is nn.BatchNorm2d
    timm_act = kind.__name__ == "BatchNormAct2d" and hasattr(module, "act") and hasattr(module, "drop")
    return (plain or timm_act) and module.running_mean is not None and module.running_var is not None


def _fold(conv: Any, norm: Any) -> None:
    """Scale ``conv``'s output channels and shift its bias as ``norm`` would: torch's own
    ``fuse_conv_bn_weights``, on float64 copies (then stored in the convolution's dtype)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    def wide(tensor: Any) -> Any:
        return None if tensor is None else tensor.detach().double()

    weight, bias = fuse_conv_bn_weights(wide(conv.weight), wide(conv.bias), wide(norm.running_mean),
                                        wide(norm.running_var), norm.eps, wide(norm.weight), wide(norm.bias))
    dtype = conv.weight.dtype
    conv.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    conv.bias = torch.nn.Parameter(bias.detach().to(dtype), requires_grad=False)


def _after_norm(norm: Any) -> Any:
    """What is left of ``norm`` once folded: nothing, or timm's dropout and activation after it."""
    from torch import nn

    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(norm.drop, norm.act)
