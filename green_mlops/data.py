"""Old import path of :mod:`green_mlops.training.data`, kept so existing code keeps working."""
from green_mlops.training.data import (
    DATASETS,
    INPUT_SHAPE,
    DataBundle,
    DataUnavailable,
    RepeatedDataset,
    cifar10_download_command,
    load_data,
)

__all__ = ["DATASETS", "INPUT_SHAPE", "DataBundle", "DataUnavailable", "RepeatedDataset", "cifar10_download_command",
           "load_data"]
