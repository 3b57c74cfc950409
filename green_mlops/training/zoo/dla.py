"""SimpleDLA for CIFAR: the simplified Deep Layer Aggregation (Yu et al., 2018) of the pytorch-cifar collection.

Trees of residual blocks whose outputs a root node (1×1 conv-BN-ReLU over their concatenation) aggregates.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead, conv_bn
from .registry import register_model
from .resnet import BasicBlock

__all__ = ["SimpleDLA", "Tree", "simpledla"]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(in_ch, out_ch, 3), nn.ReLU(inplace=True))


class Tree(nn.Module):
    """Two subtrees (basic blocks at level 1) in series, their outputs joined by a root node."""

    def __init__(self, in_ch: int, out_ch: int, level: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.root = nn.Sequential(conv_bn(2 * out_ch, out_ch, 1), nn.ReLU(inplace=True))
        if level == 1:
            self.left: nn.Module = BasicBlock(in_ch, out_ch, stride)
            self.right: nn.Module = BasicBlock(out_ch, out_ch, 1)
        else:
            self.left = Tree(in_ch, out_ch, level - 1, stride)
            self.right = Tree(out_ch, out_ch, level - 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.left(x)
        return self.root(torch.cat([left, self.right(left)], 1))


class SimpleDLA(nn.Module):
    """Three plain conv layers (16, 16, 32 channels), then trees of 64, 128, 256 and 512 channels."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 16),
            _conv_bn_relu(16, 16),
            _conv_bn_relu(16, 32),
            Tree(32, 64, level=1, stride=1),
            Tree(64, 128, level=2, stride=2),
            Tree(128, 256, level=2, stride=2),
            Tree(256, 512, level=1, stride=2),
        )
        self.head = ClassifierHead(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("simpledla")
def simpledla(num_classes: int = 10) -> SimpleDLA:
    """SimpleDLA for 32×32 inputs."""
    return SimpleDLA(num_classes)
