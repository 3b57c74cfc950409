"""Turn a model spec (a zoo name, ``torchvision:<name>``, ``package.module:factory`` or a callable) into a model.

``check_model_spec`` validates a spec without building anything, so a search can reject a bad space
before the first trial trains; ``build_model`` validates the same way, then builds.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Union

from torch import nn

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

ModelFactory = Callable[[int], nn.Module]
"""Builds a model for ``num_classes`` classes."""

ModelSpec = Union[str, ModelFactory]
"""A zoo name, ``"torchvision:<name>"``, ``"package.module:factory"``, or a factory itself."""

PAPER_MODELS: tuple[str, ...] = (
    "simpledla", "dpn26", "densenet121", "efficientnetb0", "googlenet", "lenet", "mobilenet", "mobilenetv2",
    "pnasnet", "preactresnet18", "regnetx_200mf", "resnet18", "resnext29_2x64d", "senet18", "shufflenetv2",
    "vgg16",
)
"""The sixteen CIFAR architectures of the paper (§5.4), in its order."""

_TORCHVISION = "torchvision:"
_FORMS_HELP = (
    "For other models use 'torchvision:<name>' (any torchvision classification model, e.g. "
    "'torchvision:resnet50', built untrained) or 'package.module:factory' (a callable importable by that path, "
    "called as factory(num_classes) and returning a torch.nn.Module)."
)

_REGISTRY: dict[str, ModelFactory] = {}


def _key(name: str) -> str:
    """Registry key: case and '-' versus '_' do not matter ('ResNet18', 'regnetx-200mf')."""
    return name.strip().lower().replace("-", "_")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding ``factory(num_classes) -> nn.Module`` to the zoo under ``name``; returns the factory."""
    if not isinstance(name, str) or not _key(name) or ":" in name:
        raise ValueError(f"model name must be a non-empty string without ':', got {name!r}")
    key = _key(name)

    def decorate(factory: ModelFactory) -> ModelFactory:
        if not callable(factory):
            raise TypeError(f"register_model({name!r}) decorates a callable factory(num_classes), not {factory!r}")
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"a model named {key!r} is already registered; choose another name")
        _REGISTRY[key] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    """Names ``build_model`` accepts directly: the zoo's sixteen and any the user registered, sorted."""
    return sorted(_REGISTRY)


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` is an int of at least 2 (a classifier needs two classes)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (the number of labels in the data), got {num_classes!r}")


def _closest(word: str, names: list[str]) -> str:
    match = difflib.get_close_matches(word, names, n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def _torchvision_classifiers() -> list[str]:
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def _check_torchvision(name: str) -> str:
    known = _torchvision_classifiers()
    if name not in known:
        raise ValueError(
            f"torchvision has no classification model {name!r}.{_closest(name, known)} "
            f"Available: {', '.join(known)}."
        )
    return _TORCHVISION + name


def _resolve_import_path(spec: str) -> ModelFactory:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"model spec {spec!r} must look like 'package.module:factory'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} for model spec {spec!r} ({exc}); check the spelling and "
            "that the module is on PYTHONPATH"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model spec {spec!r}: {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model spec {spec!r} names {type(obj).__name__}, not a callable factory(num_classes)")
    return obj


def _unknown_name(spec: str) -> ValueError:
    names = available_models()
    return ValueError(
        f"unknown model {spec!r}.{_closest(_key(spec), names)} Available: {', '.join(names)}. {_FORMS_HELP}"
    )


def check_model_spec(spec: ModelSpec, num_classes: int | None = None) -> str:
    """Validate ``spec`` (and ``num_classes`` when given) without building; return the canonical name to log.

    Raises ValueError (unknown name, unimportable path, bad num_classes) or TypeError (neither str nor callable).
    """
    if num_classes is not None:
        check_num_classes(num_classes)
    if callable(spec) and not isinstance(spec, str):
        return f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', type(spec).__name__)}"
    if not isinstance(spec, str):
        raise TypeError(f"a model spec is a name or a callable factory(num_classes), not {type(spec).__name__}")
    spec = spec.strip()
    if spec.lower().startswith(_TORCHVISION):
        return _check_torchvision(spec[len(_TORCHVISION):].strip())
    if ":" in spec:
        _resolve_import_path(spec)
        return spec
    if _key(spec) not in _REGISTRY:
        raise _unknown_name(spec)
    return _key(spec)


def build_model(spec: ModelSpec, num_classes: int = 10) -> nn.Module:
    """Build an untrained model for ``num_classes`` classes from ``spec`` (see ``ModelSpec``); nothing is downloaded."""
    check_num_classes(num_classes)
    name = check_model_spec(spec)
    if name.startswith(_TORCHVISION):
        import torchvision.models

        return torchvision.models.get_model(name[len(_TORCHVISION):], weights=None, num_classes=num_classes)
    if callable(spec) and not isinstance(spec, str):
        factory = spec
    elif ":" in name:
        factory = _resolve_import_path(name)
    else:
        factory = _REGISTRY[name]
    model = factory(num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {name!r} returned {type(model).__name__}; it must return a torch.nn.Module")
    return model
