"""Datasets as in-memory tensors: ``load_dataset(name) -> Dataset`` with train/val/test splits.

Contract: inputs are float32 of shape ``(N, *in_shape)``, normalised per channel with the mean
and standard deviation of the *training* split; labels are int64 class ids ``0..C-1``.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, ``(1, 8, 8)``, values
  0..16), needs no network. It has no official test split, so a fixed stratified 20% (seed 0,
  whatever ``seed`` is) is the test split.
- ``mnist`` ``(1, 28, 28)``, ``cifar10`` and ``cifar100`` ``(3, 32, 32)``: torchvision's files
  under ``root``, official train and test splits. They are downloaded only when missing.

``size`` N > 0 zero-pads every image, centred, to NxN before the statistics are taken (MNIST's
28x28 digits padded to 32x32 for the VGGs). Validation is carved from the training split with
``seed``. Subsets (validation, limits) are stratified: any prefix of :func:`stratified_order`
holds the classes in their overall proportions.
Materialised datasets are written with :func:`save_dataset` (safetensors, no pickle) and read back
with :func:`load_saved`. Continual-learning task splits live in :mod:`geodesic.continual.tasks`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from geodesic.core.registry import Registry

DIGITS_TEST_FRACTION = 0.2
FIXED_SEED = 0


@dataclass
class Split:
    """Inputs ``x`` of shape ``(N, *in_shape)`` and labels ``y`` of shape ``(N,)``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: Tensor) -> "Split":
        """Return the examples at ``index`` (integer indices or a boolean mask)."""
        return Split(self.x[index], self.y[index])


def examples_from(data, limit: int | None = None, labels: bool = True) -> Split:
    """The examples of ``data`` as one :class:`Split`, at most ``limit`` of them: ``data`` is a
    Split, an input tensor, an ``(x, y)`` pair, or an iterable of such batches (a
    ``DataLoader``). ``labels=False`` accepts inputs alone (their labels are then -1)."""
    if isinstance(data, Split):
        parts = [(data.x, data.y)]
    elif isinstance(data, Tensor):
        parts = [(data, None)]
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        parts = [(data[0], data[1])]
    else:
        parts, seen = [], 0
        for batch in data:
            x, y = (batch, None) if isinstance(batch, Tensor) else (batch[0], batch[1])
            parts.append((x, y))
            seen += len(x)
            if limit is not None and seen >= limit:
                break
    if not parts:
        raise ValueError("no examples: the data is empty")
    x = torch.cat([p[0] for p in parts])[:limit]
    if any(p[1] is None for p in parts):
        if labels:
            raise ValueError("labels are needed here: pass (x, y) pairs or batches of them")
        y = torch.full((len(x),), -1, dtype=torch.long)
    else:
        y = torch.cat([torch.as_tensor(p[1]) for p in parts])[:limit]
    return Split(x, y)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_shape: tuple
    name: str


class Raw(NamedTuple):
    """A dataset as read from disk: official train and test splits, unnormalised."""

    train: Split
    test: Split
    num_classes: int


Loader = Callable[[Path], Raw]
DATASETS: Registry[Loader] = Registry("dataset")


def load_dataset(name: str, root: str | Path = "data/raw", val_fraction: float = 0.1,
                 seed: int = 0, train_limit: int = 0, test_limit: int = 0,
                 size: int = 0) -> Dataset:
    """Return dataset ``name`` split into train/val/test and normalised with train statistics.

    ``train_limit`` (0: all) first keeps that many examples of the official training split, then
    ``val_fraction`` of what is kept becomes the validation split; both draws use ``seed``.
    ``test_limit`` (0: all) keeps that many test examples, the same ones for every seed.
    ``size`` (0: native) pads every image with zeros, centred, to ``size`` x ``size``.
    """
    raw = DATASETS.get(name)(Path(root))
    if size:
        raw = Raw(pad(raw.train, size, name), pad(raw.test, size, name), raw.num_classes)
    pool = _limit(raw.train, train_limit, torch.Generator().manual_seed(seed))
    train, val = _hold_out(pool, round(val_fraction * len(pool)),
                           torch.Generator().manual_seed(seed + 1))
    test = _limit(raw.test, test_limit, torch.Generator().manual_seed(FIXED_SEED))
    dims = [0] + list(range(2, train.x.dim()))
    mean = train.x.mean(dim=dims, keepdim=True)[0]
    std = train.x.std(dim=dims, keepdim=True)[0].clamp_min(1e-8)
    train, val, test = (Split(((s.x - mean) / std).float().contiguous(), s.y.long())
                        for s in (train, val, test))
    return Dataset(train, val, test, raw.num_classes, tuple(train.x.shape[1:]), name)


def pad(split: Split, size: int, name: str = "dataset") -> Split:
    """``split`` with every image zero-padded to ``size`` x ``size``, centred (an odd margin
    puts its extra row or column after the image). Images larger than ``size`` are refused."""
    height, width = split.x.shape[-2:]
    if size < max(height, width):
        raise ValueError(f"{name}: size {size} is smaller than its {height}x{width} images; "
                         f"allowed: 0 (native) or a size >= {max(height, width)}")
    top, left = (size - height) // 2, (size - width) // 2
    margins = (left, size - width - left, top, size - height - top)
    return Split(torch.nn.functional.pad(split.x, margins), split.y)


