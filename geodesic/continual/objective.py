"""Continual learning along a geodesic: learn task t while keeping the earlier tasks' outputs.

Direction (``LearnTask``): v(w) = -grad_w L_t(w), L_t = CE(mask_t(f(x; w)), y) on the next
minibatch of task t (``TaskBatches``: a seeded, checkpointed order, the same the baselines get).
With ``memory_labels`` gamma > 0 the memory's labels join the loss as replay uses them:
v(w) = -grad_w [L_t(w) + gamma CE(mask_i(f(x_i; w)), y_i)] over a memory minibatch
(``MemoryDraws``; each example on its own task's outputs), one more evaluation a step.

Metric (``MemoryMetric``): on the memory of earlier tasks' inputs, each input i judged on its own
task's outputs, z_i(w) = mask_{task(i)}(f(x_i; w)):

    g(w) = (1/|B|) sum_{i in B} J_i^T H J_i,     J_i = d z_i / dw.

With ``task_inputs`` the pool also holds some of the new task's own inputs (judged on its
outputs; not held by the anchor), adding their J^T H J to g.

Task-IL masks the other tasks' logits to a constant, so those rows of J_i vanish: the path may
freely change what task-IL predictions of earlier tasks do not read (among them the new task's
classes on old inputs), and keeps what they do read. Class-IL keeps every output.

Stop (``done``): when the next step would take the evaluations spent on this task (metric
products, pullbacks and gradients, the unit the baselines' forward+backward passes are counted
in) past ``budget``, judged by the cost of the previous step; or when the new task's validation
loss, checked every ``stop.every`` evaluations, stopped improving (``EarlyStop``).

Anchor target (``anchor_target``): ``start``, the paper's, pulls back toward the task's starting
function on the memory (``Anchor``); ``stored`` (``StoredAnchor``) toward the outputs each memory
example had when it entered the memory (the network at the end of its own task, the targets DER
replays), so drift does not accumulate from task to task.

Hybrid forms need no new loop code: ``Combined([(1, LearnTask(...)), (alpha, Anchor())])`` pulls
back toward the task's starting function on the memory, or adds any other objective's direction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from geodesic.common.data import Split
from geodesic.continual.protocol import (EarlyStop, Memory, MemoryDraws, TaskBatches, join,
                                         masked_logits, task_loss)
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import Anchor, Objective, combined
from geodesic.core.space import eval_mode


class MemoryMetric(FunctionalMetric):
    """The functional metric on a :class:`Memory`, each input scored on its own task's outputs.

    The metric's inputs are indices into the memory, so a sampled batch carries its masks."""

    def __init__(self, model: nn.Module, memory: Memory, output: str = "logits",
                 batch_size: int | None = None, seed: int = 0, **options):
        device = memory.x.device
        super().__init__(model, torch.arange(len(memory), device=device), output, batch_size,
                         seed=seed, **options)
        self.memory = memory

    def function(self, w: Tensor, index: Tensor) -> Tensor:
        return masked_logits(super().function(w, self.memory.x[index]), self.memory.masks[index])


def task_metric(model: nn.Module, memory: Memory, new: Memory | None, output: str,
                batch_size: int | None, seed: int, **options) -> MemoryMetric:
    """The metric of one task's walk: on the memory, whose outputs the anchor holds, and on
    ``new`` (some of the new task's inputs; None: none), which g measures and nothing holds."""
    device = next(model.parameters()).device
    pool = memory if new is None else join(memory, new)
    held = torch.arange(len(pool)) < len(memory)
    pool = Memory(pool.x.to(device), pool.y.to(device), pool.masks.to(device))
    return MemoryMetric(model, pool, output, batch_size, seed=seed, held=held, **options)


@dataclass
class MemoryLabels:
    """The memory's labelled examples in the walk's loss, weighted ``gamma``."""

    gamma: float
    memory: Memory
    draws: MemoryDraws


class StoredAnchor(Objective):
    """v = -grad_w (1/|B|) sum_{i in B} h_i d(z_i(w), z*_i): the pull toward fixed ``targets``
    z*, one row per pool row (B the metric's drawn rows, h_i = 0 on rows it does not hold)."""

    def __init__(self, targets: Tensor):
        self.targets = targets

    def direction(self, w: Tensor, local) -> Tensor:
        rows = slice(None) if local.rows is None else local.rows
        return -local.distance_gradient(self.targets[rows])


def memory_outputs(model: nn.Module, memory: Memory, start: int = 0,
                   batch_size: int = 1024) -> Tensor:
    """z_i = mask_i(f(x_i)) for the memory's examples from ``start`` on, in eval mode, without
    gradient."""
    device = next(model.parameters()).device
    with torch.no_grad(), eval_mode(model):
        return torch.cat([masked_logits(model(memory.x[k:k + batch_size].to(device)),
                                        memory.masks[k:k + batch_size])
                          for k in range(start, len(memory), batch_size)])


