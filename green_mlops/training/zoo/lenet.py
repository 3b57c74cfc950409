"""LeNet-5 for 32×32 RGB inputs (LeCun et al., 1998): two 5×5 convolutions with max pooling, three linear layers."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

__all__ = ["LeNet", "lenet"]


class LeNet(nn.Module):
    """Conv 6@5×5, pool, conv 16@5×5, pool, then 120, 84 and ``num_classes`` units; needs 32×32 inputs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet")
def lenet(num_classes: int = 10) -> LeNet:
    """LeNet for 32×32 inputs."""
    return LeNet(num_classes)
