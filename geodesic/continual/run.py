"""One continual-learning method over a task sequence, scored as an accuracy matrix.

``run_sequence(learner, model, tasks, scenario, ...)``: for t = 0..T-1 the learner learns task t
in place from the memory of tasks 0..t-1 (``per_class`` training examples per class of each,
drawn with seed + j); then R[t][j] is the accuracy on task j's test split and V[t][j] on its
validation split (for choosing hyperparameters), each on task j's outputs. Task t's minibatches
come in the order of seed + t for every method.

Task sequences (registry ``BENCHMARKS``): ``split`` (class split) and ``permuted`` (pixel
permutations) of :mod:`geodesic.continual.tasks`.

Learners (registry ``METHODS``, built from the ``continual`` settings):

    geodesic   ``GeodesicLearner``: the traversal with ``LearnTask`` (+ alpha ``Anchor``) on the
               ``MemoryMetric``. With an empty memory (the first task) there is nothing to keep
               and the task is learned by the plain template, as fine-tuning learns it.
    geodesic_task_inputs   the same walk with ``task_inputs`` of the new task's training
               inputs per class in the metric's pool too (none the memory keeps; ``held``
               False, so the anchor does not pull them back): g then measures the change of
               the new task's outputs as well, and each step is damped where the new task's
               loss curves, not only where the memory's outputs move.
    geodesic_replay   the paper's metric with DER++'s two ingredients, each its own value:
               the memory's labels in the walk's loss (``memory_labels`` gamma, a
               ``replay_batch`` of the memory a step, as replay and DER++ draw it) and the
               anchor's target (``anchor_target``: ``stored``, the outputs each example had
               when it entered the memory, which the learner keeps from task to task).
    finetune, ewc, si, lwf, replay   the baseline template with that method's plugins.

Callbacks see the steps of all tasks on one step axis (``Shifted``), one record per
``RECORD_EVERY`` evaluations and every validation check, with ``val<j>_acc`` for the tasks
learned so far added every ``eval_every`` evaluations (``EveryEvals``: the same axis for methods
whose steps cost different numbers of evaluations).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from geodesic.common.evaluate import AccuracyCallback
from geodesic.continual.baselines import BASELINES, Template
from geodesic.continual.objective import (LearnTask, MemoryLabels, anchor_toward, memory_outputs,
                                         task_metric)
from geodesic.continual.protocol import (EarlyStop, MaskedModel, Memory, MemoryDraws, TaskBatches,
                                         empty_memory, join, output_mask, task_memory,
                                         task_scores)
from geodesic.continual.tasks import Task, class_split, permuted
from geodesic.core.registry import Registry
from geodesic.core.solvers import build_solver
from geodesic.core.space import ParameterSpace
from geodesic.core.traverse import Callback, walk

log = logging.getLogger(__name__)
RECORD_EVERY = 10  # evaluations between the step records callbacks see (geodesic: every step)


class GeodesicLearner:
    def __init__(self, s, task_inputs: int = 0):
        self.s, self.solver, self.first = s, build_solver(s), Template([], s)
        self.task_inputs = task_inputs
        self.stored: Tensor | None = None  # anchor_target stored: the memory's entry outputs

    def learn(self, model: nn.Module, t: int, tasks: Sequence[Task], masks, memory: Memory,
              seed: int, callbacks=(), directory=None) -> tuple[int, int]:
        if t == 0:  # a new sequence: nothing is stored yet
            self.stored = None
        if len(memory) == 0:
            return self.first.learn(model, t, tasks, masks, memory, seed, callbacks, directory)
        s = self.s
        new = task_memory(tasks[t], masks[t], self.task_inputs, seed, skip=s.memory_per_class) \
            if self.task_inputs else None  # not the examples the memory will keep of this task
        metric = task_metric(model, memory, new, s.output, s.metric_batch, seed,
                             **s.metric_options())
        labels = MemoryLabels(s.memory_labels, memory, MemoryDraws(s.replay_batch, seed)) \
            if s.memory_labels > 0 else None
        objective = LearnTask(metric, TaskBatches(tasks[t].train, s.batch_size, seed), masks[t],
                              tasks[t].val, EarlyStop(s.stop_every, s.patience), s.budget,
                              labels)
        known = 0 if self.stored is None else len(self.stored)
        if s.anchor_target == "stored" and known < len(memory):  # as the last task left them
            entered = memory_outputs(model, memory, known)
            self.stored = entered if self.stored is None else torch.cat([self.stored, entered])
        objective = anchor_toward(objective, s.anchor, s.anchor_target, metric, self.stored)
        path = walk(model, objective, metric, s, solver=self.solver, directory=directory,
                    callbacks=callbacks)
        return (path.records[-1]["evals"] if path.records else 0), path.steps


BENCHMARKS: Registry = Registry("continual benchmark")
BENCHMARKS.register("split")(lambda data, n_tasks, seed: class_split(data, n_tasks))
BENCHMARKS.register("permuted")(lambda data, n_tasks, seed: permuted(data, n_tasks, seed))

METHODS: Registry = Registry("continual method")
METHODS.register("geodesic")(GeodesicLearner)
METHODS.register("geodesic_task_inputs")(
    lambda s: GeodesicLearner(s.for_method("geodesic_task_inputs"), s.task_inputs))
METHODS.register("geodesic_replay")(lambda s: GeodesicLearner(s.for_method("geodesic_replay")))
for _name in BASELINES.names():
    METHODS.register(_name)(lambda s, _name=_name: Template(BASELINES.get(_name)(s), s, _name))


class Shifted(Callback):
    """Passes records and checkpoints on with steps counted from ``offset`` (one axis across
    tasks) and the task index and cumulative evaluations added."""

    def __init__(self, inner: Callback, offset: int, evals: int, task: int):
        self.inner, self.offset, self.evals, self.task = inner, offset, evals, task

    def on_step(self, record: dict, w) -> None:
        self.inner.on_step({**record, "step": record["step"] + self.offset, "task": self.task,
                            "evals_total": record["evals"] + self.evals}, w)

    def on_milestone(self, name: str, record: dict, w) -> None:
        self.inner.on_milestone(name, {**record, "step": record["step"] + self.offset}, w)

    def on_checkpoint(self, step: int, file: Path) -> None:
        self.inner.on_checkpoint(step + self.offset, file)

    def on_end(self, path) -> None:
        self.inner.on_end(path)


class EveryEvals(Callback):
    """Passes on the step records (the same objects, so additions show) once every ``every``
    evaluations, and every record holding one of the ``always`` keys; the rest unchanged.
    Methods whose steps cost different numbers of evaluations share one axis this way."""

    def __init__(self, inner: Callback, every: int, always: tuple[str, ...] = ()):
        self.inner, self.every, self.always, self.next = inner, every, always, every

    def on_step(self, record: dict, w) -> None:
        if record["evals"] >= self.next or any(k in record for k in self.always):
            self.next = max(self.next, (record["evals"] // self.every + 1) * self.every)
            self.inner.on_step(record, w)

    def on_milestone(self, name: str, record: dict, w) -> None:
        self.inner.on_milestone(name, record, w)

    def on_checkpoint(self, step: int, file: Path) -> None:
        self.inner.on_checkpoint(step, file)

    def on_end(self, path) -> None:
        self.inner.on_end(path)


@dataclass
class SequenceResult:
    matrix: list[list[float]] = field(default_factory=list)  # R[i][j], test accuracy
    val_matrix: list[list[float]] = field(default_factory=list)
    evals: list[int] = field(default_factory=list)  # per task
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall-clock
    cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time


def run_sequence(learner, model: nn.Module, tasks: Sequence[Task], scenario: str,
                 num_outputs: int, *, per_class: int, seed: int, eval_every: int = 10,
                 callbacks=(), directory=None, name: str = "",
                 on_task: Callable[[int, SequenceResult], None] | None = None) -> SequenceResult:
    masks = [output_mask(scenario, task, num_outputs) for task in tasks]
    memory = empty_memory(tasks[0].train, num_outputs)
    result, offset = SequenceResult(), 0
    for t, task in enumerate(tasks):
        scorers = [EveryEvals(AccuracyCallback(view, ParameterSpace(view), tasks[j].val, 1,
                                               key=f"val{j}"), eval_every)
                   for j in range(t + 1) for view in [MaskedModel(model, masks[j])]]
        shifted = [EveryEvals(Shifted(cb, offset, sum(result.evals), t), RECORD_EVERY,
                              always=("val_loss",)) for cb in callbacks]
        where = Path(directory) / f"task{t}" if directory is not None else None
        t0, c0 = time.perf_counter(), time.process_time()
        evals, steps = learner.learn(model, t, tasks, masks, memory, seed + t,
                                     [*scorers, *shifted], where)
        result.seconds.append(time.perf_counter() - t0)
        result.cpu_seconds.append(time.process_time() - c0)
        result.evals.append(evals)
        result.steps.append(steps)
        offset += steps
        result.matrix.append([task_scores(model, tasks[j].test, masks[j])[0] for j in
                              range(len(tasks))])
        result.val_matrix.append([task_scores(model, tasks[j].val, masks[j])[0] for j in
                                  range(len(tasks))])
        log.info("%s task %d/%d: %d steps, %d evals, %.1fs; test acc %s", name, t + 1,
                 len(tasks), steps, evals, result.seconds[-1],
                 " ".join(f"{a:.3f}" for a in result.matrix[-1][: t + 1]))
        memory = join(memory, task_memory(task, masks[t], per_class, seed + t))
        if on_task is not None:
            on_task(t, result)
    return result

