"""Curves between two networks w1 and w2, the baselines of mode connectivity.

    line      phi(t) = (1 - t) w1 + t w2
    bezier    phi(t) = (1 - t)^2 w1 + 2 t (1 - t) theta + t^2 w2      (quadratic Bezier)

with tangents phi'(t) (for lengths). The Bezier middle point theta is trained as Garipov et al.
(2018, "Loss surfaces, mode connectivity, and fast ensembling of DNNs") do: starting from
theta = (w1 + w2) / 2, minimise E_{t ~ U(0,1)} L(phi(t)) by SGD with momentum, one fresh t per
minibatch, the end points fixed; weight decay acts on phi(t) (0.5 wd ||phi(t)||^2); the learning
rate stays constant for the first half of training, falls linearly to 1% by 90%, then stays there.
Networks with BatchNorm train with batch statistics, as there. One step costs one forward and one
backward pass on a minibatch: one gradient evaluation, the unit ``evals`` counts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from geodesic.common.data import Split
from geodesic.core.path import StateCheckpoints
from geodesic.core.registry import Registry
from geodesic.core.space import ParameterSpace

log = logging.getLogger(__name__)
CURVES: Registry[Callable] = Registry("curve")


@dataclass
class Line:
    w1: Tensor
    w2: Tensor

    def point(self, t: float) -> Tensor:
        return (1.0 - t) * self.w1 + t * self.w2

    def tangent(self, t: float) -> Tensor:
        return self.w2 - self.w1


@dataclass
class QuadraticBezier:
    w1: Tensor
    w2: Tensor
    theta: Tensor

    @classmethod
    def through_midpoint(cls, w1: Tensor, w2: Tensor) -> "QuadraticBezier":
        """The initialisation of training: theta = (w1 + w2) / 2 makes phi the straight line."""
        return cls(w1, w2, 0.5 * (w1 + w2))

    def point(self, t: float | Tensor, theta: Tensor | None = None) -> Tensor:
        theta = self.theta if theta is None else theta
        return (1 - t) ** 2 * self.w1 + 2 * t * (1 - t) * theta + t ** 2 * self.w2

    def tangent(self, t: float) -> Tensor:
        return 2 * (1 - t) * (self.theta - self.w1) + 2 * t * (self.w2 - self.theta)


@dataclass
class Plane:
    """Orthonormal coordinates on the plane through w1, w2 and a third point p (the Bezier
    middle point): origin w1, e1 = (w2 - w1) / ||w2 - w1||, e2 the part of p - w1 orthogonal
    to e1, normalised. ``coordinates(w)`` = (x, y, off) with w - w1 = x e1 + y e2 + r,
    off = ||r|| the distance from the plane."""

    origin: Tensor
    e1: Tensor
    e2: Tensor

    @classmethod
    def through(cls, w1: Tensor, w2: Tensor, p: Tensor) -> "Plane":
        e1 = (w2 - w1) / (w2 - w1).norm()
        u = (p - w1) - (p - w1).dot(e1) * e1
        return cls(w1, e1, u / u.norm().clamp_min(1e-30))

    def coordinates(self, w: Tensor) -> tuple[float, float, float]:
        d = w - self.origin
        x, y = float(d.dot(self.e1)), float(d.dot(self.e2))
        return x, y, float((d - x * self.e1 - y * self.e2).norm())

    def point(self, x: float, y: float) -> Tensor:
        return self.origin + x * self.e1 + y * self.e2


@dataclass
class BezierTraining:
    steps: int = 1000
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    log_every: int = 50


def garipov_lr(base: float, fraction: float) -> float:
    """Constant to 50% of training, linear to 1% of ``base`` at 90%, then 1%."""
    if fraction <= 0.5:
        return base
    if fraction <= 0.9:
        return base * (1.0 - 0.99 * (fraction - 0.5) / 0.4)
    return 0.01 * base


@dataclass
class Fitted:
    """A curve and what fitting it cost (gradient evaluations, seconds)."""

    curve: Line | QuadraticBezier
    records: list[dict] = field(default_factory=list)  # every ``log_every`` steps
    evals: int = 0
    seconds: float = 0.0


@CURVES.register("linear")
def fit_line(model: nn.Module, space: ParameterSpace, w1: Tensor, w2: Tensor, train: Split,
             cfg: BezierTraining, on_record: Callable[[dict], None] | None = None,
             checkpoints: StateCheckpoints | None = None) -> Fitted:
    """The straight line: nothing to fit."""
    return Fitted(Line(w1, w2))


@CURVES.register("bezier")
def fit_bezier(model: nn.Module, space: ParameterSpace, w1: Tensor, w2: Tensor, train: Split,
               cfg: BezierTraining, on_record: Callable[[dict], None] | None = None,
               checkpoints: StateCheckpoints | None = None) -> Fitted:
    """Train the middle point of a quadratic Bezier curve from w1 to w2 on ``train``. With
    ``checkpoints``, the training state (theta, momentum, generator, step, the records) is
    saved every ``checkpoints.every`` steps and at the end; a call that finds it continues
    from it as if never stopped (a finished training returns at once)."""
    checkpoints = checkpoints or StateCheckpoints(None, 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve = QuadraticBezier.through_midpoint(w1, w2)
    theta = curve.theta.clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=cfg.lr, momentum=cfg.momentum)
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # batch statistics train-side
    device = w1.device
    was_training = model.training
    model.train()
    records, total, first, elapsed = [], 0.0, 0, 0.0
    logging_seconds = 0.0  # logging is not the method's compute
    state = checkpoints.latest()
    if state is not None:
        with torch.no_grad():
            theta.copy_(state["theta"])
            for name, buffer in buffers.items():
                buffer.copy_(state["buffers"][name])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        records, total, first = state["records"], state["total"], state["step"]
        elapsed, logging_seconds = state["elapsed"], state["logging_seconds"]
    t0 = time.perf_counter() - elapsed
    last_log = t0
    try:
        for step in range(first + 1, cfg.steps + 1):
            for group in opt.param_groups:
                group["lr"] = garipov_lr(cfg.lr, (step - 1) / cfg.steps)
            idx = torch.randint(len(train), (min(cfg.batch_size, len(train)),), generator=gen)
            x, y = train.x[idx].to(device), train.y[idx].to(device)
            t = float(torch.rand((), generator=gen))
            w = curve.point(t, theta)
            loss = F.cross_entropy(functional_call(model, {**space.unflatten(w), **buffers},
                                                   (x,)), y)
            objective = loss + 0.5 * cfg.weight_decay * w.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            total += float(loss.detach())
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                record = {"step": step, "evals": step,
                          "train_loss": total / (step % cfg.log_every or cfg.log_every),
                          "lr": opt.param_groups[0]["lr"], "seconds": now - t0 - logging_seconds}
                total = 0.0
                records.append(record)
                if on_record is not None:
                    on_record(record)
                if now - last_log >= 10.0:
                    last_log, rate = now, step / max(record["seconds"], 1e-9)
                    log.info("bezier step %d/%d  %.1f steps/s  %.0fs left  train_loss %.4f",
                             step, cfg.steps, rate, (cfg.steps - step) / rate,
                             record["train_loss"])
                logging_seconds += time.perf_counter() - now
            if checkpoints.due(step) or step == cfg.steps:
                checkpoints.save(step, {
                    "theta": theta, "buffers": buffers, "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "records": records, "total": total,
                    "step": step, "elapsed": time.perf_counter() - t0,
                    "logging_seconds": logging_seconds}, final=step == cfg.steps)
    finally:
        model.train(was_training)
    curve.theta = theta.detach()
    return Fitted(curve, records, cfg.steps, records[-1]["seconds"] if records else 0.0)
