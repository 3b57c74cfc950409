"""The paper's sixteen CIFAR-sized architectures (32×32 inputs, no ImageNet stem) and a registry to build them.

``build_model("resnet18")``, ``build_model("torchvision:resnet50")``, ``build_model("mypkg.nets:make")`` or
``build_model(factory)``; ``check_model_spec`` validates a spec without building it. The layer
configurations follow the pytorch-cifar collection (github.com/kuangliu/pytorch-cifar), written anew here.
"""
from . import (  # noqa: F401  (importing a family registers its models)
    densenet,
    dla,
    dpn,
    efficientnet,
    googlenet,
    lenet,
    mobilenet,
    mobilenetv2,
    pnasnet,
    preact_resnet,
    regnet,
    resnet,
    resnext,
    senet,
    shufflenetv2,
    vgg,
)
from .registry import (
    PAPER_MODELS,
    ModelFactory,
    ModelSpec,
    available_models,
    build_model,
    check_model_spec,
    check_num_classes,
    register_model,
)

__all__ = [
    "PAPER_MODELS",
    "ModelFactory",
    "ModelSpec",
    "available_models",
    "build_model",
    "check_model_spec",
    "check_num_classes",
    "register_model",
]
