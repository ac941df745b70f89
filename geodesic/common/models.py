"""Architectures, looked up by name: ``build_model(name, in_shape, num_classes)``.

- ``mlp``: flatten, then ``Linear + ReLU`` for each hidden width, then a final ``Linear``.
  On digits (``in_shape=(1, 8, 8)``) with the default widths it is 64-300-100-10.
- ``vgg11`` / ``vgg16``: the CIFAR-style VGG of Simonyan & Zisserman, configurations "A" and "D"
  (3x3 convolutions with padding 1 and ReLU, 2x2 max-pools), for 32x32 inputs with any number
  of channels. After the five pools a 32x32 input is a 512x1x1 map, so the classifier is a
  single ``Linear(512, num_classes)`` (no 4096-wide ImageNet head). The ``_bn`` variants put a
  ``BatchNorm2d`` after every convolution, before its ReLU. ``width`` multiplies every layer's
  channels: a layer of c channels gets max(1, round(c * width)) (0.25: a quarter-width VGG
  with about 1/16 of the parameters).

Weights use PyTorch's default initialisation, so ``torch.manual_seed`` fixes them.
"""
from __future__ import annotations

import math
from typing import Callable

from torch import nn

from geodesic.core.registry import Registry

Builder = Callable[[tuple[int, ...], int, tuple[int, ...], float], nn.Module]
MODELS: Registry[Builder] = Registry("model")

POOL = "M"
VGG_CONFIGS: dict[str, list] = {
    "A": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "D": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL,
          512, 512, 512, POOL],
}


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int,
                widths: tuple[int, ...] = (300, 100), width: float = 1.0) -> nn.Module:
    """Return a freshly initialised network ``name`` for inputs of shape ``in_shape``.

    ``widths`` are the hidden widths of the mlp; the VGGs ignore them. ``width`` is the VGGs'
    channel multiplier; the mlp accepts only 1.0. An unknown name raises
    :class:`geodesic.core.registry.UnknownNameError` listing the known ones.
    """
    if width <= 0:
        raise ValueError(f"width {width!r} is not allowed: a multiplier > 0")
    return MODELS.get(name)(tuple(in_shape), num_classes, tuple(widths), width)


@MODELS.register("mlp")
def mlp(in_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...],
        width: float = 1.0) -> nn.Sequential:
    """Return ``Flatten, (Linear, ReLU) per width, Linear`` for inputs of shape ``in_shape``."""
    if width != 1.0:
        raise ValueError(f"mlp: width {width!r} is not allowed: 1.0 (its hidden widths are "
                         "`widths`)")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(in_shape)
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Convolutional ``features`` from a configuration list, then a linear ``classifier``."""

    def __init__(self, config: list, in_shape: tuple[int, ...], num_classes: int,
                 batch_norm: bool, multiplier: float = 1.0):
        super().__init__()
        channels, height, width = in_shape
        pools = config.count(POOL)
        if height % 2**pools or width % 2**pools:
            raise ValueError(f"VGG needs height and width divisible by {2**pools}; "
                             f"got in_shape {in_shape}")
        layers: list[nn.Module] = []
        for entry in config:
            if entry == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            entry = max(1, round(entry * multiplier))
            layers.append(nn.Conv2d(channels, entry, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(entry))
            layers.append(nn.ReLU())
            channels = entry
        self.features = nn.Sequential(*layers)
        spatial = (height // 2**pools) * (width // 2**pools)
        self.classifier = nn.Linear(channels * spatial, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _vgg_builder(config: str, batch_norm: bool) -> Builder:
    def build(in_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...],
              width: float = 1.0) -> VGG:
        return VGG(VGG_CONFIGS[config], in_shape, num_classes, batch_norm, width)

    return build


for _name, _config in (("vgg11", "A"), ("vgg16", "D")):
    MODELS.register(_name)(_vgg_builder(_config, batch_norm=False))
    MODELS.register(f"{_name}_bn")(_vgg_builder(_config, batch_norm=True))
