"""The hybrid application: one walk that sparsifies a network, teaches it a new task and keeps
its earlier tasks (the two jobs of the paper's title at once).

The problem (:func:`build_problem`): the class split of a data set into ``n_tasks`` tasks; the
base network is trained on the union of tasks 0..T-2 (``train_base``); task T-1 is new. The
memory holds ``memory_per_class`` training examples of every earlier class, each judged on its
own task's outputs (the scenario's mask).

The geodesic (:func:`geodesic`): from the base weights w0, with the
metric g on the memory (:class:`~geodesic.continual.objective.MemoryMetric`, the base function's
outputs on earlier inputs), the direction

    v(w) = (P_p(w) - w) - beta grad L_new(w) - alpha grad D(w)

composed as ``anchored(Combined([(1, Sparsify), (beta, LearnTask)]), alpha)``: the sparsity
schedule's projection (:class:`~geodesic.sparsify.objective.Sparsify`, which decides the end
and applies each level's mask), the new task's minibatch gradient and the pull back to the base
function on the memory. The walk is the traversal loop of every application; nothing in it
knows it serves this one. The cumulative evaluations at each level's milestone are the budgets
of the baselines at that level (:mod:`geodesic.hybrid.baselines`).

Every method's network at each level is scored per task (``score``): test and validation
accuracy of each task on its outputs, their means over the earlier tasks (``old_acc``), the new
task (``new_acc``) and all tasks (``acc``).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from functools import reduce

import torch
from torch import Tensor, nn

from geodesic.common.data import Dataset
from geodesic.common.evaluate import AccuracyCallback
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train
from geodesic.continual.objective import LearnTask, MemoryMetric
from geodesic.continual.protocol import (EarlyStop, MaskedModel, Memory, TaskBatches, empty_memory,
                                         join, output_mask, task_memory, task_scores)
from geodesic.continual.tasks import Task, class_split
from geodesic.core.objectives import Combined, anchored
from geodesic.core.space import ParameterSpace
from geodesic.core.traverse import walk
from geodesic.hybrid.settings import HybridSettings
from geodesic.sparsify.baselines import LevelResult
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import Sparsify
from geodesic.sparsify.run import MilestoneWeights, path_levels

log = logging.getLogger(__name__)
NO_BUDGET = sys.maxsize  # the new task's own stop never ends the walk: the levels do


@dataclass
class HybridProblem:
    """The tasks (the last one new), their output masks and the memory of the earlier ones."""

    tasks: list[Task]
    masks: list[Tensor]
    memory: Memory

    @property
    def new(self) -> int:
        return len(self.tasks) - 1


def build_problem(data: Dataset, s: HybridSettings) -> HybridProblem:
    tasks = class_split(data, s.n_tasks)
    masks = [output_mask(s.scenario, task, data.num_classes) for task in tasks]
    memory = reduce(join, [task_memory(task, mask, s.memory_per_class, s.seed + j)
                           for j, (task, mask) in enumerate(zip(tasks[:-1], masks[:-1]))],
                    empty_memory(data.train, data.num_classes))
    return HybridProblem(tasks, masks, memory)


def earlier_tasks(data: Dataset, problem: HybridProblem) -> Dataset:
    """The data set restricted to the classes of every task but the new one."""
    classes = torch.tensor([c for task in problem.tasks[:-1] for c in task.classes])
    parts = {name: getattr(data, name).subset(torch.isin(getattr(data, name).y, classes))
             for name in ("train", "val", "test")}
    return dataclasses.replace(data, **parts)


def train_base(model: nn.Module, data: Dataset, problem: HybridProblem, settings: TrainSettings,
               s: HybridSettings, device, directory=None) -> nn.Module:
    """Train ``model`` in place on the earlier tasks for ``s.base_epochs`` epochs."""
    cfg = dataclasses.replace(settings, epochs=s.base_epochs)
    train(model, earlier_tasks(data, problem), cfg, s.seed, device=device, directory=directory)
    return model


@dataclass
class HybridContext:
    """What every method shares: the base network, the problem and the settings."""

    model: nn.Module
    problem: HybridProblem
    settings: HybridSettings
    space: ParameterSpace = field(init=False)
    projection: MagnitudeProjection = field(init=False)
    base: Tensor = field(init=False)
    budgets: dict[str, float] = field(default_factory=dict)  # cumulative evals per level

    def __post_init__(self):
        self.space = ParameterSpace(self.model)
        self.projection = MagnitudeProjection.build(self.model, self.space)
        self.base = self.space.get(self.model)
        device = self.base.device
        p = self.problem
        self.memory = Memory(p.memory.x.to(device), p.memory.y.to(device),
                             p.memory.masks.to(device))


def hybrid_objective(ctx: HybridContext, metric: MemoryMetric) -> Combined:
    """anchored(Combined([(1, Sparsify), (beta, LearnTask)]), alpha): v = (P_p(w) - w)
    - beta grad L_new - alpha grad D."""
    s, p = ctx.settings, ctx.problem
    sparsify = Sparsify(ctx.projection, s.levels, s.steps_per_level, s.level_tol, s.settle_steps)
    learn = LearnTask(metric, TaskBatches(p.tasks[p.new].train, s.batch_size, s.seed),
                      p.masks[p.new], p.tasks[p.new].val, EarlyStop(s.stop_every, 0), NO_BUDGET)
    return anchored(Combined([(1.0, sparsify), (s.task_beta, learn)]), s.anchor)


def task_views(ctx: HybridContext, split: str, every: int) -> list[AccuracyCallback]:
    """``<split><j>_acc`` of every task on its outputs, every ``every`` steps of a path."""
    p = ctx.problem
    return [AccuracyCallback(view, ParameterSpace(view), getattr(task, split), every,
                             key=f"{split}{j}")
            for j, (task, mask) in enumerate(zip(p.tasks, p.masks))
            for view in [MaskedModel(ctx.model, mask)]]


def geodesic(ctx: HybridContext, directory=None, callbacks=()) -> dict[str, LevelResult]:
    s = ctx.settings
    ctx.space.set(ctx.model, ctx.base)
    metric = MemoryMetric(ctx.model, ctx.memory, s.output, s.metric_batch, seed=s.seed,
                          **s.metric_options())
    kept = MilestoneWeights()
    path = walk(ctx.model, hybrid_objective(ctx, metric), metric, s, max_steps=s.step_budget,
                directory=directory, callbacks=[kept, *task_views(ctx, "val", s.eval_every),
                                                *callbacks], name="hybrid/geodesic")
    ctx.space.set(ctx.model, ctx.base)
    results = path_levels(path, kept.weights)
    ctx.budgets = {name: r.grad_evals for name, r in results.items()}
    return results


def score(ctx: HybridContext, results: dict[str, LevelResult]) -> dict[str, dict]:
    """{level: per-task test and validation accuracies, their old/new/all means, the measured
    sparsity, the cumulative evaluations and seconds} for one method."""
    rows = {name: {**score_weights(ctx, r.weights), "grad_evals": r.grad_evals,
                   "seconds": r.seconds} for name, r in results.items()}
    ctx.space.set(ctx.model, ctx.base)
    return rows


def score_weights(ctx: HybridContext, w: Tensor) -> dict:
    p = ctx.problem
    ctx.space.set(ctx.model, w)
    row: dict = {"sparsity": ctx.projection.sparsity(w)}
    for split in ("test", "val"):
        accs = [task_scores(ctx.model, getattr(task, split), mask)[0]
                for task, mask in zip(p.tasks, p.masks)]
        prefix = "" if split == "test" else "val_"
        row[f"{prefix}task_accs"] = accs
        row[f"{prefix}old_acc"] = sum(accs[:-1]) / len(accs[:-1])
        row[f"{prefix}new_acc"] = accs[-1]
        row[f"{prefix}acc"] = sum(accs) / len(accs)
    return row
