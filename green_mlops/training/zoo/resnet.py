"""ResNet-18 for CIFAR (He et al., 2016): a 3×3 stem without pooling, four stages of two basic blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn, shortcut
from .registry import register_model

__all__ = ["BasicBlock", "ResNet", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a shortcut, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride)
        self.conv2 = conv_bn(out_ch, out_ch, 3)
        self.shortcut = shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stages of 64, 128, 256 and 512 channels; every stage after the first halves the resolution."""

    def __init__(self, blocks_per_stage: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 3), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        in_ch = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            for j in range(n):
                layers.append(BasicBlock(in_ch, width, 2 if i > 0 and j == 0 else 1))
                in_ch = width
        self.layers = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("resnet18")
def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18 for 32×32 inputs (11.2 M parameters with 10 classes)."""
    return ResNet((2, 2, 2, 2), num_classes)
