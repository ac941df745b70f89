from contextlib import contextmanager

import pytest
import torch
from torch import nn


@contextmanager
def single_thread():
    """One intra-op thread: small models and tensors gain nothing from a second, and on a shared
    machine two threads per process wait on each other; the numbers do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """:func:`single_thread` for a whole module (``pytest.mark.usefixtures("one_thread")``)."""
    with single_thread():
        yield


@pytest.fixture
def one_thread_per_test():
    """:func:`single_thread` for one test at a time: the thread count is restored after each."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tasks():
    """The digits split into five tasks of two classes (the continual default)."""
    from geodesic.common.data import load_dataset
    from geodesic.continual.tasks import class_split
    return class_split(load_dataset("digits"), 5)


@pytest.fixture
def offline(monkeypatch):
    """Make every torchvision download fail as it does without a network."""
    import torchvision.datasets
    from urllib.error import URLError

    def refuse(self):
        raise URLError("no network in tests")

    for cls in (torchvision.datasets.MNIST, torchvision.datasets.CIFAR10,
                torchvision.datasets.CIFAR100):
        monkeypatch.setattr(cls, "download", refuse)


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
    from geodesic.common.models import VGG
    torch.manual_seed(0)
    return with_bn_statistics(VGG([3, "M", 4, 4, "M"], (2, 8, 8), 5, batch_norm=True), (1, 2, 8, 8))


def write_idx(path, array, magic: int) -> None:
    """``array`` as an IDX file (MNIST's format: magic, shape, uint8 bytes)."""
    import struct

    import numpy as np
    with open(path, "wb") as fh:
        fh.write(struct.pack(">" + "i" * (1 + array.ndim), magic, *array.shape))
        fh.write(np.asarray(array).astype(np.uint8).tobytes())


def write_mnist(root, sizes=(("train", 40), ("t10k", 20)), seed: int = 0,
                signal: int = 60) -> dict:
    """MNIST files in torchvision's layout under ``root/MNIST/raw``: ``sizes`` images per file
    prefix, labels 0..9 in turn, each image noise (0..99) plus ``signal`` on a row at its
    class's height (so a network can learn them, not perfectly). Returns {prefix: (images uint8
    (n, 28, 28), labels)}."""
    import numpy as np
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in sizes:
        labels = np.arange(n) % 10
        images = rng.integers(0, 100, size=(n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 4 + 2 * labels, 4:24] += signal
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
        written[prefix] = images, labels
    return written
