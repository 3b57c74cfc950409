"""SENet-18 for CIFAR (Hu et al., 2018): pre-activation ResNet-18 blocks with squeeze-excitation."""
from __future__ import annotations

from torch import nn

from .layers import conv_bn
from .preact_resnet import PreActResNet
from .registry import register_model

__all__ = ["senet18"]


@register_model("senet18")
def senet18(num_classes: int = 10) -> PreActResNet:
    """SENet-18: a conv-BN-ReLU stem, then pre-activation blocks gated by squeeze-excitation."""
    stem = nn.Sequential(conv_bn(3, 64, 3), nn.ReLU(inplace=True))
    return PreActResNet((2, 2, 2, 2), num_classes, squeeze_excite=True, stem=stem)
