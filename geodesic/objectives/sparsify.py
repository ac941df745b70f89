"""Toward the p-sparse hyperplane, one sparsity level after another (application (i)).

At the current weights w and the current level p (a schedule p_1 < p_2 < ...):

    target(w) = P_p(w)        the magnitude projection of w at sparsity p
                              (:class:`~geodesic.masks.MagnitudeProjection`)
    v(w)      = target(w) - w

A level ends after the step at which ||target(w) - w|| <= tol, or after ``steps_per_level``
steps, whichever comes first. Then the mask is applied exactly (w <- P_p(w)), the milestone named
by the level as written in params (e.g. "0.9") is reached, and the pruned coordinates stay zero
for the rest of the path: the traversal moves in the subspace of the kept coordinates
(``subspace``: the metric is restricted to it, g -> P g P, and v -> P v), so every later step is
zero on them and a pruned coordinate never becomes nonzero again. When the step budget runs out mid-level, ``finish`` applies the
current level's mask; later levels are then not reached.

The path network just before each mask is kept in ``unmasked`` (by level name) so that its score
can be set beside the projection's (:class:`UnmaskedScore`).

Compose with :class:`~geodesic.objectives.Anchor` (v = target - w - alpha grad D, the anchored
form) and :class:`~geodesic.objectives.task_loss.TaskLoss` (the labelled hybrid) through
:class:`~geodesic.objectives.Combined`; see :func:`build_sparsify_objective`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from geodesic.evaluate import score_weights
from geodesic.masks import MagnitudeProjection
from geodesic.objectives.base import Anchor, Combined, Objective
from geodesic.objectives.task_loss import TaskLoss
from geodesic.traverse import Callback


def level_name(level: float) -> str:
    """A level as written in params: 0.9 -> "0.9"."""
    return repr(float(level))


class Sparsify(Objective):
    """v = P_p(w) - w over a schedule of sparsity levels p, masks applied exactly at level ends."""

    def __init__(self, projection: MagnitudeProjection, levels: list[float],
                 steps_per_level: int, tol: float):
        if list(levels) != sorted(set(levels)):
            raise ValueError(f"sparsity levels must increase strictly: {levels}")
        self.projection, self.levels = projection, [float(p) for p in levels]
        self.steps_per_level, self.tol = steps_per_level, tol
        self.level = torch.zeros((), dtype=torch.long)  # index of the current level
        self.level_steps = torch.zeros((), dtype=torch.long)  # steps taken in it
        self.keep = projection.full_mask()
        self.unmasked: dict[str, Tensor] = {}
        self._cache: tuple = (None, None, None)

    @property
    def current(self) -> float:
        """The current level's target sparsity (the last level once all are done)."""
        return self.levels[min(int(self.level), len(self.levels) - 1)]

    def target(self, w: Tensor) -> Tensor:
        key = (w._version, int(self.level))
        if self._cache[0] is not w or self._cache[1] != key:
            self._cache = (w, key, self.projection.project(w, self.current, self.keep))
        return self._cache[2]

    def distance(self, w: Tensor) -> float:
        return float((self.target(w) - w).norm())

    def direction(self, w: Tensor, local) -> Tensor:
        return self.target(w) - w

    def subspace(self) -> Tensor | None:
        return None if int(self.level) == 0 else self.keep

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        self.level_steps += 1
        if self.distance(w) <= self.tol or int(self.level_steps) >= self.steps_per_level:
            return self._end_level(w)
        return w, []

    def _end_level(self, w: Tensor) -> tuple[Tensor, list[str]]:
        name = level_name(self.current)
        self.unmasked[name] = w
        self.keep = self.projection.mask(w, self.current, self.keep)
        self.level += 1
        self.level_steps.zero_()
        return w * self.keep, [name]

    def done(self, w: Tensor) -> bool:
        return int(self.level) >= len(self.levels)

    def finish(self, w: Tensor) -> tuple[Tensor, list[str]]:
        return (w, []) if self.done(w) else self._end_level(w)

    def progress(self, w: Tensor) -> dict[str, float]:
        return {"sparsity": self.projection.sparsity(w), "target_sparsity": self.current,
                "distance": self.distance(w)}

    def state_dict(self) -> dict[str, Tensor]:
        return {"level": self.level, "level_steps": self.level_steps, "keep": self.keep}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.level = state["level"].clone()
        self.level_steps = state["level_steps"].clone()
        self.keep = state["keep"].to(self.keep.device).clone()
        self._cache = (None, None, None)


class UnmaskedScore(Callback):
    """Adds ``<key>_acc_unmasked``: the path network's accuracy at a level's end, just before
    its mask is applied (the milestone record itself scores the masked network)."""

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


def build_sparsify_objective(sparsify: Sparsify, anchor: float = 0.0,
                             task: TaskLoss | None = None, task_beta: float = 0.0) -> Objective:
    """v = (P_p(w) - w) - anchor grad D(w) - task_beta grad L_task(w); plain when both are 0."""
    parts: list[tuple[float, Objective]] = [(1.0, sparsify)]
    if anchor > 0:
        parts.append((anchor, Anchor()))
    if task is not None and task_beta > 0:
        parts.append((task_beta, task))
    return sparsify if len(parts) == 1 else Combined(parts)
