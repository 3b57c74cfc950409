"""DPN-26 for CIFAR (Chen et al., 2017): dual-path blocks that add a residual path and grow a dense path."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn
from .registry import register_model

__all__ = ["DPN", "DualPathBlock", "dpn26"]


class DualPathBlock(nn.Module):
    """Bottleneck (3×3 conv in 32 groups) whose first ``out_ch`` channels add to the residual path and
    whose last ``dense_depth`` channels are appended to the dense path."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dense_depth: int, stride: int, first: bool) -> None:
        super().__init__()
        self.out_ch = out_ch
        self.branch = nn.Sequential(
            conv_bn(in_ch, mid_ch, 1),
            nn.ReLU(inplace=True),
            conv_bn(mid_ch, mid_ch, 3, stride, groups=32),
            nn.ReLU(inplace=True),
            conv_bn(mid_ch, out_ch + dense_depth, 1),
        )
        self.shortcut = conv_bn(in_ch, out_ch + dense_depth, 1, stride) if first else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        x = self.shortcut(x)
        d = self.out_ch
        return F.relu(torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]], 1))


class DPN(nn.Module):
    """A 3×3 stem to 64 channels, then four stages of dual-path blocks (strides 1, 2, 2, 2)."""

    def __init__(
        self,
        mid_channels: tuple[int, ...],
        out_channels: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        dense_depths: tuple[int, ...],
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 3), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        in_ch = 64
        for i, (mid, out, n, dense) in enumerate(zip(mid_channels, out_channels, blocks_per_stage, dense_depths)):
            for j in range(n):
                layers.append(DualPathBlock(in_ch, mid, out, dense, 2 if i > 0 and j == 0 else 1, j == 0))
                in_ch = out + (j + 2) * dense
        self.layers = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("dpn26")
def dpn26(num_classes: int = 10) -> DPN:
    """DPN-26: two dual-path blocks per stage."""
    return DPN((96, 192, 384, 768), (256, 512, 1024, 2048), (2, 2, 2, 2), (16, 32, 24, 128), num_classes)
