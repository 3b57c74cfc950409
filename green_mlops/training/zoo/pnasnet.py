"""PNASNet-B for CIFAR (Liu et al., 2018, "Progressive Neural Architecture Search"), 32 base channels.

Each cell sums pairs of branches (separable 7×7 + 3×3; max pool + separable 5×5), concatenates the two
sums and reduces them back with a 1×1 conv. Six cells per stage; a stride-2 cell between stages.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn
from .registry import register_model

__all__ = ["CellB", "PNASNet", "pnasnet"]


class CellB(nn.Module):
    """PNASNet's cell B; at stride 2 the pooled branch is projected to the new width by a 1×1 conv-BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.sep7 = conv_bn(in_ch, out_ch, 7, stride, groups=in_ch)
        self.sep3 = conv_bn(in_ch, out_ch, 3, stride, groups=in_ch)
        self.sep5 = conv_bn(in_ch, out_ch, 5, stride, groups=in_ch)
        self.pool_proj = conv_bn(in_ch, out_ch, 1) if stride == 2 else nn.Identity()
        self.reduce = conv_bn(2 * out_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.sep7(x) + self.sep3(x))
        pooled = self.pool_proj(F.max_pool2d(x, 3, self.stride, padding=1))
        right = F.relu(pooled + self.sep5(x))
        return F.relu(self.reduce(torch.cat([left, right], 1)))


class PNASNet(nn.Module):
    """A 3×3 stem, then three stages of cells at 1×, 2× and 4× the base width, joined by stride-2 cells."""

    def __init__(self, base_width: int = 32, cells_per_stage: int = 6, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, base_width, 3), nn.ReLU(inplace=True)]
        in_ch = base_width
        for stage, width in enumerate((base_width, 2 * base_width, 4 * base_width)):
            if stage > 0:
                layers.append(CellB(in_ch, width, stride=2))
                in_ch = width
            for _ in range(cells_per_stage):
                layers.append(CellB(in_ch, width))
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("pnasnet")
def pnasnet(num_classes: int = 10) -> PNASNet:
    """PNASNet-B (the paper's 'PNASNet') for 32×32 inputs."""
    return PNASNet(32, 6, num_classes)
