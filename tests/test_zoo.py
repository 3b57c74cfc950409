"""The CIFAR model zoo: every paper architecture builds, trains a step on a 32×32 batch, and has the
published CIFAR variant's parameter count; the registry accepts torchvision and user models and
rejects bad specs with errors that say what to do."""
import sys
import textwrap

import pytest
import torch
from torch import nn

from green_mlops.training import zoo
from green_mlops.training.zoo import registry

# Trainable parameters of the reference CIFAR variants with 10 classes, github.com/kuangliu/pytorch-cifar
# (the collection the paper's §5.4 models come from), counted on the factory named beside each.
PUBLISHED_PARAMS = {
    "simpledla": 15_142_970,  # models/dla_simple.py, SimpleDLA()
    "dpn26": 11_574_842,  # models/dpn.py, DPN26()
    "densenet121": 6_956_298,  # models/densenet.py, DenseNet121()
    "efficientnetb0": 3_599_686,  # models/efficientnet.py, EfficientNetB0()
    "googlenet": 6_166_250,  # models/googlenet.py, GoogLeNet()
    "lenet": 62_006,  # models/lenet.py, LeNet()
    "mobilenet": 3_217_226,  # models/mobilenet.py, MobileNet()
    "mobilenetv2": 2_296_922,  # models/mobilenetv2.py, MobileNetV2()
    "pnasnet": 451_626,  # models/pnasnet.py, PNASNetB()
    "preactresnet18": 11_171_146,  # models/preact_resnet.py, PreActResNet18()
    "regnetx_200mf": 2_321_946,  # models/regnet.py, RegNetX_200MF()
    "resnet18": 11_173_962,  # models/resnet.py, ResNet18()
    "resnext29_2x64d": 9_128_778,  # models/resnext.py, ResNeXt29_2x64d()
    "senet18": 11_260_354,  # models/senet.py, SENet18()
    "shufflenetv2": 1_263_854,  # models/shufflenetv2.py, ShuffleNetV2(net_size=1)
    "vgg16": 14_728_266,  # models/vgg.py, VGG('VGG16')
}
# The reference EfficientNetB0 creates a 1×1 expansion conv (32·32 weights) and its BN (64) in its one
# block of expansion 1 but never calls them; the zoo leaves these dead parameters out.
DEAD_IN_REFERENCE = {"efficientnetb0": 32 * 32 + 2 * 32}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registry_holds_the_paper_models_in_the_papers_order():
    assert zoo.PAPER_MODELS == tuple(PUBLISHED_PARAMS)
    assert zoo.available_models() == sorted(PUBLISHED_PARAMS)


@pytest.mark.parametrize("name", zoo.PAPER_MODELS)
def test_paper_model_trains_a_step_and_has_the_published_parameter_count(name, one_thread):
    torch.manual_seed(0)
    model = zoo.build_model(name)
    assert _trainable(model) == PUBLISHED_PARAMS[name] - DEAD_IN_REFERENCE.get(name, 0)

    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    nn.functional.cross_entropy(out, torch.tensor([0, 9])).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient break DDP: {unused[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", zoo.PAPER_MODELS)
def test_paper_model_takes_num_classes(name, one_thread):
    model = zoo.build_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_names_are_case_and_separator_insensitive():
    assert zoo.check_model_spec("ResNet18") == "resnet18"
    assert zoo.check_model_spec(" RegNetX-200MF ") == "regnetx_200mf"
    assert zoo.check_model_spec("ResNeXt29_2x64d") == "resnext29_2x64d"


def test_torchvision_model_by_name(one_thread):
    assert zoo.check_model_spec("torchvision:resnet18") == "torchvision:resnet18"
    model = zoo.build_model("torchvision:resnet18", num_classes=10)
    assert _trainable(model) == 11_181_642  # torchvision ResNet-18 with a 10-way head, untrained
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_user_factory_by_import_path_and_as_callable(tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

        NOT_A_FACTORY = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_nets", raising=False)

    assert zoo.check_model_spec("user_nets:tiny") == "user_nets:tiny"
    model = zoo.build_model("user_nets:tiny", num_classes=4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)

    def factory(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    assert zoo.check_model_spec(factory).endswith(":test_user_factory_by_import_path_and_as_callable.<locals>.factory")
    assert zoo.build_model(factory, num_classes=3)(torch.randn(1, 3, 32, 32)).shape == (1, 3)

    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        zoo.check_model_spec("user_nets:missing")
    with pytest.raises(ValueError, match="not a callable"):
        zoo.check_model_spec("user_nets:NOT_A_FACTORY")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.nets'.*PYTHONPATH"):
        zoo.check_model_spec("no_such_pkg.nets:make")


def test_register_model_adds_a_name(private_registry):
    built = []

    @zoo.register_model("Tiny-Net")
    def tiny(num_classes: int) -> nn.Module:
        built.append(num_classes)
        return nn.Linear(4, num_classes)

    assert "tiny_net" in zoo.available_models()
    assert zoo.check_model_spec("tiny-net") == "tiny_net"
    assert built == [], "checking a spec must not build the model"
    assert zoo.build_model("tiny_net", num_classes=5).out_features == 5
    assert built == [5]

    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("tiny_net")(lambda n: nn.Linear(4, n))
    with pytest.raises(ValueError, match="without ':'"):
        zoo.register_model("bad:name")


def test_unknown_name_lists_models_suggests_the_closest_and_the_other_forms():
    with pytest.raises(ValueError) as info:
        zoo.build_model("resnet19")
    message = str(info.value)
    assert "unknown model 'resnet19'" in message
    assert "Did you mean 'resnet18'?" in message
    assert all(name in message for name in zoo.PAPER_MODELS)
    assert "torchvision:<name>" in message and "package.module:factory" in message

    with pytest.raises(ValueError, match="Did you mean 'mobilenetv2'"):
        zoo.check_model_spec("mobilenet_v2")


def test_unknown_torchvision_name_suggests_the_closest():
    with pytest.raises(ValueError, match="torchvision has no classification model 'resnet181'.*'resnet18'"):
        zoo.check_model_spec("torchvision:resnet181")


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True, "10", None])
def test_bad_num_classes_fails_before_building(num_classes, private_registry):
    built = []
    zoo.register_model("counted")(lambda n: built.append(n) or nn.Linear(4, n))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        zoo.build_model("counted", num_classes=num_classes)
    assert built == []


def test_bad_spec_types_and_factories():
    with pytest.raises(TypeError, match="name or a callable"):
        zoo.check_model_spec(42)
    with pytest.raises(TypeError, match="must return a torch.nn.Module"):
        zoo.build_model(lambda n: "not a model")
