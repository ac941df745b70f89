import pytest
import torch
from torch import nn


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def tiny_convnet_bn(seed: int = 0) -> nn.Module:
    """Conv + BatchNorm with non-trivial running statistics, so eval mode matters."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    with torch.no_grad():
        net.train()
        net(torch.randn(16, 2, 4, 4) * 2 + 1)
    return net.eval()