def anchor_toward(objective: Objective, alpha: float, target: str, metric: FunctionalMetric,
                  stored: Tensor | None) -> Objective:
    """v_objective - alpha grad D, D to the task's starting outputs (``start``) or to the
    ``stored`` outputs of the memory's rows (``stored``; the pool's other rows are not held)."""
    if target == "start":
        return combined(objective, (alpha, Anchor()))
    pad = stored.new_zeros(len(metric.inputs) - len(stored), *stored.shape[1:])
    return combined(objective, (alpha, StoredAnchor(torch.cat([stored, pad]))))


class LearnTask(Objective):
    """v = -grad (L_t + gamma L_memory) on the task's next minibatch (and a memory minibatch,
    with ``labels``); stops on the budget or on early stopping."""

    def __init__(self, metric: FunctionalMetric, batches: TaskBatches, mask: Tensor, val: Split,
                 stop: EarlyStop, budget: int, labels: MemoryLabels | None = None):
        self.metric, self.batches, self.mask, self.val = metric, batches, mask, val
        self.stop, self.budget, self.labels = stop, budget, labels
        self.grad_evals = 0
        self._base, self._marks = 0, (metric.evals, 0)
        self.last_spent, self.last_cost, self.stopped = 0, 0, False
        self.batch_loss, self.val_loss = math.nan, math.nan

    def function(self, w: Tensor, x: Tensor) -> Tensor:
        """f(x; w) in eval mode with the model's buffers (BatchNorm statistics stay fixed)."""
        model = self.metric.model
        with eval_mode(model):
            return functional_call(model, {**self.metric.space.unflatten(w),
                                           **self.metric.buffers}, (x,))

    def spent(self) -> int:
        return self._base + self.metric.evals - self._marks[0] + self.grad_evals - self._marks[1]

    def direction(self, w: Tensor, local) -> Tensor:
        x, y = (v.to(w.device) for v in self.batches.next())
        labels = self.labels
        if labels is not None:
            index = labels.draws.next(len(labels.memory))
            xm, ym = (v[index].to(w.device) for v in (labels.memory.x, labels.memory.y))

        def loss(v: Tensor) -> tuple[Tensor, Tensor]:
            task = task_loss(self.function(v, x), y, self.mask)
            if labels is None:
                return task, task
            return task + labels.gamma * task_loss(self.function(v, xm), ym,
                                                   labels.memory.masks[index]), task

        gradient, task = grad(loss, has_aux=True)(w)
        self.grad_evals += 1 if labels is None else 2
        self.batch_loss = float(task)
        return -gradient

    @torch.no_grad()
    def validation_loss(self, w: Tensor, batch_size: int = 1024) -> float:
        total = 0.0
        for start in range(0, len(self.val), batch_size):
            x = self.val.x[start:start + batch_size].to(w.device)
            y = self.val.y[start:start + batch_size].to(w.device)
            total += float(task_loss(self.function(w, x), y, self.mask)) * len(y)
        return total / max(len(self.val), 1)

    def after_step(self, w: Tensor) -> tuple[Tensor, list[str]]:
        spent = self.spent()
        self.last_cost, self.last_spent = spent - self.last_spent, spent
        self.val_loss = math.nan
        if len(self.val) and self.stop.due(spent):
            self.val_loss = self.validation_loss(w)
            self.stopped = self.stop.update(spent, self.val_loss)
        return w, []

    def done(self, w: Tensor) -> bool:
        spent = self.spent()
        return self.stopped or spent >= self.budget or spent + self.last_cost > self.budget

    def progress(self, w: Tensor) -> dict[str, float]:
        out = {"batch_loss": self.batch_loss}
        if not math.isnan(self.val_loss):
            out["val_loss"] = self.val_loss
        return out

    def state_dict(self) -> dict[str, Tensor]:
        counters = torch.tensor([self.spent(), self.last_spent, self.last_cost, self.stopped])
        labels = {} if self.labels is None else \
            {f"labels.{k}": v for k, v in self.labels.draws.state_dict().items()}
        return {"counters": counters, **self.batches.state_dict(), **self.stop.state_dict(),
                **labels}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        spent, self.last_spent, self.last_cost, stopped = state["counters"].tolist()
        self._base, self._marks, self.stopped = spent, (self.metric.evals, self.grad_evals), \
            bool(stopped)
        self.batches.load_state_dict(state)
        self.stop.load_state_dict(state)
        if self.labels is not None:
            self.labels.draws.load_state_dict({k[len("labels."):]: v for k, v in state.items()
                                               if k.startswith("labels.")})
