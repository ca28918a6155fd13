"""The image head of picsift's offline model: ConSE over the ImageNet classes plus a trained residual.

open_clip's own heads (``timm_proj: "linear"`` or ``"mlp"``) are a linear map or one GELU MLP on the
pooled features. The head that carries what ImageNet taught the trunk into MiniLM's text space needs a
softmax over the classifier's top classes, which neither can express (an MLP trained to imitate it lost a
third of the caption recall: docs/model_card.md, "Why a custom head"). So the head is this one small module,
registered with timm as an architecture (:data:`ARCH`), and the open_clip config names it as its
``vision_cfg.timm_model_name`` with ``timm_proj: ""``: open_clip then builds ``timm.create_model(ARCH,
num_classes=embed_dim)`` and uses its output as the image embedding. Everything else is open_clip's standard
path. The architecture exists once this module is imported (``offline_model.model_spec()`` does it).

The head, for pooled trunk features ``f`` (1280-d):

    p = softmax(top_k(imagenet(f)) / temperature)        # ImageNet's own classifier, frozen
    embedding = normalize(p @ prototypes) + residual_scale * residual(f)

``prototypes`` are MiniLM embeddings of each class's WordNet prompts (ConSE, Norouzi et al. 2014); the
``residual`` MLP is trained on captioned images (training/train_offline_model.py).
"""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models import register_model
from torch import nn

from .backbone import TRUNK_ARCH

#: the timm name of the whole image tower (trunk + this head)
ARCH = "picsift_efficientnet_lite0_conse"
TOP_K = 20
TEMPERATURE = 2.0
HIDDEN = 768
RESIDUAL_SCALE = 0.5
IMAGENET_CLASSES = 1000


class ConseHead(nn.Module):
    """ImageNet logits -> softmax over the top ``top_k`` -> mean class-prompt embedding, plus a residual MLP.

    Parameters
    ----------
    in_features
        Width of the pooled trunk features.
    embed_dim
        Width of the shared image-text space (MiniLM's 384).
    """

    def __init__(self, in_features: int, embed_dim: int, *, num_classes: int = IMAGENET_CLASSES,
                 top_k: int = TOP_K, temperature: float = TEMPERATURE, hidden: int = HIDDEN,
                 residual_scale: float = RESIDUAL_SCALE):
        super().__init__()
        self.top_k, self.temperature, self.residual_scale = top_k, temperature, residual_scale
        self.imagenet = nn.Linear(in_features, num_classes)
        self.prototypes = nn.Parameter(torch.zeros(num_classes, embed_dim))
        self.residual = Mlp(in_features, hidden, embed_dim)

    def class_weights(self, features: torch.Tensor) -> torch.Tensor:
        """[N, classes]: the softmax over each row's ``top_k`` ImageNet logits (zero elsewhere)."""
        top = (self.imagenet(features) / self.temperature).topk(self.top_k, dim=-1)
        return torch.zeros(features.shape[0], self.imagenet.out_features, dtype=features.dtype,
                           device=features.device).scatter_(1, top.indices, top.values.softmax(-1))

    def conse(self, features: torch.Tensor) -> torch.Tensor:
        """The zero-training part: the class-weighted mean of the class prompts, unit length."""
        return F.normalize(self.class_weights(features) @ self.prototypes, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conse(features) + self.residual_scale * self.residual(features)


@register_model
def picsift_efficientnet_lite0_conse(pretrained: bool = False, num_classes: int = 384, **kwargs) -> nn.Module:
    """EfficientNet-Lite0 whose classifier is a :class:`ConseHead` into a ``num_classes``-d text space."""
    if pretrained:
        raise ValueError(f"{ARCH} has no timm pretrained weights; picsift.embedding.offline_model.model_spec() "
                         "assembles its checkpoint from the installed packages")
    model = timm.create_model(TRUNK_ARCH, pretrained=False, **kwargs)
    model.classifier = ConseHead(model.num_features, num_classes)
    model.num_classes = num_classes
    return model


__all__ = ["ARCH", "HIDDEN", "RESIDUAL_SCALE", "TEMPERATURE", "TOP_K", "ConseHead"]
