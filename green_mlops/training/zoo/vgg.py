"""VGG-16 for CIFAR (Simonyan & Zisserman, 2015): 13 conv-BN-ReLU layers, five max pools, one linear layer."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ClassifierHead
from .registry import register_model

__all__ = ["VGG", "vgg16"]

VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)
"""Output channels of each 3×3 convolution; 'M' is a 2×2 max pool."""


class VGG(nn.Module):
    """3×3 convolutions (with bias) each followed by batch norm and ReLU; the CIFAR head is a single linear layer."""

    def __init__(self, layout: tuple[int | str, ...], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("vgg16")
def vgg16(num_classes: int = 10) -> VGG:
    """VGG-16 with batch norm for 32×32 inputs."""
    return VGG(VGG16_LAYOUT, num_classes)
