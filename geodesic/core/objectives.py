"""The objective interface the traversal loop plugs into, and the objectives every
application builds on.

An objective supplies, at the current weights w:

    direction(w, local)   v(w), the secondary objective's direction (local: the metric at w)
    subspace()            None, or a 0/1 mask over w: the coordinates a step may move; the loop
                          restricts the metric and v to them (default: None, all coordinates)
    constrain(theta)      the step after the solve, e.g. clipped (default: unchanged)
    after_step(w)         (w', milestones): may project w (e.g. apply a mask at the end of a
                          sparsity level) and names the milestones reached at this step
    done(w)               the stop test
    finish(w)             (w', milestones) once the loop has ended (e.g. the exact final mask)
    progress(w)           numbers recorded along the path (e.g. distance to the target)
    state_dict()          tensors that a resumed traversal needs to continue identically

Objectives compose: ``Combined([(1.0, a), (0.1, b)])`` has direction sum_i beta_i v_i.
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor


class Objective:
    """Defaults shared by all objectives: no constraint, no milestones, no state."""

    grad_evals: int = 0  # gradient evaluations spent on directions, outside the metric

    def direction(self, w: Tensor, local) -> Tensor:
        raise NotImplementedError

    def subspace(self) -> Tensor | None:
        return None

    def constrain(self, theta: Tensor) -> Tensor:
        return theta

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return w, []

    def done(self, w: Tensor) -> bool:
        return False

    def finish(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return w, []

    def progress(self, w: Tensor) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class TowardTarget(Objective):
    """v = w_target - w; done when ||w - w_target|| <= tol."""

    def __init__(self, target: Tensor, tol: float):
        self.target, self.tol = target.detach(), tol
        self._measured: tuple[weakref.ref, int, float] | None = None

    def direction(self, w: Tensor, local) -> Tensor:
        return self.target - w

    def distance(self, w: Tensor) -> float:
        """||w - w_target||, computed once per point: the loop asks at the same w for the stop
        test and the record (a weak reference, so no past point is kept alive)."""
        if self._measured is not None:
            ref, version, value = self._measured
            if ref() is w and version == w._version:
                return value
        value = float((self.target - w).norm())
        self._measured = (weakref.ref(w), w._version, value)
        return value

    def done(self, w: Tensor) -> bool:
        return self.distance(w) <= self.tol

    def progress(self, w: Tensor) -> dict[str, float]:
        return {"distance": self.distance(w)}


class Anchor(Objective):
    """v = -grad D(w), D the output distance to the metric's reference network (no labels):
    pulls the path back toward the starting function where the local metric has drifted."""

    def direction(self, w: Tensor, local) -> Tensor:
        return -local.distance_gradient()


class Combined(Objective):
    """sum_i beta_i v_i. The first objective decides ``done``; constraints and ``after_step``
    apply in order; progress and state are merged under each part's index."""

    def __init__(self, parts: list[tuple[float, Objective]]):
        self.parts = parts

    @property
    def grad_evals(self) -> int:
        return sum(obj.grad_evals for _, obj in self.parts)

    def direction(self, w: Tensor, local) -> Tensor:
        return sum(beta * obj.direction(w, local) for beta, obj in self.parts)

    def subspace(self) -> Tensor | None:
        masks = [m for m in (obj.subspace() for _, obj in self.parts) if m is not None]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = out & m if out.dtype == torch.bool and m.dtype == torch.bool else out * m
        return out

    def constrain(self, theta: Tensor) -> Tensor:
        for _, obj in self.parts:
            theta = obj.constrain(theta)
        return theta

    def _chain(self, method: str, w: Tensor) -> tuple[Tensor, list[str]]:
        reached: list[str] = []
        for _, obj in self.parts:
            w, names = getattr(obj, method)(w)
            reached += names
        return w, reached

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return self._chain("after_step", w)

    def done(self, w: Tensor) -> bool:
        return self.parts[0][1].done(w)

    def finish(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return self._chain("finish", w)

    def progress(self, w: Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, obj in self.parts:
            out.update(obj.progress(w))
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {f"{i}.{k}": v for i, (_, obj) in enumerate(self.parts)
                for k, v in obj.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for i, (_, obj) in enumerate(self.parts):
            prefix = f"{i}."
            obj.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                 if k.startswith(prefix)})


def combined(first: Objective, *others: tuple[float, Objective]) -> Objective:
    """v = v_first + sum_i beta_i v_i over the ``others`` with beta_i > 0 (a part weighted 0
    costs nothing); ``first`` itself when none is."""
    parts = [(beta, obj) for beta, obj in others if beta > 0]
    return Combined([(1.0, first), *parts]) if parts else first


def anchored(objective: Objective, alpha: float) -> Objective:
    """v = v_objective - alpha grad D (the pull back to the starting function); the objective
    itself when alpha is 0."""
    return combined(objective, (alpha, Anchor()))
