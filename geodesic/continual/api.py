"""``learn_new_task``: application (ii) on any ``nn.Module``, new task and memory, in one call."""
from __future__ import annotations

import torch
from torch import nn

from geodesic.common.data import examples_from
from geodesic.continual.objective import LearnTask, task_metric
from geodesic.continual.protocol import EarlyStop, Memory, TaskBatches, per_class_sample
from geodesic.continual.settings import ContinualSettings
from geodesic.core.objectives import anchored
from geodesic.core.path import Path
from geodesic.core.settings import ParamsError, parse_section
from geodesic.core.space import eval_mode
from geodesic.core.traverse import walk


def learn_new_task(model: nn.Module, task, memory, val=None, directory=None,
                   **settings) -> Path:
    """Walk ``model`` in place toward low loss on ``task`` while its outputs on ``memory`` are
    kept.

    v(w) = -grad L_task(w) - alpha grad D(w), D the output distance to the starting function on
    the memory inputs (no labels are read there), each step the shortest in the functional
    metric of the memory. ``task`` and ``val`` are labelled data (DataLoaders or ``(x, y)``
    pairs; ``val`` enables early stopping); ``memory`` is inputs of the earlier tasks. Every
    output is kept and learned (a shared head, class-incremental). ``settings`` are keys of
    the ``continual`` section of params.yaml (``budget``: evaluations spent, ``anchor``,
    ``eta``, ``task_inputs``: that many inputs of ``task`` per class in the metric too, as
    geodesic_task_inputs does; unset: the memory alone), checked before any compute. Returns the
    path."""
    s: ContinualSettings = parse_section(ContinualSettings, settings, "continual")
    if s.memory_labels > 0:
        raise ParamsError("continual.memory_labels", s.memory_labels, "0 in learn_new_task: "
                          "its memory is inputs only (the continual stage's geodesic_replay "
                          "reads labels)")
    if s.anchor_target != "start":
        raise ParamsError("continual.anchor_target", s.anchor_target, "start in "
                          "learn_new_task: one task, whose starting outputs are the ones kept")
    device = next(model.parameters()).device
    new = examples_from(task)
    held = examples_from(memory, labels=False)
    check = examples_from(val) if val is not None else new.subset(torch.arange(0))
    with torch.no_grad(), eval_mode(model):
        outputs = model(held.x[:1].to(device)).shape[-1]
    every = torch.ones(outputs, dtype=torch.bool, device=device)
    kept = Memory(held.x, held.y, every.cpu().expand(len(held), -1))
    classes = new.y.unique().tolist()
    own = per_class_sample(new, classes, every.cpu(), s.task_inputs, s.seed) \
        if "task_inputs" in settings else None
    metric = task_metric(model, kept, own, s.output, s.metric_batch, s.seed,
                         **s.metric_options())
    objective = LearnTask(metric, TaskBatches(new, s.batch_size, s.seed), every, check,
                          EarlyStop(s.stop_every, s.patience), s.budget)
    return walk(model, anchored(objective, s.anchor), metric, s, directory=directory,
                name="learn_new_task")
