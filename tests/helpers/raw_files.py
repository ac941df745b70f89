"""Test-written dataset files in torchvision's layouts: MNIST IDX files, CIFAR pickled batches."""
import hashlib
import pickle

import numpy as np
import torchvision.datasets

from tests.conftest import write_idx

def noise_images(rng, n, shape):
    """``n`` uint8 images of ``shape``, uniform noise, and their labels 0..9 in turn."""
    labels = np.arange(n) % 10
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), labels


def write_noise_mnist(root, rng, sizes=(("train", 200), ("t10k", 100))) -> None:
    """MNIST files of :func:`noise_images` under ``root/MNIST/raw``: ``sizes`` images per file
    prefix."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in sizes:
        images, labels = noise_images(rng, n, (28, 28))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)


def write_cifar(folder, files, meta, label_key, n_classes, rng):
    """CIFAR pickled batches in ``folder``: 20 noise images per file of ``files``, labels
    0..``n_classes``-1 in turn under ``label_key``, class names in ``meta``. Returns
    {file: (images (20, 3, 32, 32), labels)}."""
    folder.mkdir(parents=True)
    written = {}
    for name in files:
        images, _ = noise_images(rng, 20, (3, 32, 32))
        labels = (np.arange(20) % n_classes).tolist()
        entry = {"data": images.reshape(20, -1), label_key: labels}
        (folder / name).write_bytes(pickle.dumps(entry))
        written[name] = images, labels
    names_key = "fine_label_names" if n_classes == 100 else "label_names"
    (folder / meta).write_bytes(pickle.dumps({names_key: [f"c{i}" for i in range(n_classes)]}))
    return written


def accept_test_files(monkeypatch, cls, folder):
    """Point the class's md5 entries at the test-written files (torchvision checks them)."""
    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


def write_cifar10(root, rng, monkeypatch) -> None:
    """CIFAR-10 of :func:`write_cifar` under ``root/cifar-10-batches-py``, accepted by
    torchvision."""
    folder = root / "cifar-10-batches-py"
    write_cifar(folder, [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                "batches.meta", "labels", 10, rng)
    accept_test_files(monkeypatch, torchvision.datasets.CIFAR10, folder)


def write_cifar100(root, rng, monkeypatch) -> None:
    """CIFAR-100 under ``root/cifar-100-python``: 600 train and 200 test noise images, labels
    0..99 in turn, accepted by torchvision."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 600), ("test", 200)):
        entry = {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 "fine_labels": (np.arange(n) % 100).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}"
                                                                     for i in range(100)]}))
    accept_test_files(monkeypatch, torchvision.datasets.CIFAR100, folder)
