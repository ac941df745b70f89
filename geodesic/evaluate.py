"""Scoring networks and weight vectors.

    accuracy(model, split)          fraction of correct argmax predictions, and mean cross-entropy
    recalibrate_batchnorm(model, x) BatchNorm running statistics recomputed from inputs x with
                                    cumulative averaging (momentum=None), as Garipov et al. do at
                                    every evaluated point of a curve; a no-op without BatchNorm
    score_weights(model, space, w, split, recalibrate=x)
                                    the same for a flat weight vector w, on a copy of the model
    AccuracyCallback                held-out accuracy recorded along a traversal every k steps
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodesic.data import Split
from geodesic.metric import ParameterSpace, eval_mode
from geodesic.traverse import Callback

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BN_TYPES) for m in model.modules())


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode."""
    device = next(model.parameters()).device
    correct, loss = 0, 0.0
    with eval_mode(model):
        for start in range(0, len(split), batch_size):
            x = split.x[start:start + batch_size].to(device)
            y = split.y[start:start + batch_size].to(device)
            logits = model(x)
            correct += int((logits.argmax(-1) == y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
    return correct / len(split), loss / len(split)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 256) -> None:
    """Reset every BatchNorm's running mean/var and re-estimate them from ``x``."""
    layers = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    if not layers:
        return
    device = next(model.parameters()).device
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    was_training = model.training
    model.train()
    for start in range(0, len(x), batch_size):
        model(x[start:start + batch_size].to(device))
    model.train(was_training)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum


def score_weights(model: nn.Module, space: ParameterSpace, w: Tensor, split: Split,
                  recalibrate: Tensor | None = None) -> tuple[float, float]:
    """(accuracy, loss) of the network with flat weights ``w``; BatchNorm statistics are
    recomputed from ``recalibrate`` inputs when given. The model passed in is not changed."""
    probe = copy.deepcopy(model)
    space.set(probe, w)
    if recalibrate is not None:
        recalibrate_batchnorm(probe, recalibrate)
    return accuracy(probe, split)


class AccuracyCallback(Callback):
    """Adds ``<key>_acc`` and ``<key>_loss`` of the current point to every ``every``-th step
    record (and to milestone records), scoring a copy of the model; for traversals."""

    def __init__(self, model: nn.Module, space: ParameterSpace, split: Split, every: int,
                 key: str = "test", recalibrate: Tensor | None = None):
        self.model, self.space, self.split, self.every = model, space, split, every
        self.key, self.recalibrate = key, recalibrate

    def _score(self, record: dict, w: Tensor) -> None:
        acc, loss = score_weights(self.model, self.space, w, self.split, self.recalibrate)
        record[f"{self.key}_acc"], record[f"{self.key}_loss"] = acc, loss

    def on_step(self, record: dict, w: Tensor) -> None:
        if record["step"] % self.every == 0:
            self._score(record, w)

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None:
        self._score(record, w)
