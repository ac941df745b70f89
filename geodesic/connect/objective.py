"""Connect: walk from a trained network w1 to an independently trained one w2.

    v(w) = w2 - w                                           (the paper's)
    v(w) = ||w1 - w2|| (w2 - w) / ||w2 - w||                (``constant_pull``)
    stop when ||w - w2|| <= tol,   tol = eps ||w1 - w2||       (or at the loop's step budget)

With v = w2 - w the trust-region step shrinks with the remaining distance wherever it is not
on the boundary of its ball: along a direction of curvature rho = v^T g v / ||v||^2 the
unconstrained minimiser has length beta ||v|| / (2 rho), so where rho > beta / 2 the distance
falls by the factor 1 - beta / (2 rho) a step and the walk crawls toward w2 geometrically. The
constant pull keeps ||v|| at its starting value, so that length does not shrink and the walk
arrives in finitely many steps; its first step is the paper's.

Each step is capped at the remaining distance, ||theta|| <= ||w2 - w||, so the walk never
overshoots w2 and oscillates around it at the scale of eta. When the walk has stopped within
tol, a final straight segment joins w2 (it is shorter than tol by construction); a walk stopped
by the step budget farther away ends where it stopped and is reported so.

Milestones: ``arrived`` (the point where the distance fell to tol, before the final segment) and
``joined`` (w2 itself), or ``stopped`` (the last point when the budget ran out first).
"""
from __future__ import annotations

import torch
from torch import Tensor

from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import Anchor, Objective, TowardTarget, combined


class Connect(TowardTarget):
    """v = w2 - w (or its constant-length form) with tolerance eps relative to ||w1 - w2||;
    see the module docstring."""

    def __init__(self, start: Tensor, target: Tensor, eps: float, constant_pull: bool = False):
        self.scale = float((target - start).norm())
        super().__init__(target, eps * self.scale)
        self.eps, self.constant_pull = eps, constant_pull
        self.remaining = self.scale
        self.end: Tensor | None = None  # the walk's own last point, before the final segment

    def direction(self, w: Tensor, local) -> Tensor:
        self.remaining = self.distance(w)  # the loop calls constrain next, at this same w
        v = self.target - w
        return v.mul_(self.scale / max(self.remaining, 1e-30)) if self.constant_pull else v

    def constrain(self, theta: Tensor) -> Tensor:
        norm = float(theta.norm())
        return theta * (self.remaining / norm) if norm > self.remaining else theta

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return w, ["arrived"] if self.done(w) else []

    def finish(self, w: Tensor) -> tuple[Tensor, list[str]]:
        self.end = w
        if self.done(w):
            return self.target.clone(), ["joined"]
        return w, ["stopped"]

    def progress(self, w: Tensor) -> dict[str, float]:
        distance = self.distance(w)
        return {"distance": distance, "distance_rel": distance / max(self.scale, 1e-30)}


class InterpolatedAnchor(Objective):
    """v = -grad_w D(f(w), z_t),  z_t = (1 - t) f(x; w1) + t f(x; w2),
    t = clip(1 - ||w2 - w|| / ||w2 - w1||, 0, 1): the anchor's pull aimed, instead of at w2's
    outputs, at the interpolation of the two endpoints' outputs at the walk's progress t (their
    logit ensemble at t = 1/2), so the function travels from f1 to f2 as the weights do.

    ``start`` is a metric over the same pool whose reference is w1 (its outputs are computed
    once per pool and BatchNorm state, as the walk's metric computes w2's); the walk's metric
    supplies w2's."""

    def __init__(self, connect: Connect, start: FunctionalMetric):
        self.connect, self.start = connect, start

    def progress_fraction(self, w: Tensor) -> float:
        return min(max(1.0 - self.connect.distance(w) / max(self.connect.scale, 1e-30), 0.0), 1.0)

    def direction(self, w: Tensor, local) -> Tensor:
        t = self.progress_fraction(w)
        z_t = torch.lerp(local.reference_outputs(self.start), local.reference_outputs(), t)
        return -local.distance_gradient(z_t)


def connect_objective(connect: Connect, metric: FunctionalMetric, w1: Tensor, anchor: float,
                      anchor_target: str = "w2") -> Objective:
    """v = (w2 - w) - alpha grad D(w) for a walk whose metric's reference is w2: D the output
    distance to w2's outputs (``w2``, :class:`Anchor`) or to their interpolation with w1's
    (``interpolated``, :class:`InterpolatedAnchor`); the connect objective alone when alpha = 0."""
    if anchor_target == "w2" or anchor == 0:
        return combined(connect, (anchor, Anchor()))
    start = FunctionalMetric(metric.model, metric.inputs, metric.output, metric.batch_size,
                             reference=w1, fast=False)
    return combined(connect, (anchor, InterpolatedAnchor(connect, start)))
