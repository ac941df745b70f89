import pytest
import torch
from torch import nn

from geodesic.common.models import MODELS, build_model
from geodesic.core.registry import UnknownNameError
from geodesic.params import MODELS as MODEL_NAMES

SHAPES = {"mlp": (1, 8, 8)}


def test_registry_holds_exactly_the_params_names():
    assert MODELS.names() == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_its_input_to_class_scores(name):
    in_shape = SHAPES.get(name, (3, 32, 32))
    model = build_model(name, in_shape, num_classes=7)
    assert model(torch.randn(2, *in_shape)).shape == (2, 7)


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_vgg_accepts_any_channel_count(name):
    assert build_model(name, (1, 32, 32), 10)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet18", (3, 32, 32), 10)
    for name in MODEL_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_batchnorm_only_in_bn_variants(name):
    def has_bn(model):
        return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    assert not has_bn(build_model(name, (3, 32, 32), 10))
    assert has_bn(build_model(f"{name}_bn", (3, 32, 32), 10))


def test_vgg_depths():
    def convs(name):
        return sum(isinstance(m, nn.Conv2d) for m in build_model(name, (3, 32, 32), 10).modules())

    assert convs("vgg11") == 8 and convs("vgg16") == 13


def test_mlp_on_digits_is_64_300_100_10():
    model = build_model("mlp", (1, 8, 8), 10)
    expected = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected


def test_init_is_deterministic_given_the_seed():
    torch.manual_seed(3)
    first = build_model("mlp", (1, 8, 8), 10, widths=(16,))
    torch.manual_seed(3)
    second = build_model("mlp", (1, 8, 8), 10, widths=(16,))
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def _vgg_parameters(channels, in_channels, classes, bn):
    count, c_in = 0, in_channels
    for c in channels:
        count += 9 * c_in * c + c + (2 * c if bn else 0)
        c_in = c
    return count + c_in * classes + classes


@pytest.mark.parametrize("width, channels", [
    (1.0, [64, 128, 256, 256, 512, 512, 512, 512]),
    (0.25, [16, 32, 64, 64, 128, 128, 128, 128]),
    (0.001, [1] * 8),  # max(1, round(c * width))
])
def test_width_multiplies_the_vgg_channels(width, channels):
    model = build_model("vgg11_bn", (1, 32, 32), 10, width=width)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == channels
    assert sum(p.numel() for p in model.parameters()) == _vgg_parameters(channels, 1, 10, True)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_quarter_width_vgg11_bn_on_padded_mnist_has_579498_parameters():
    model = build_model("vgg11_bn", (1, 32, 32), 10, width=0.25)
    assert sum(p.numel() for p in model.parameters()) == 579_498


@pytest.mark.parametrize("width", [0.5, 0.0, -1.0])
def test_mlp_refuses_a_width_multiplier_and_nothing_takes_a_non_positive_one(width):
    with pytest.raises(ValueError, match=f"width {width!r} is not allowed"):
        build_model("mlp", (1, 8, 8), 10, width=width)
    if width <= 0:
        with pytest.raises(ValueError, match="a multiplier > 0"):
            build_model("vgg11", (1, 32, 32), 10, width=width)