def stratified_order(y: Tensor, generator: torch.Generator) -> Tensor:
    """Return a random permutation of ``range(len(y))`` whose every prefix is class-balanced.

    Each example's key is its (random) rank within its class divided by the class size; sorting
    by the key interleaves the classes in proportion to their frequencies.
    """
    perm = torch.randperm(len(y), generator=generator)
    key = torch.empty(len(y))
    for c in y.unique():
        members = perm[y[perm] == c]
        key[members] = (torch.arange(len(members)) + 0.5) / len(members)
    return perm[torch.argsort(key[perm], stable=True)]


def _hold_out(split: Split, n: int, generator: torch.Generator) -> tuple[Split, Split]:
    """Return ``(rest, held_out)``: ``n`` stratified random examples and the others, in order."""
    order = stratified_order(split.y, generator)
    return split.subset(order[n:].sort().values), split.subset(order[:n].sort().values)


def _limit(split: Split, limit: int, generator: torch.Generator) -> Split:
    return split if limit <= 0 or limit >= len(split) else _hold_out(split, limit, generator)[1]


def batches(split: Split, batch_size: int,
            generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` minibatches covering ``split`` once, the last one possibly smaller.

    The order is a permutation drawn from ``generator``; without one the split's own order.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield split.x[index], split.y[index]


def save_dataset(ds: Dataset, path: str | Path) -> None:
    """Write ``ds`` to one safetensors file at ``path`` (tensors plus string metadata)."""
    tensors = {f"{part}.{field}": getattr(getattr(ds, part), field).contiguous()
               for part in ("train", "val", "test") for field in ("x", "y")}
    # one metadata entry: safetensors writes several in a random order, and the file's bytes
    # must follow its content alone (DVC and the checkpoint keys hash them)
    metadata = {"dataset": json.dumps({"name": ds.name, "num_classes": ds.num_classes,
                                       "in_shape": list(ds.in_shape)}, sort_keys=True)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def load_saved(path: str | Path) -> Dataset:
    """Return the :class:`Dataset` that :func:`save_dataset` wrote to ``path``."""
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads(f.metadata()["dataset"])
    tensors = load_file(str(path))
    train, val, test = (Split(tensors[f"{part}.x"], tensors[f"{part}.y"])
                        for part in ("train", "val", "test"))
    return Dataset(train, val, test, metadata["num_classes"], tuple(metadata["in_shape"]),
                   metadata["name"])


@DATASETS.register("digits")
def digits(root: Path) -> Raw:
    """Return scikit-learn's 8x8 digits with a fixed stratified 20% test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    full = Split(torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8),
                 torch.tensor(bunch.target, dtype=torch.int64))
    train, test = _hold_out(full, round(DIGITS_TEST_FRACTION * len(full)),
                            torch.Generator().manual_seed(FIXED_SEED))
    return Raw(train, test, 10)


@dataclass(frozen=True)
class RawFiles:
    """Where torchvision keeps a data set: ``torchvision.datasets.<cls_name>`` reads ``files``
    under ``root/folder``."""

    cls_name: str
    folder: str
    files: tuple[str, ...]


TORCHVISION: dict[str, RawFiles] = {}


def download(name: str, root: Path) -> None:
    """Download data set ``name``'s files into ``root`` through torchvision."""
    import torchvision.datasets

    spec = TORCHVISION[name]
    cls = getattr(torchvision.datasets, spec.cls_name)
    try:
        cls(str(root), train=True, download=True)
    except Exception as err:
        raise _missing(name, root / spec.folder, spec.files, "downloading them failed",
                       err) from err


def _torchvision(name: str, spec: RawFiles, num_classes: int) -> None:
    """Register loader ``name`` for the torchvision files of ``spec`` under ``root``."""
    TORCHVISION[name] = spec

    @DATASETS.register(name)
    def load(root: Path) -> Raw:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, spec.cls_name)
        where = root / spec.folder
        if not all((where / f).is_file() for f in spec.files):
            download(name, root)
        try:
            train, test = cls(str(root), train=True), cls(str(root), train=False)
        except (RuntimeError, AssertionError, ValueError) as err:  # torchvision's format checks
            raise _missing(name, where, spec.files, "torchvision rejected them", err) from err
        return Raw(_to_split(train), _to_split(test), num_classes)

    load.__doc__ = f"Return torchvision's {spec.cls_name} from ``root/{spec.folder}``."


def _to_split(tv_dataset) -> Split:
    x = torch.as_tensor(tv_dataset.data)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return Split(x.float(), torch.as_tensor(tv_dataset.targets, dtype=torch.int64))


def _missing(name: str, where: Path, files, reason: str, err: Exception) -> FileNotFoundError:
    detail = (str(err).strip().splitlines() or [""])[0]
    return FileNotFoundError(
        f"{name}: no usable files under {where} ({reason}: {type(err).__name__}: {detail}). "
        f"Put torchvision's files there: {', '.join(str(where / f) for f in files)}")


_torchvision("mnist", RawFiles("MNIST", "MNIST/raw", (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")), 10)
_torchvision("cifar10", RawFiles("CIFAR10", "cifar-10-batches-py", (
    *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")), 10)
_torchvision("cifar100", RawFiles("CIFAR100", "cifar-100-python", ("train", "test", "meta")), 100)
