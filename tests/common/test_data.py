from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from geodesic.common.data import (DATASETS, Dataset, Split, batches, load_dataset, load_saved,
                                  save_dataset)
from geodesic.continual.tasks import class_split, permute_pixels, permuted
from geodesic.params import DATASETS as DATASET_NAMES
from tests.conftest import write_mnist
from tests.helpers.raw_files import accept_test_files, write_cifar


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_registry_holds_exactly_the_params_names():
    assert DATASETS.names() == sorted(DATASET_NAMES)


def test_digits_shapes_and_types(digits):
    assert (digits.in_shape, digits.num_classes, digits.name) == ((1, 8, 8), 10, "digits")
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == round(0.2 * 1797)
    assert len(digits.val) == round(0.1 * (1797 - len(digits.test)))
    for split in (digits.train, digits.val, digits.test):
        assert split.x.shape[1:] == (1, 8, 8) and split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        assert set(split.y.tolist()) == set(range(10))


def test_digits_splits_are_disjoint(digits):
    rows = torch.cat([s.x.flatten(1) for s in (digits.train, digits.val, digits.test)])
    assert len(torch.unique(rows, dim=0)) == 1797  # the 1797 digit images are all distinct


def test_splits_are_deterministic_for_a_seed(digits):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(again.val.x, digits.val.x) and torch.equal(again.train.y, digits.train.y)
    assert not torch.equal(other.val.x, digits.val.x)
    assert len(other.test) == len(digits.test)


def test_normalisation_uses_training_statistics(digits):
    assert digits.train.x.mean().abs() < 1e-5
    assert (digits.train.x.std() - 1).abs() < 1e-4
    assert digits.test.x.mean().abs() > 1e-4


def test_limits_keep_stratified_subsets():
    ds = load_dataset("digits", val_fraction=0.0, train_limit=100, test_limit=50)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 0, 50)
    assert ds.train.y.bincount().tolist() == [10] * 10


def test_batches_cover_the_split_once_in_a_seeded_order(digits):
    def run(seed):
        return list(batches(digits.val, 32, torch.Generator().manual_seed(seed)))

    first = run(0)
    assert [len(y) for _, y in first] == [32] * (len(digits.val) // 32) + [len(digits.val) % 32]
    assert torch.equal(torch.cat([y for _, y in first]).sort().values, digits.val.y.sort().values)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, run(0)))
    assert not torch.equal(first[0][1], run(1)[0][1])


def test_save_load_round_trip(tmp_path, digits):
    """Bytes that follow the content alone (DVC and the checkpoint keys hash the file)."""
    save_dataset(digits, tmp_path / "prepared" / "digits.safetensors")
    for i in range(8):
        save_dataset(digits, tmp_path / f"{i}.safetensors")
        assert (tmp_path / f"{i}.safetensors").read_bytes() == (
            tmp_path / "prepared" / "digits.safetensors").read_bytes()
    back = load_saved(tmp_path / "prepared" / "digits.safetensors")
    assert (back.num_classes, back.in_shape, back.name) == (10, (1, 8, 8), "digits")
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(back, part).x, getattr(digits, part).x)
        assert torch.equal(getattr(back, part).y, getattr(digits, part).y)


def test_mnist_reads_idx_files(tmp_path, offline):
    written = write_mnist(tmp_path)
    loaded = DATASETS.get("mnist")(tmp_path)
    assert torch.equal(loaded.train.x, torch.tensor(written["train"][0]).unsqueeze(1).float())
    assert torch.equal(loaded.test.y, torch.tensor(written["t10k"][1]))
    ds = load_dataset("mnist", root=tmp_path, val_fraction=0.25)
    assert ds.in_shape == (1, 28, 28) and ds.num_classes == 10
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)


