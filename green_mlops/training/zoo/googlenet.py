"""GoogLeNet for CIFAR (Szegedy et al., 2015): Inception modules on a 3×3 stem, batch norm, no auxiliary heads."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead
from .registry import register_model

__all__ = ["GoogLeNet", "Inception", "googlenet"]


def _conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """Convolution with bias (as in the reference), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class Inception(nn.Module):
    """Four branches concatenated: 1×1; 1×1→3×3; 1×1→3×3→3×3 (the '5×5' branch); 3×3 max pool→1×1."""

    def __init__(
        self, in_ch: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            _conv_bn_relu(in_ch, n1x1, 1),
            nn.Sequential(_conv_bn_relu(in_ch, n3x3_reduce, 1), _conv_bn_relu(n3x3_reduce, n3x3, 3)),
            nn.Sequential(
                _conv_bn_relu(in_ch, n5x5_reduce, 1), _conv_bn_relu(n5x5_reduce, n5x5, 3), _conv_bn_relu(n5x5, n5x5, 3)
            ),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_bn_relu(in_ch, pool_proj, 1)),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class GoogLeNet(nn.Module):
    """Stem to 192 channels, Inception 3a-3b, pool, 4a-4e, pool, 5a-5b, global pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 192, 3),
            Inception(192, 64, 96, 128, 16, 32, 32),
            Inception(256, 128, 128, 192, 32, 96, 64),
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(480, 192, 96, 208, 16, 48, 64),
            Inception(512, 160, 112, 224, 24, 64, 64),
            Inception(512, 128, 128, 256, 24, 64, 64),
            Inception(512, 112, 144, 288, 32, 64, 64),
            Inception(528, 256, 160, 320, 32, 128, 128),
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(832, 256, 160, 320, 32, 128, 128),
            Inception(832, 384, 192, 384, 48, 128, 128),
        )
        self.head = ClassifierHead(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("googlenet")
def googlenet(num_classes: int = 10) -> GoogLeNet:
    """GoogLeNet for 32×32 inputs."""
    return GoogLeNet(num_classes)
