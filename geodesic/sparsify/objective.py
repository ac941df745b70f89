"""Toward the p-sparse hyperplane, one sparsity level after another (application (i)).

At the current weights w and the current level p (a schedule p_1 < p_2 < ...):

    target(w) = P_p(w)        the projection of w at sparsity p
                              (:class:`~geodesic.sparsify.masks.MagnitudeProjection`), ranking
                              by |w_i| or, with a functional ``rule``, by |w_i| c_i with c
                              re-selected from the current point at each level's start
                              (:mod:`geodesic.sparsify.scores`)
    v(w)      = target(w) - w

A level's approach ends after the step at which ||target(w) - w|| <= tol, or after
``steps_per_level`` steps, whichever comes first. Then the mask is applied exactly
(w <- P_p(w)); with ``settle_steps`` > 0 the path then takes that many steps at the level with the
mask in force (there v = P_p(w) - w = 0, so only the composed directions act: with the anchor,
trust-region Gauss-Newton steps back toward the starting function inside the sparse subspace).
The level ends with the milestone named by the level as written in params (e.g. "0.9"), and the
pruned coordinates stay zero for the rest of the path: the traversal moves in the subspace of the kept coordinates
(``subspace``: the metric is restricted to it, g -> P g P, and v -> P v), so every later step is
zero on them and a pruned coordinate never becomes nonzero again. When the step budget runs out mid-level, ``finish`` applies the
current level's mask; later levels are then not reached.

The path network just before each mask is kept in ``unmasked`` (by level name) so that its score
can be set beside the projection's (:class:`UnmaskedScore`).

Compose with :class:`~geodesic.core.objectives.Anchor` (v = target - w - alpha grad D, the anchored
form) and :class:`~geodesic.core.task_loss.TaskLoss` (the labelled hybrid) through
:class:`~geodesic.core.objectives.Combined`; see :func:`build_sparsify_objective`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from geodesic.common.evaluate import score_weights
from geodesic.core.objectives import Anchor, Objective, combined
from geodesic.core.task_loss import TaskLoss
from geodesic.core.traverse import Callback
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.scores import target_factor


def level_name(level: float) -> str:
    """A level as written in params: 0.9 -> "0.9"."""
    return repr(float(level))


class Sparsify(Objective):
    """v = P_p(w) - w over a schedule of sparsity levels p, masks applied exactly at level ends."""

    def __init__(self, projection: MagnitudeProjection, levels: list[float],
                 steps_per_level: int, tol: float, settle_steps: int = 0,
                 rule: str = "magnitude"):
        if list(levels) != sorted(set(levels)):
            raise ValueError(f"sparsity levels must increase strictly: {levels}")
        self.projection, self.levels = projection, [float(p) for p in levels]
        self.steps_per_level, self.tol, self.settle_steps = steps_per_level, tol, settle_steps
        self.level = torch.zeros((), dtype=torch.long)  # index of the current level
        self.level_steps = torch.zeros((), dtype=torch.long)  # steps taken in its phase
        self.settling = torch.zeros((), dtype=torch.long)  # 1 once the level's mask is applied
        self.keep = projection.full_mask()
        self.rule, self.factor = rule, None
        self.factor_level = torch.full((), -1, dtype=torch.long)  # the level c was chosen at
        self.unmasked: dict[str, Tensor] = {}
        self._cache: tuple = (None, None, None)

    @property
    def current(self) -> float:
        """The current level's target sparsity (the last level once all are done)."""
        return self.levels[min(int(self.level), len(self.levels) - 1)]

    def target(self, w: Tensor) -> Tensor:
        key = (w._version, int(self.level), int(self.factor_level))
        if self._cache[0] is not w or self._cache[1] != key:
            self._cache = (w, key, self.projection.project(w, self.current, self.keep,
                                                           self.factor))
        return self._cache[2]

    def distance(self, w: Tensor) -> float:
        return float((self.target(w) - w).norm())

    def direction(self, w: Tensor, local) -> Tensor:
        if self.rule != "magnitude" and int(self.factor_level) != int(self.level):
            self.factor = target_factor(self.rule, local.metric, w, local.x,
                                        self.projection.segments)
            self.factor_level.fill_(int(self.level))
        return self.target(w) - w

    def subspace(self) -> Tensor | None:
        return self.keep if int(self.level) > 0 or int(self.settling) else None

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        self.level_steps += 1
        if int(self.settling):
            return self._next_level(w) if int(self.level_steps) >= self.settle_steps else (w, [])
        if self.distance(w) > self.tol and int(self.level_steps) < self.steps_per_level:
            return w, []
        w = self._apply_mask(w)
        if self.settle_steps > 0:
            self.settling.fill_(1)
            self.level_steps.zero_()
            return w, []
        return self._next_level(w)

    def _apply_mask(self, w: Tensor) -> Tensor:
        self.unmasked[level_name(self.current)] = w
        self.keep = self.projection.mask(w, self.current, self.keep, self.factor)
        return w * self.keep

    def _next_level(self, w: Tensor) -> tuple[Tensor, list[str]]:
        name = level_name(self.current)
        self.level += 1
        self.level_steps.zero_()
        self.settling.zero_()
        return w, [name]

    def done(self, w: Tensor) -> bool:
        return int(self.level) >= len(self.levels)

    def finish(self, w: Tensor) -> tuple[Tensor, list[str]]:
        if self.done(w):
            return w, []
        return self._next_level(w if int(self.settling) else self._apply_mask(w))

    def progress(self, w: Tensor) -> dict[str, float]:
        return {"sparsity": self.projection.sparsity(w), "target_sparsity": self.current,
                "distance": self.distance(w)}

    def state_dict(self) -> dict[str, Tensor]:
        state = {"level": self.level, "level_steps": self.level_steps,
                 "settling": self.settling, "keep": self.keep, "factor_level": self.factor_level}
        return state if self.factor is None else {**state, "factor": self.factor}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.level = state["level"].clone()
        self.level_steps = state["level_steps"].clone()
        self.settling = state["settling"].clone()
        self.keep = state["keep"].to(self.keep.device).clone()
        if "factor_level" in state:
            self.factor_level = state["factor_level"].clone()
        self.factor = state["factor"].to(self.keep.device).clone() if "factor" in state else None
        self._cache = (None, None, None)


class UnmaskedScore(Callback):
    """Adds ``<key>_acc_unmasked``, the path network's accuracy at a level's end just before
    its mask is applied (the milestone record itself scores the masked network), and
    ``mask_distance``, the Euclidean length of that final projection."""

    def __init__(self, objective: Sparsify, model, space, split, key: str = "test",
                 recalibrate: Tensor | None = None):
        self.objective, self.model, self.space, self.split = objective, model, space, split
        self.key, self.recalibrate = key, recalibrate

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None:
        unmasked = self.objective.unmasked.pop(name, None)
        if unmasked is not None:
            acc, _ = score_weights(self.model, self.space, unmasked, self.split,
                                   self.recalibrate)
            record[f"{self.key}_acc_unmasked"] = acc
            record["mask_distance"] = float((unmasked - w).norm())


def build_sparsify_objective(sparsify: Sparsify, anchor: float = 0.0,
                             task: TaskLoss | None = None, task_beta: float = 0.0) -> Objective:
    """v = (P_p(w) - w) - anchor grad D(w) - task_beta grad L_task(w); plain when both are 0."""
    return combined(sparsify, (anchor, Anchor()), (task_beta if task is not None else 0.0, task))
