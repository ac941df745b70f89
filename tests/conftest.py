import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: small models run fastest so, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tasks():
    """The digits split into five tasks of two classes (the continual default)."""
    from geodesic.data import load_dataset
    from geodesic.tasks import class_split
    return class_split(load_dataset("digits"), 5)


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


def with_bn_statistics(net: nn.Module, shape) -> nn.Module:
    with torch.no_grad():
        net.train()(torch.randn(16, *shape[1:]) * 2 + 1)
    return net.eval()


def tiny_vgg_bn():
    """The library's VGG class (features, flatten, classifier) with BatchNorm, tiny."""
    from geodesic.models import VGG
    torch.manual_seed(0)
    return with_bn_statistics(VGG([3, "M", 4, 4, "M"], (2, 8, 8), 5, batch_norm=True), (1, 2, 8, 8))
