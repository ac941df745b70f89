"""Continual-learning task sequences cut from one :class:`~geodesic.common.data.Dataset`.

- :func:`class_split` (split-MNIST style): classes ``0..C-1`` in ``n_tasks`` consecutive equal
  groups; task ``t`` holds only the examples of its group.
- :func:`permuted` (permuted-MNIST style): every task holds all examples and all classes, with the
  pixel positions of every input shuffled by the task's fixed permutation (task 0: identity). The
  same permutation is applied to every channel and to the train, val and test splits.

Labels always stay the original class ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from geodesic.common.data import Dataset, Split


@dataclass
class Task:
    name: str
    classes: list[int]
    train: Split
    val: Split
    test: Split


def class_split(ds: Dataset, n_tasks: int) -> list[Task]:
    """Return ``n_tasks`` tasks of ``num_classes / n_tasks`` consecutive classes each.

    Raises ``ValueError`` when ``n_tasks`` does not divide ``ds.num_classes``.
    """
    if n_tasks < 1 or ds.num_classes % n_tasks:
        raise ValueError(f"n_tasks={n_tasks} does not divide num_classes={ds.num_classes} "
                         f"of {ds.name}")
    size = ds.num_classes // n_tasks
    tasks = []
    for t in range(n_tasks):
        classes = list(range(t * size, (t + 1) * size))
        wanted = torch.tensor(classes)
        train, val, test = (s.subset(torch.isin(s.y, wanted)) for s in (ds.train, ds.val, ds.test))
        tasks.append(Task(f"{ds.name}-classes-{classes[0]}-{classes[-1]}", classes,
                          train, val, test))
    return tasks


def permuted(ds: Dataset, n_tasks: int, seed: int) -> list[Task]:
    """Return ``n_tasks`` tasks over all classes: task 0 unchanged, the others pixel-permuted.

    The permutations of tasks ``1..n_tasks-1`` are drawn from a generator seeded with ``seed``.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks={n_tasks} must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    pixels = math.prod(ds.in_shape[1:])
    classes = list(range(ds.num_classes))
    tasks = []
    for t in range(n_tasks):
        if t == 0:
            train, val, test = ds.train, ds.val, ds.test
        else:
            perm = torch.randperm(pixels, generator=generator)
            train, val, test = (Split(permute_pixels(s.x, perm), s.y)
                                for s in (ds.train, ds.val, ds.test))
        tasks.append(Task(f"{ds.name}-permuted-{t}", classes, train, val, test))
    return tasks


def permute_pixels(x: Tensor, perm: Tensor) -> Tensor:
    """Return ``x`` of shape ``(N, C, *spatial)`` with its spatial positions reordered by ``perm``.

    Output position ``i`` (in row-major order) takes the value at input position ``perm[i]``.
    """
    flat = x.flatten(2)
    return flat[:, :, perm].reshape(x.shape)
