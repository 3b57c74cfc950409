"""Pre-activation ResNet-18 for CIFAR (He et al., 2016, "Identity Mappings"): BN-ReLU before each convolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, SqueezeExcite
from .registry import register_model

__all__ = ["PreActBlock", "PreActResNet", "preactresnet18"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut projects the activated input when shapes change.

    With ``squeeze_excite`` the residual branch is gated by squeeze-excitation (reduction 16) before
    the sum, which makes it the SENet block.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, squeeze_excite: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1, bias=False)
        self.se = SqueezeExcite(out_ch, out_ch // 16) if squeeze_excite else nn.Identity()
        self.projection = None
        if stride != 1 or in_ch != out_ch:
            self.projection = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.projection is None else self.projection(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return self.se(out) + skip


class PreActResNet(nn.Module):
    """A plain 3×3 stem conv, then pre-activation stages of 64, 128, 256 and 512 channels."""

    def __init__(
        self,
        blocks_per_stage: tuple[int, ...],
        num_classes: int = 10,
        squeeze_excite: bool = False,
        stem: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.stem = stem if stem is not None else nn.Conv2d(3, 64, 3, 1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_ch = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            for j in range(n):
                layers.append(PreActBlock(in_ch, width, 2 if i > 0 and j == 0 else 1, squeeze_excite))
                in_ch = width
        self.layers = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("preactresnet18")
def preactresnet18(num_classes: int = 10) -> PreActResNet:
    """Pre-activation ResNet-18 for 32×32 inputs."""
    return PreActResNet((2, 2, 2, 2), num_classes)
