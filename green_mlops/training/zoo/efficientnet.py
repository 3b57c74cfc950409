"""EfficientNet-B0 for CIFAR (Tan & Le, 2019): MBConv blocks with squeeze-excitation and swish, stride-1 stem.

Two choices differ from the pytorch-cifar reference without changing what it computes: the reference
builds a 1×1 expansion conv and BN in blocks of expansion 1 but never calls them (1,088 dead
parameters, which break DDP's unused-parameter check), and its drop-connect rate is always 0 (its
block counter never advances); both are left out here. Dropout 0.2 before the classifier is kept.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead, SqueezeExcite, conv_bn
from .registry import register_model

__all__ = ["EfficientNet", "MBConv", "efficientnetb0"]

EFFICIENTNETB0_LAYOUT: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1), (6, 192, 4, 5, 2), (6, 320, 1, 3, 1),
)
"""(expansion, output channels, blocks, kernel size, stride of the first block) per stage."""


class MBConv(nn.Module):
    """Optional 1×1 expansion, k×k depthwise, squeeze-excitation (¼ of the input width), 1×1 projection.

    Swish after expansion and depthwise; a residual sum when stride is 1 and the width is unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_ch
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [conv_bn(in_ch, hidden, 1), nn.SiLU(inplace=True)]
        layers += [
            conv_bn(hidden, hidden, kernel_size, stride, groups=hidden),
            nn.SiLU(inplace=True),
            SqueezeExcite(hidden, int(in_ch * 0.25), activation=nn.SiLU),
            conv_bn(hidden, out_ch, 1),
        ]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return out + x if self.residual else out


class EfficientNet(nn.Module):
    """A 3×3 stem to 32 channels with swish, MBConv stages, global pool, dropout 0.2, linear."""

    def __init__(self, layout: tuple[tuple[int, int, int, int, int], ...], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3), nn.SiLU(inplace=True)]
        in_ch = 32
        for expansion, out_ch, n, kernel_size, stride in layout:
            for j in range(n):
                layers.append(MBConv(in_ch, out_ch, expansion, kernel_size, stride if j == 0 else 1))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes, dropout=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("efficientnetb0")
def efficientnetb0(num_classes: int = 10) -> EfficientNet:
    """EfficientNet-B0 for 32×32 inputs."""
    return EfficientNet(EFFICIENTNETB0_LAYOUT, num_classes)
