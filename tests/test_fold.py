"""Batch norms folded into their convolutions on a CPU (picsift.embedding.fold): same vectors, no norm left, and
nothing folded where a fold would change what the tower computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from picsift.embedding import fold, openclip
from picsift.embedding.fold import fold_batch_norms

from .conftest import stamp_files


def _randomise_norms(module: nn.Module) -> None:
    """Statistics far from a fresh norm's (mean 0, var 1), so a wrong fold shows."""
    generator = torch.Generator().manual_seed(3)
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            n = norm.num_features
            norm.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            norm.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            norm.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            norm.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)  # depthwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))).mean(dim=(2, 3))


class Shared(nn.Module):
    """The convolution's output is used twice: by its norm and by a residual sum (a fold would change the sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return (self.bn(y) + y).mean(dim=(2, 3))


class Reused(nn.Module):
    """One convolution called twice, each time before another norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn1, self.bn2 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.bn2(self.conv(self.bn1(self.conv(x))))).mean(dim=(2, 3))


def _outputs(model: nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(9)))


def test_a_plain_and_a_depthwise_pair_fold_to_the_same_outputs() -> None:
    model = Plain().eval()
    _randomise_norms(model)
    before = _outputs(model)
    assert fold_batch_norms(model, 16) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(_outputs(model), before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [Shared, Reused])
def test_a_fold_that_would_change_the_outputs_is_not_made(kind: type[nn.Module]) -> None:
    model = kind().eval()
    _randomise_norms(model)
    before = _outputs(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_batch_norms(model, 16) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len([m for m in weights if "running_var"
                                                                                  in m])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # every weight as it was
    torch.testing.assert_close(_outputs(model), before, rtol=0, atol=0)


def test_a_model_in_training_mode_is_left_alone() -> None:
    model = Plain().train()
    assert fold_batch_norms(model, 16) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def test_the_offline_models_image_tower_is_folded_and_embeds_real_images_as_before(
    stamps_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from picsift.embedding import offline_model

    if not offline_model.is_available():
        pytest.skip("offline model not available")
    folded = openclip.Embedder("picsift-offline", device="cpu")
    norms = [m for m in folded._model.visual.modules() if type(m).__name__ in ("BatchNormAct2d", "BatchNorm2d")]
    assert not norms  # all 49 of EfficientNet-Lite0's are folded
    monkeypatch.setattr(openclip, "fold_batch_norms", lambda *args: 0)
    plain = openclip.Embedder("picsift-offline", device="cpu")
    assert sum(type(m).__name__ == "BatchNormAct2d" for m in plain._model.visual.modules()) == 49
    images = [Image.open(p).convert("RGB") for p in stamp_files(stamps_root, ("animals", "vehicles"), 8)]
    a, b = plain.embed_images(images), folded.embed_images(images)
    assert float(np.min(np.sum(a * b, axis=1))) >= fold.MIN_COSINE
