"""Scoring networks and weight vectors.

    accuracy(model, split)          fraction of correct argmax predictions, and mean cross-entropy
    recalibrate_batchnorm(model, x) BatchNorm running statistics recomputed from inputs x with
                                    cumulative averaging (momentum=None), as Garipov et al. do at
                                    every evaluated point of a curve; a no-op without BatchNorm
    score_weights(model, space, w, split, recalibrate=x)
                                    the same for a flat weight vector w, on a copy of the model
    AccuracyCallback                held-out accuracy recorded along a traversal every k steps
    BatchNormRefresh                BatchNorm statistics of the metric's network kept current
    path_metrics(points, ...)       min / mean / end accuracy, loss barrier, lengths of a path
    score_curve(model, curve, ts)   a curve between two networks scored at N points
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodesic.common.data import Split
from geodesic.core.metric import FunctionalMetric
from geodesic.core.space import ParameterSpace, eval_mode
from geodesic.core.traverse import Callback

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BN_TYPES) for m in model.modules())


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 1024,
             outputs: Callable[[Tensor], Tensor] | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode, of its logits
    or of ``outputs(logits)`` (e.g. restricted to a task's classes); NaN on an empty split."""
    if len(split) == 0:
        return math.nan, math.nan
    device = next(model.parameters()).device
    correct, loss = 0, 0.0
    with eval_mode(model):
        for start in range(0, len(split), batch_size):
            x = split.x[start:start + batch_size].to(device)
            y = split.y[start:start + batch_size].to(device)
            logits = model(x) if outputs is None else outputs(model(x))
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
    return accuracy(network_at(model, space, w, recalibrate), split)


def network_at(model: nn.Module, space: ParameterSpace, w: Tensor,
               recalibrate: Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with flat weights ``w``, its BatchNorm statistics recomputed from
    ``recalibrate`` inputs when given."""
    probe = copy.deepcopy(model)
    space.set(probe, w)
    if recalibrate is not None:
        recalibrate_batchnorm(probe, recalibrate)
    return probe


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


class BatchNormRefresh(Callback):
    """Recomputes the BatchNorm statistics of ``model`` at the current weights when a traversal
    starts (or resumes) and every ``every`` steps. The functional metric reads the model's
    buffers, so on a BatchNorm network its g(w) then uses statistics of the current point rather
    than of the starting network. A no-op without BatchNorm. Resumed runs repeat uninterrupted
    ones exactly when the checkpoint interval is a multiple of ``every``."""

    def __init__(self, model: nn.Module, space: ParameterSpace, x: Tensor, every: int):
        self.model, self.space, self.x, self.every = model, space, x, every
        self.active = has_batchnorm(model)

    def _refresh(self, w: Tensor) -> None:
        if self.active:
            self.space.set(self.model, w)
            recalibrate_batchnorm(self.model, self.x)

    def on_start(self, path, w: Tensor) -> None:
        self._refresh(w)

    def on_step(self, record: dict, w: Tensor) -> None:
        if record["step"] % self.every == 0:
            self._refresh(w)


# --- paths between two networks --------------------------------------------------------------


def _trapezoid(y: list[float], x: list[float]) -> float:
    return sum(0.5 * (y[i] + y[i + 1]) * (x[i + 1] - x[i]) for i in range(len(x) - 1))


def path_metrics(points: list[dict], length: float, functional_length: float,
                 key: str = "test") -> dict[str, float]:
    """Summary of a path evaluated at ``points`` (in order from w1 to w2), each a dict with
    ``position`` (Euclidean arc length from w1) and ``<key>_acc``, ``<key>_loss``:

        min_acc    min_i acc_i                     end_acc  acc at the last point
        mean_acc   (1/L) integral acc ds           (trapezoid rule over arc length s, L = length)
        barrier    max_i loss_i - (loss_first + loss_last) / 2
        length     Euclidean length L              functional_length  integral sqrt(phi'^T g phi')
    """
    acc = [p[f"{key}_acc"] for p in points]
    loss = [p[f"{key}_loss"] for p in points]
    s = [p["position"] for p in points]
    span = s[-1] - s[0]
    mean = _trapezoid(acc, s) / span if span > 0 else sum(acc) / len(acc)
    return {"min_acc": min(acc), "mean_acc": mean, "end_acc": acc[-1],
            "barrier": max(loss) - 0.5 * (loss[0] + loss[-1]), "length": length,
            "functional_length": functional_length}


def score_curve(model: nn.Module, space: ParameterSpace, curve, ts: list[float],
                splits: dict[str, Split], recalibrate: Tensor | None, metric_inputs: Tensor,
                output: str = "logits", on_point=None) -> tuple[list[dict], float, float]:
    """Evaluate ``curve`` (``point(t)``, ``tangent(t)``) at the parameters ``ts`` (increasing,
    from 0 to 1). At each point BatchNorm statistics are recomputed from ``recalibrate``, every
    split is scored (``<name>_acc``, ``<name>_loss``), and the Euclidean and functional speeds
    ||phi'(t)|| and sqrt(phi'(t)^T g(phi(t)) phi'(t)) are measured (g on ``metric_inputs``).
    Returns (points, length, functional_length); positions and lengths are trapezoid integrals
    of the speeds over t. ``on_point(index, point)`` sees each point once positions are known."""
    points: list[dict] = []
    for i, t in enumerate(ts):
        probe = copy.deepcopy(model)
        w = curve.point(t)
        space.set(probe, w)
        if recalibrate is not None:
            recalibrate_batchnorm(probe, recalibrate)
        point = {"t": float(t)}
        for name, split in splits.items():
            point[f"{name}_acc"], point[f"{name}_loss"] = accuracy(probe, split)
        tangent = curve.tangent(t)
        local = FunctionalMetric(probe, metric_inputs, output=output).at(w, metric_inputs)
        point["speed"] = float(tangent.norm())
        point["functional_speed"] = float(local.quadratic(tangent).clamp_min(0).sqrt())
        points.append(point)
    tt = [p["t"] for p in points]
    for i, p in enumerate(points):
        p["position"] = _trapezoid([q["speed"] for q in points[:i + 1]], tt[:i + 1])
        if on_point is not None:
            on_point(i, p)
    return (points, points[-1]["position"],
            _trapezoid([p["functional_speed"] for p in points], tt))
