"""MobileNet (v1) for CIFAR (Howard et al., 2017): depthwise-separable convolutions, stride 1 in the stem."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead, conv_bn
from .registry import register_model

__all__ = ["MobileNet", "mobilenet"]

MOBILENET_LAYOUT: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
"""(output channels, stride) of each depthwise-separable block."""


def _separable(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3×3 depthwise conv-BN-ReLU, then 1×1 pointwise conv-BN-ReLU."""
    return nn.Sequential(
        conv_bn(in_ch, in_ch, 3, stride, groups=in_ch),
        nn.ReLU(inplace=True),
        conv_bn(in_ch, out_ch, 1),
        nn.ReLU(inplace=True),
    )


class MobileNet(nn.Module):
    """A 3×3 stem to 32 channels, 13 separable blocks, global pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3), nn.ReLU(inplace=True)]
        in_ch = 32
        for out_ch, stride in MOBILENET_LAYOUT:
            layers.append(_separable(in_ch, out_ch, stride))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("mobilenet")
def mobilenet(num_classes: int = 10) -> MobileNet:
    """MobileNet v1 (width 1.0) for 32×32 inputs."""
    return MobileNet(num_classes)
