"""ShuffleNetV2 (1×) for CIFAR (Ma et al., 2018): channel split, shuffle, stride-1 stem and no stem pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClassifierHead, conv_bn
from .registry import register_model

__all__ = ["DownBlock", "ShuffleBlock", "ShuffleNetV2", "channel_shuffle", "shufflenetv2"]


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (works for any memory format)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _pointwise_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(in_ch, out_ch, 1), nn.ReLU(inplace=True))


class ShuffleBlock(nn.Module):
    """Split channels in half; one half passes, the other goes 1×1-ReLU, 3×3 depthwise, 1×1-ReLU; concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            _pointwise_relu(half, half), conv_bn(half, half, 3, groups=half), _pointwise_relu(half, half)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[1] // 2
        return channel_shuffle(torch.cat([x[:, :half], self.branch(x[:, half:])], 1))


class DownBlock(nn.Module):
    """Both halves see the whole input at stride 2 (depthwise then 1×1; 1×1, depthwise, 1×1); concat, shuffle."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = out_ch // 2
        self.left = nn.Sequential(conv_bn(in_ch, in_ch, 3, 2, groups=in_ch), _pointwise_relu(in_ch, mid))
        self.right = nn.Sequential(
            _pointwise_relu(in_ch, mid), conv_bn(mid, mid, 3, 2, groups=mid), _pointwise_relu(mid, mid)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    """A 3×3 stem to 24 channels, three stages (a down block then shuffle blocks), 1×1 conv, global pool, linear."""

    def __init__(
        self,
        stage_channels: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        top_channels: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 24, 3), nn.ReLU(inplace=True)]
        in_ch = 24
        for out_ch, n in zip(stage_channels, blocks_per_stage):
            layers.append(DownBlock(in_ch, out_ch))
            layers += [ShuffleBlock(out_ch) for _ in range(n)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.top = conv_bn(in_ch, top_channels, 1)
        self.head = ClassifierHead(top_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.top(self.features(x))))


@register_model("shufflenetv2")
def shufflenetv2(num_classes: int = 10) -> ShuffleNetV2:
    """ShuffleNetV2 with net size 1 (stage widths 116, 232, 464; 1024 before the classifier)."""
    return ShuffleNetV2((116, 232, 464), (3, 7, 3), 1024, num_classes)
