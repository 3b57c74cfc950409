"""ResNeXt-29 (2×64d) for CIFAR (Xie et al., 2017): three stages of grouped-convolution bottlenecks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn, shortcut
from .registry import register_model

__all__ = ["ResNeXt", "ResNeXtBlock", "resnext29_2x64d"]


class ResNeXtBlock(nn.Module):
    """1×1 reduce, 3×3 grouped conv (``cardinality`` groups), 1×1 expand ×2, plus a shortcut."""

    expansion = 2

    def __init__(self, in_ch: int, cardinality: int, bottleneck_width: int, stride: int = 1) -> None:
        super().__init__()
        group_width = cardinality * bottleneck_width
        out_ch = self.expansion * group_width
        self.branch = nn.Sequential(
            conv_bn(in_ch, group_width, 1),
            nn.ReLU(inplace=True),
            conv_bn(group_width, group_width, 3, stride, groups=cardinality),
            nn.ReLU(inplace=True),
            conv_bn(group_width, out_ch, 1),
        )
        self.shortcut = shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class ResNeXt(nn.Module):
    """A 1×1 stem to 64 channels, then stages whose bottleneck width doubles as resolution halves."""

    def __init__(
        self, blocks_per_stage: tuple[int, ...], cardinality: int, bottleneck_width: int, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 1), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        in_ch, width = 64, bottleneck_width
        for i, n in enumerate(blocks_per_stage):
            for j in range(n):
                layers.append(ResNeXtBlock(in_ch, cardinality, width, 2 if i > 0 and j == 0 else 1))
                in_ch = ResNeXtBlock.expansion * cardinality * width
            width *= 2
        self.layers = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("resnext29_2x64d")
def resnext29_2x64d(num_classes: int = 10) -> ResNeXt:
    """ResNeXt-29 with cardinality 2 and bottleneck width 64."""
    return ResNeXt((3, 3, 3), cardinality=2, bottleneck_width=64, num_classes=num_classes)
