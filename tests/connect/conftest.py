"""Fixtures of the connect tests: the digits data and a trained network with its permuted twin."""
import copy

import pytest
import torch

from geodesic.common.data import load_dataset
from geodesic.common.models import build_model
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A 64-32-10 MLP trained on digits, and the same network with its hidden units permuted:
    two weight vectors with exactly the same function."""
    torch.manual_seed(0)
    net = build_model("mlp", digits.in_shape, 10, (32,))
    train(net, digits, TrainSettings(epochs=15, lr=0.05), seed=0)
    twin = copy.deepcopy(net)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        twin[1].weight.copy_(net[1].weight[perm])
        twin[1].bias.copy_(net[1].bias[perm])
        twin[3].weight.copy_(net[3].weight[:, perm])
    return net, twin
