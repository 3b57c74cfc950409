"""RegNetX-200MF for CIFAR (Radosavovic et al., 2020): residual bottlenecks with grouped 3×3 convs (group width 8)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn, shortcut
from .registry import register_model

__all__ = ["RegNetX", "XBlock", "regnetx_200mf"]


class XBlock(nn.Module):
    """1×1 conv-BN-ReLU, 3×3 grouped conv-BN-ReLU, 1×1 conv-BN, plus a shortcut; ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group_width: int, bottleneck_ratio: float = 1.0) -> None:
        super().__init__()
        mid = int(round(out_ch * bottleneck_ratio))
        self.branch = nn.Sequential(
            conv_bn(in_ch, mid, 1),
            nn.ReLU(inplace=True),
            conv_bn(mid, mid, 3, stride, groups=mid // group_width),
            nn.ReLU(inplace=True),
            conv_bn(mid, out_ch, 1),
        )
        self.shortcut = shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class RegNetX(nn.Module):
    """A 3×3 stem to 64 channels, four stages of X blocks, global pool, linear."""

    def __init__(
        self,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        strides: tuple[int, ...],
        group_width: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 64, 3), nn.ReLU(inplace=True)]
        in_ch = 64
        for depth, width, stride in zip(depths, widths, strides):
            for j in range(depth):
                layers.append(XBlock(in_ch, width, stride if j == 0 else 1, group_width))
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("regnetx_200mf")
def regnetx_200mf(num_classes: int = 10) -> RegNetX:
    """RegNetX-200MF with the CIFAR strides (1, 1, 2, 2)."""
    return RegNetX((1, 1, 4, 7), (24, 56, 152, 368), (1, 1, 2, 2), group_width=8, num_classes=num_classes)
