"""Connect: walk from a trained network w1 to an independently trained one w2.

    v(w) = w2 - w
    stop when ||w - w2|| <= tol,   tol = eps ||w1 - w2||       (or at the loop's step budget)

Each step is capped at the remaining distance, ||theta|| <= ||w2 - w||, so the walk never
overshoots w2 and oscillates around it at the scale of eta. When the walk has stopped within
tol, a final straight segment joins w2 (it is shorter than tol by construction); a walk stopped
by the step budget farther away ends where it stopped and is reported so.

Milestones: ``arrived`` (the point where the distance fell to tol, before the final segment) and
``joined`` (w2 itself), or ``stopped`` (the last point when the budget ran out first).
"""
from __future__ import annotations

from torch import Tensor

from geodesic.core.objectives import TowardTarget


class Connect(TowardTarget):
    """v = w2 - w with tolerance eps relative to ||w1 - w2||; see the module docstring."""

    def __init__(self, start: Tensor, target: Tensor, eps: float):
        self.scale = float((target - start).norm())
        super().__init__(target, eps * self.scale)
        self.eps = eps
        self.remaining = self.scale
        self.end: Tensor | None = None  # the walk's own last point, before the final segment

    def direction(self, w: Tensor, local) -> Tensor:
        self.remaining = self.distance(w)  # the loop calls constrain next, at this same w
        return self.target - w

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
