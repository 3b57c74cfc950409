"""The datasets the training module, the search and the demo use, as ready-made tensors.

``digits`` (default): scikit-learn's bundled handwritten digits, real data with no download, resized
to 32×32×3. ``digits50k``: the same digits enlarged to the paper's 50,000 training samples by random affine
augmentation, with a held-out set from unseen source images (:mod:`green_mlops.digits50k`). ``cifar10``: the
paper's dataset (torchvision, from ``data_dir``), its normalisation and its
test set replicated five-fold for inference energy. ``synthetic``: CIFAR-shaped random tensors for
energy profiling where accuracy does not matter. Every image is decoded and normalised once, up front,
so loading a batch costs indexing only (no per-sample transforms in the measured loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

DATASETS = ("digits", "cifar10", "synthetic", "digits50k")
INPUT_SHAPE = (3, 32, 32)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class DataBundle:
    """Train, validation and inference sets of one dataset, with where they came from.

    ``inference`` is what inference energy is measured over (for CIFAR-10, the test set five times,
    as in the paper); ``provenance`` is ``real`` or ``synthetic``.
    """

    name: str
    train: Dataset
    val: Dataset
    inference: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    provenance: str
    description: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {"train": len(self.train), "val": len(self.val), "inference": len(self.inference)}


class RepeatedDataset(Dataset):
    """``length`` samples cycling over ``base`` (sample i is ``base[i % len(base)]``), without copying it.

    Used for the replicated inference sets and for synthetic data drawn from a small pool.
    """

    def __init__(self, base: Dataset, length: int) -> None:
        if len(base) == 0:
            raise ValueError("cannot repeat an empty dataset")
        self.base = base
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        return self.base[index % self.length % len(self.base)]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1; got {value!r}")
    return value


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _digits(seed: int, val_fraction: float, inference_repeats: int) -> DataBundle:
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.2); got {val_fraction!r}")
    images, labels = load_digits(return_X_y=True)
    idx_train, idx_val = train_test_split(range(len(labels)), test_size=val_fraction, random_state=seed,
                                          stratify=labels)
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    x = F.interpolate(x, size=INPUT_SHAPE[1:], mode="bilinear", align_corners=False)
    x = x.expand(-1, INPUT_SHAPE[0], -1, -1).contiguous()
    y = torch.tensor(labels, dtype=torch.long)
    train_x = x[idx_train]
    mean = (float(train_x.mean()),) * INPUT_SHAPE[0]
    std = (float(train_x.std()),) * INPUT_SHAPE[0]
    x = _normalise(x, mean, std)
    train = TensorDataset(x[idx_train], y[idx_train])
    val = TensorDataset(x[idx_val], y[idx_val])
    inference = val if inference_repeats == 1 else RepeatedDataset(val, len(val) * inference_repeats)
    return DataBundle(
        "digits", train, val, inference, 10, INPUT_SHAPE, "real",
        f"scikit-learn handwritten digits ({len(y)} 8×8 images, bundled, no download) resized to 32×32 and "
        f"replicated to 3 channels, normalised with the training split's mean and std; stratified split "
        f"{len(train)} train / {len(val)} val (seed {seed}); inference = the validation set"
        + (f" ×{inference_repeats}" if inference_repeats > 1 else ""),
        mean, std, {"seed": seed, "val_fraction": val_fraction, "inference_repeats": inference_repeats})


class DataUnavailable(FileNotFoundError):
    """The dataset is not where it was asked for and could not be fetched; the message says how to get it."""


def cifar10_download_command(root: Path) -> str:
    """The one command that fetches CIFAR-10 (~170 MB) into ``root``, as torchvision does it."""
    return f"python -c \"from torchvision.datasets import CIFAR10; CIFAR10('{root}', download=True)\""


def _cifar_tensors(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as exc:
        raise DataUnavailable(
            f"CIFAR-10 is not in {root} (looked for {root / 'cifar-10-batches-py'}). Fetch it (~170 MB) with:\n"
            f"  {cifar10_download_command(root)}\nor add --download (download=True) to fetch it on the way, or "
            f"point --data-dir (data_dir=) at the folder that holds cifar-10-batches-py (torchvision: {exc})") from None
    except OSError as exc:  # urllib's URLError and socket errors: no network, a proxy, a refused connection
        reason = getattr(exc, "reason", None) or exc
        raise DataUnavailable(
            f"could not download CIFAR-10 into {root}: {reason}. Is this machine offline? On one with internet "
            f"access run:\n  {cifar10_download_command(root)}\ncopy its cifar-10-batches-py folder into {root}, and "
            "rerun without --download") from None
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)
    return _normalise(x, CIFAR10_MEAN, CIFAR10_STD).contiguous(), torch.tensor(ds.targets, dtype=torch.long)


def _cifar10(data_dir: str | Path | None, download: bool, inference_repeats: int) -> DataBundle:
    if data_dir is None:
        raise ValueError("cifar10 needs a data folder: pass --data-dir DIR (data_dir=) where cifar-10-batches-py "
                         "is, or where to put it with --download (download=True)")
    root = Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"--data-dir {root} is a file; give the folder that holds (or will hold) cifar-10-batches-py")
    created = download and not root.exists()
    if download:
        root.mkdir(parents=True, exist_ok=True)
    try:
        train_x, train_y = _cifar_tensors(root, True, download)
    except DataUnavailable:
        if created:  # leave nothing behind: a partial archive and the folder made for it
            (root / "cifar-10-python.tar.gz").unlink(missing_ok=True)
            if not any(root.iterdir()):
                root.rmdir()
        raise
    test_x, test_y = _cifar_tensors(root, False, False)
    train = TensorDataset(train_x, train_y)
    test = TensorDataset(test_x, test_y)
    inference = test if inference_repeats == 1 else RepeatedDataset(test, len(test) * inference_repeats)
    return DataBundle(
        "cifar10", train, test, inference, 10, INPUT_SHAPE, "real",
        f"CIFAR-10 from {root}: {len(train)} train / {len(test)} test images, normalised per channel with "
        f"mean {CIFAR10_MEAN} and std {CIFAR10_STD} (the paper's); validation = the test set; inference = the "
        f"test set ×{inference_repeats} ({len(inference)} samples, the paper's protocol when ×5)",
        CIFAR10_MEAN, CIFAR10_STD, {"data_dir": str(root), "inference_repeats": inference_repeats})


def _synthetic(seed: int, train_samples: int, val_samples: int, inference_samples: int, pool_size: int,
               num_classes: int) -> DataBundle:
    g = torch.Generator().manual_seed(seed)

    def pool() -> TensorDataset:
        return TensorDataset(torch.randn(pool_size, *INPUT_SHAPE, generator=g),
                             torch.randint(0, num_classes, (pool_size,), generator=g))

    train_pool, eval_pool = pool(), pool()
    return DataBundle(
        "synthetic", RepeatedDataset(train_pool, train_samples), RepeatedDataset(eval_pool, val_samples),
        RepeatedDataset(eval_pool, inference_samples), num_classes, INPUT_SHAPE, "synthetic",
        f"synthetic CIFAR-shaped data: standard-normal 3×32×32 tensors with random labels ({num_classes} "
        f"classes), {train_samples} train / {val_samples} val / {inference_samples} inference samples cycled "
        f"from pools of {pool_size} (seed {seed}); for energy profiling only: accuracy is meaningless",
        (0.0,) * 3, (1.0,) * 3, {"seed": seed, "pool_size": pool_size})


def load_data(name: str = "digits", *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0,
              val_fraction: float = 0.2, inference_repeats: int | None = None, train_samples: int = 50_000,
              val_samples: int = 10_000, inference_samples: int = 50_000, pool_size: int = 1024,
              num_classes: int = 10) -> DataBundle:
    """Load a dataset by name as normalised 3×32×32 tensors split into train, validation and inference sets.

    Args:
        name: ``digits`` (default), ``digits50k``, ``cifar10`` or ``synthetic``.
        data_dir: cifar10 only: the folder holding (or to hold) ``cifar-10-batches-py``.
        download: cifar10 only: download into ``data_dir`` if missing (never done unless asked).
        seed: digits, digits50k: the stratified split (and the augmentation); synthetic: the random tensors.
        val_fraction: digits, digits50k: share of source images held out for validation.
        inference_repeats: how many times the inference set repeats the validation (digits, default 1;
            digits50k, default 5) or test set (cifar10, default 5: the paper's 50k inference samples).
        train_samples, val_samples: synthetic and digits50k (augmented samples per split).
        inference_samples, pool_size, num_classes: synthetic only.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    repeats = _positive("inference_repeats", inference_repeats if inference_repeats is not None
                        else 5 if name in ("cifar10", "digits50k") else 1)
    if name == "digits50k":
        from green_mlops.digits50k import digits50k

        return digits50k(seed, val_fraction, _positive("train_samples", train_samples),
                         _positive("val_samples", val_samples), repeats)
    if name == "digits":
        return _digits(seed, val_fraction, repeats)
    if name == "cifar10":
        return _cifar10(data_dir, download, repeats)
    sizes = {"train_samples": train_samples, "val_samples": val_samples, "inference_samples": inference_samples,
             "pool_size": pool_size, "num_classes": num_classes}
    for key, value in sizes.items():
        _positive(key, value)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}")
    return _synthetic(seed, **sizes)
