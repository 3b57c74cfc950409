"""Building blocks shared by the CIFAR architectures: conv + batch norm, shortcuts, squeeze-excitation, the head."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead", "SqueezeExcite", "conv_bn", "shortcut"]


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free 'same'-padded convolution then batch norm: the unit most CIFAR networks are built from."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


def shortcut(in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
    """Residual shortcut: identity when shapes match, else a strided 1×1 projection with batch norm."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_bn(in_ch, out_ch, 1, stride)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: rescale channels by a gate computed from their global average (1×1 convs, biased)."""

    def __init__(self, channels: int, reduced: int, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            activation(),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ClassifierHead(nn.Sequential):
    """Global average pooling then a linear layer.

    The reference nets pool with a fixed window equal to the last feature map at 32×32 input; global
    pooling is the same there and keeps other input sizes working.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers, nn.Linear(in_features, num_classes))
