"""``digits50k``: scikit-learn's bundled digits enlarged to the paper's 50,000 training samples by real augmentation.

The 1,797 8×8 digits are split by source image (stratified, by seed) into training and held-out sources; each
split is resized to 32×32 and enlarged with random affine transforms (rotation, scale, shift, shear) drawn
per sample, in one vectorised ``affine_grid``/``grid_sample`` pass, once, up front. Held-out samples come only
from held-out source images, so accuracy measures generalisation to unseen digits, not to copies of training
ones. Grey is replicated to three channels as a view (no copy); batches cost indexing only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from green_mlops.data import INPUT_SHAPE, DataBundle, RepeatedDataset

#: Augmentation ranges: rotation ±degrees, scale factor range, shift as a share of the image side, shear ±degrees.
ROTATION_DEG = 15.0
SCALE = (0.85, 1.15)
SHIFT = 0.12
SHEAR_DEG = 10.0
_CHUNK = 8192


def _sources(seed: int, held_out_fraction: float) -> tuple[list[int], list[int], torch.Tensor, torch.Tensor]:
    """Indices of the training and held-out source images (stratified by class), and all of them at 32×32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    idx_train, idx_test = train_test_split(range(len(labels)), test_size=held_out_fraction, random_state=seed,
                                           stratify=labels)
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    x = F.interpolate(x, size=INPUT_SHAPE[1:], mode="bilinear", align_corners=False)
    return list(idx_train), list(idx_test), x, torch.tensor(labels, dtype=torch.long)


def augment(x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` randomly transformed copies drawn evenly from the sources ``x`` (each used ⌊n/len⌋ or ⌈n/len⌉ times)."""
    picks = torch.cat([torch.randperm(len(x), generator=generator) for _ in range(math.ceil(n / len(x)))])[:n]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = torch.deg2rad(uniform(-ROTATION_DEG, ROTATION_DEG))
    shear = torch.deg2rad(uniform(-SHEAR_DEG, SHEAR_DEG))
    scale = uniform(*SCALE)
    tx, ty = uniform(-2 * SHIFT, 2 * SHIFT), uniform(-2 * SHIFT, 2 * SHIFT)  # grid coordinates span [-1, 1]
    theta = torch.stack([torch.stack([torch.cos(angle), -torch.sin(angle + shear), tx], 1),
                         torch.stack([torch.sin(angle), torch.cos(angle + shear), ty], 1)], 1) / scale.view(-1, 1, 1)
    theta[:, :, 2] *= scale.view(-1, 1)  # the shift is not scaled
    out = torch.empty(n, 1, *INPUT_SHAPE[1:])
    for i in range(0, n, _CHUNK):
        sl = slice(i, i + _CHUNK)
        grid = F.affine_grid(theta[sl], [len(theta[sl]), 1, *INPUT_SHAPE[1:]], align_corners=False)
        out[sl] = F.grid_sample(x[picks[sl]], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, y[picks]


def digits50k(seed: int = 0, held_out_fraction: float = 0.2, train_samples: int = 50_000,
              val_samples: int = 10_000, inference_repeats: int = 5) -> DataBundle:
    """Training set augmented from the training sources, validation from the held-out ones, inference = val × repeats.

    With the defaults the sizes are the paper's CIFAR-10 protocol: 50k training, 10k test, 50k inference.
    ``info["train_sources"]``/``["held_out_sources"]`` list the source images (indices into ``load_digits``) of each.
    """
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.2); got {held_out_fraction!r}")
    idx_train, idx_test, x, y = _sources(seed, held_out_fraction)
    g = torch.Generator().manual_seed(seed)
    train_x, train_y = augment(x[idx_train], y[idx_train], train_samples, g)
    val_x, val_y = augment(x[idx_test], y[idx_test], val_samples, g)
    mean, std = float(train_x.mean()), float(train_x.std())
    train_x.sub_(mean).div_(std)
    val_x.sub_(mean).div_(std)
    rgb = (-1, INPUT_SHAPE[0], -1, -1)
    train = TensorDataset(train_x.expand(*rgb), train_y)
    val = TensorDataset(val_x.expand(*rgb), val_y)
    inference = val if inference_repeats == 1 else RepeatedDataset(val, len(val) * inference_repeats)
    return DataBundle(
        "digits50k", train, val, inference, 10, INPUT_SHAPE, "real",
        f"scikit-learn handwritten digits (bundled, no download) split by source image (seed {seed}): "
        f"{len(idx_train)} training / {len(idx_test)} held-out sources, resized to 32×32, enlarged by random affine "
        f"augmentation (rotation ±{ROTATION_DEG:g}°, scale {SCALE[0]:g}–{SCALE[1]:g}, shift ±{SHIFT:.0%}, shear "
        f"±{SHEAR_DEG:g}°) to {len(train)} training and {len(val)} validation samples, grey replicated to 3 "
        f"channels, normalised with the training set's mean and std; inference = validation ×{inference_repeats} "
        f"({len(inference)} samples)",
        (mean,) * 3, (std,) * 3,
        {"seed": seed, "held_out_fraction": held_out_fraction, "train_sources": idx_train,
         "held_out_sources": idx_test, "inference_repeats": inference_repeats})
