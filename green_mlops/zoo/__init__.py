"""Old import path of :mod:`green_mlops.training.zoo`, kept so existing code keeps working."""
from green_mlops.training.zoo import (
    PAPER_MODELS,
    ModelFactory,
    ModelSpec,
    available_models,
    build_model,
    check_model_spec,
    check_num_classes,
    register_model,
)

__all__ = ["PAPER_MODELS", "ModelFactory", "ModelSpec", "available_models", "build_model", "check_model_spec",
           "check_num_classes", "register_model"]
