"""MobileNetV2 for CIFAR (Sandler et al., 2018): inverted residuals; stem and second stage at stride 1 for 32×32."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn, shortcut
from .registry import register_model

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2"]

MOBILENETV2_LAYOUT: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
"""(expansion, output channels, blocks, stride of the first block) per stage."""


class InvertedResidual(nn.Module):
    """1×1 expand-BN-ReLU, 3×3 depthwise-BN-ReLU, 1×1 linear projection-BN.

    Stride-1 blocks add a shortcut (projected by a 1×1 conv when the width changes, as in the reference).
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_ch
        self.branch = nn.Sequential(
            conv_bn(in_ch, hidden, 1),
            nn.ReLU(inplace=True),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU(inplace=True),
            conv_bn(hidden, out_ch, 1),
        )
        self.shortcut = shortcut(in_ch, out_ch) if stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(nn.Module):
    """A 3×3 stem to 32 channels, seventeen inverted residuals, 1×1 conv to 1280, global pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3), nn.ReLU(inplace=True)]
        in_ch = 32
        for expansion, out_ch, n, stride in MOBILENETV2_LAYOUT:
            for j in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, expansion, stride if j == 0 else 1))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.top = conv_bn(in_ch, 1280, 1)
        self.head = ClassifierHead(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.top(self.features(x))))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int = 10) -> MobileNetV2:
    """MobileNetV2 (width 1.0) for 32×32 inputs."""
    return MobileNetV2(num_classes)
