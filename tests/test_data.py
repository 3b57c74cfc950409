"""Datasets: digits (real, bundled), cifar10 (its errors only: tests never download), synthetic."""
from __future__ import annotations

import collections

import pytest
import torch

from green_mlops.data import DATASETS, INPUT_SHAPE, RepeatedDataset, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_digits_shapes_split_and_normalisation(digits):
    assert digits.name == "digits" and digits.provenance == "real" and digits.num_classes == 10
    assert digits.input_shape == INPUT_SHAPE == (3, 32, 32)
    assert digits.sizes() == {"train": 1437, "val": 360, "inference": 360}
    x, y = digits.train.tensors
    assert x.shape == (1437, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey replicated to RGB
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4  # normalised with the train split's stats
    assert digits.inference is digits.val
    # stratified: every class keeps its share of the 1797 images in validation (about 36 each)
    counts = collections.Counter(digits.val.tensors[1].tolist())
    assert sorted(counts) == list(range(10)) and min(counts.values()) >= 35 and max(counts.values()) <= 37
    assert "no download" in digits.description


def test_digits_split_is_fixed_by_seed_and_inference_can_repeat(digits):
    again = load_data("digits", seed=0, inference_repeats=3)
    assert torch.equal(again.val.tensors[0], digits.val.tensors[0])
    other = load_data("digits", seed=1)
    assert not torch.equal(other.val.tensors[1], digits.val.tensors[1])
    assert len(again.inference) == 3 * 360
    assert torch.equal(again.inference[360 + 7][0], again.val[7][0])


def test_cifar10_without_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="--data-dir"):
        load_data("cifar10")
    empty = tmp_path / "cifar"
    with pytest.raises(FileNotFoundError, match="--download") as err:
        load_data("cifar10", data_dir=empty)
    assert "--data-dir" in str(err.value)
    assert not empty.exists()  # nothing created, nothing downloaded
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_data("cifar10", data_dir=a_file)


def test_synthetic_sizes_from_a_small_pool():
    s = load_data("synthetic", train_samples=1000, val_samples=100, inference_samples=500, pool_size=64, seed=3)
    assert s.provenance == "synthetic" and "accuracy is meaningless" in s.description
    assert s.sizes() == {"train": 1000, "val": 100, "inference": 500}
    x, y = s.train[999]
    assert x.shape == INPUT_SHAPE and 0 <= int(y) < 10
    assert torch.equal(s.train[999][0], s.train[999 % 64][0])
    assert s.train.base.tensors[0].shape[0] == 64  # memory is the pool's, not the dataset's
    assert torch.equal(load_data("synthetic", seed=3, pool_size=64).train[5][0], s.train[5][0])
    default = load_data("synthetic")
    assert default.sizes() == {"train": 50_000, "val": 10_000, "inference": 50_000}
    with pytest.raises(IndexError):
        s.train[1000]


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "mnist"}, "choose one of digits, cifar10, synthetic"),
    ({"name": "synthetic", "train_samples": 0}, "train_samples must be a whole number"),
    ({"name": "synthetic", "num_classes": 1}, "at least 2"),
    ({"name": "digits", "val_fraction": 1.5}, "val_fraction"),
    ({"name": "digits", "inference_repeats": 0}, "inference_repeats"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_data(**kwargs)
    assert DATASETS == ("digits", "cifar10", "synthetic", "digits50k")


def test_repeated_dataset_refuses_an_empty_base():
    with pytest.raises(ValueError, match="empty"):
        RepeatedDataset(torch.utils.data.TensorDataset(torch.zeros(0, 1)), 5)


@pytest.fixture(scope="module")
def digits50k():
    return load_data("digits50k", train_samples=3000, val_samples=600)


def test_digits50k_shapes_sizes_and_normalisation(digits50k):
    d = digits50k
    assert d.name == "digits50k" and d.provenance == "real" and d.num_classes == 10 and "no download" in d.description
    assert d.sizes() == {"train": 3000, "val": 600, "inference": 3000}  # inference = held-out set ×5, as the paper
    x, y = d.train.tensors
    assert x.shape == (3000, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated to RGB
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    assert torch.equal(d.inference[600 + 5][0], d.val[5][0])
    assert sorted(collections.Counter(y.tolist())) == list(range(10))


def test_digits50k_held_out_comes_from_unseen_source_images(digits50k):
    train_src, held_src = set(digits50k.info["train_sources"]), set(digits50k.info["held_out_sources"])
    assert not train_src & held_src and len(train_src | held_src) == 1797 and len(held_src) == 360
    # augmentation makes new images: no two training samples are equal, none equals a validation sample
    x = digits50k.train.tensors[0][:, 0].reshape(3000, -1)
    v = digits50k.val.tensors[0][:, 0].reshape(600, -1)
    assert len(torch.unique(x, dim=0)) == 3000
    assert torch.cdist(v, x).min() > 1e-3


def test_digits50k_is_fixed_by_seed():
    a = load_data("digits50k", train_samples=500, val_samples=100, seed=3)
    b = load_data("digits50k", train_samples=500, val_samples=100, seed=3)
    c = load_data("digits50k", train_samples=500, val_samples=100, seed=4)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.val.tensors[1], b.val.tensors[1])
    assert a.info["held_out_sources"] == b.info["held_out_sources"] != c.info["held_out_sources"]
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_digits50k_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="train_samples"):
        load_data("digits50k", train_samples=0)
    with pytest.raises(ValueError, match="val_fraction"):
        load_data("digits50k", val_fraction=1.5)
