"""DenseNet-121 for CIFAR (Huang et al., 2017): growth rate 32, compression 0.5, a 3×3 stem without pooling."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead
from .registry import register_model

__all__ = ["DenseLayer", "DenseNet", "densenet121"]


def _bn_relu_conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2, bias=False),
    )


class DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv to 4·growth, BN-ReLU-3×3 conv to growth; the new maps are concatenated to the input."""

    def __init__(self, in_ch: int, growth_rate: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            _bn_relu_conv(in_ch, 4 * growth_rate, 1), _bn_relu_conv(4 * growth_rate, growth_rate, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch(x), x], 1)


class DenseNet(nn.Module):
    """Dense blocks joined by transitions (BN-ReLU-1×1 conv, 2×2 average pool) that compress channels."""

    def __init__(
        self, layers_per_block: tuple[int, ...], growth_rate: int = 32, reduction: float = 0.5, num_classes: int = 10
    ) -> None:
        super().__init__()
        channels = 2 * growth_rate
        modules: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        for i, n in enumerate(layers_per_block):
            for _ in range(n):
                modules.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
            if i < len(layers_per_block) - 1:
                out_ch = int(channels * reduction)
                modules += [_bn_relu_conv(channels, out_ch, 1), nn.AvgPool2d(2)]
                channels = out_ch
        modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*modules)
        self.head = ClassifierHead(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("densenet121")
def densenet121(num_classes: int = 10) -> DenseNet:
    """DenseNet-121: dense blocks of 6, 12, 24 and 16 layers."""
    return DenseNet((6, 12, 24, 16), growth_rate=32, num_classes=num_classes)