@pytest.mark.parametrize("name, cls, folder, files, meta, label_key, n_classes", [
    ("cifar10", torchvision.datasets.CIFAR10, "cifar-10-batches-py",
     [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "batches.meta", "labels", 10),
    ("cifar100", torchvision.datasets.CIFAR100, "cifar-100-python",
     ["train", "test"], "meta", "fine_labels", 100),
])
def test_cifar_reads_pickled_batches(tmp_path, monkeypatch, offline,
                                     name, cls, folder, files, meta, label_key, n_classes):
    rng = np.random.default_rng(0)
    written = write_cifar(tmp_path / folder, files, meta, label_key, n_classes, rng)
    accept_test_files(monkeypatch, cls, tmp_path / folder)
    loaded = DATASETS.get(name)(tmp_path)
    train_files, test_file = files[:-1], files[-1]
    assert torch.equal(loaded.train.x,
                       torch.tensor(np.concatenate([written[f][0] for f in train_files])).float())
    assert loaded.test.y.tolist() == written[test_file][1]
    ds = load_dataset(name, root=tmp_path, val_fraction=0.1)
    assert ds.in_shape == (3, 32, 32) and ds.num_classes == n_classes
    assert len(ds.train) + len(ds.val) == 20 * len(train_files) and len(ds.test) == 20
    channel_means = ds.train.x.mean(dim=(0, 2, 3))
    assert torch.allclose(channel_means, torch.zeros(3), atol=1e-5)


@pytest.mark.parametrize("name, expected", [
    ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/meta"),
])
def test_missing_files_offline_name_the_folder_and_layout(tmp_path, offline, name, expected):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=tmp_path)
    assert str(tmp_path / expected) in str(info.value)
    assert "no network in tests" in str(info.value)


def test_class_split_into_five_tasks(digits):
    tasks = class_split(digits, 5)
    assert [t.classes for t in tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for task in tasks:
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == set(task.classes)
    assert sum(len(t.train) for t in tasks) == len(digits.train)


def test_class_split_needs_a_divisor(digits):
    with pytest.raises(ValueError, match=r"n_tasks=3.*num_classes=10"):
        class_split(digits, 3)


def test_permuted_tasks_keep_labels(digits):
    tasks = permuted(digits, 3, seed=0)
    assert torch.equal(tasks[0].train.x, digits.train.x)
    for task in tasks:
        assert task.classes == list(range(10))
        for part in ("train", "val", "test"):
            assert torch.equal(getattr(task, part).y, getattr(digits, part).y)
    assert not torch.equal(tasks[1].train.x, tasks[2].train.x)
    assert torch.equal(permuted(digits, 3, seed=0)[2].test.x, tasks[2].test.x)


def test_permuted_tasks_permute_every_split_and_channel_alike():
    def split(n, offset):
        pixel = torch.arange(16.0).reshape(1, 1, 4, 4)
        x = pixel + 1000 * (offset + torch.arange(n).reshape(-1, 1, 1, 1))
        return Split(torch.cat([x, x + 100], dim=1), torch.zeros(n, dtype=torch.int64))

    ds = Dataset(split(3, 0), split(2, 10), split(2, 20), 1, (2, 4, 4), "probe")
    task = permuted(ds, 2, seed=5)[1]
    perm = task.train.x[0, 0].flatten().long()
    assert sorted(perm.tolist()) == list(range(16)) and perm.tolist() != list(range(16))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(task, part).x, permute_pixels(getattr(ds, part).x, perm))


def test_pad_centres_every_image_and_puts_an_odd_margin_after_it():
    from geodesic.common.data import pad
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4) + 1
    padded = pad(Split(x, torch.tensor([0, 1])), 8).x
    assert padded.shape == (2, 1, 8, 8)
    assert torch.equal(padded[:, :, 2:5, 2:6], x)  # top (8-3)//2 = 2, left (8-4)//2 = 2
    assert padded.sum() == x.sum() and padded[:, :, 5:, :].abs().sum() == 0
    with pytest.raises(ValueError, match="size 2 is smaller than its 3x4 images"):
        pad(Split(x, torch.tensor([0, 1])), 2)


def test_size_pads_before_the_statistics(digits):
    padded = load_dataset("digits", size=32)
    assert padded.in_shape == (1, 32, 32) and len(padded.train) == len(digits.train)
    assert padded.train.x.mean().abs() < 1e-5 and (padded.train.x.std() - 1).abs() < 1e-4
    border = padded.train.x[:, :, 0, :]  # a raw zero, normalised with the padded statistics
    assert torch.allclose(border, border.flatten()[0].expand_as(border))
    inner = padded.test.x[:, :, 12:20, 12:20]  # the 8x8 images sit at rows/columns 12..19
    raw_corr = torch.corrcoef(torch.stack([inner.flatten(), digits.test.x.flatten()]))[0, 1]
    assert raw_corr > 0.9999  # the same pixels up to an affine normalisation


def test_mnist_real_padded_to_32(tmp_path, offline):
    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-real"
    if not (real / "MNIST" / "raw").is_dir():
        pytest.skip(f"no real MNIST at {real}")
    ds = load_dataset("mnist", real, size=32)
    assert ds.in_shape == (1, 32, 32) and (len(ds.train), len(ds.val), len(ds.test)) == (
        5040, 560, 1400)
