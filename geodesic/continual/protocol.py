"""The continual-learning protocol that every method follows, the geodesic and the baselines alike.

Scenario (registry ``SCENARIOS``): which outputs a task is trained, scored and remembered on.

    task-il   the task identity is known: the output mask of task t selects its classes, and
              masked logits are set to ``MASKED`` so that softmax, cross-entropy and argmax run
              over the task's classes only (a head per task, sharing one output layer)
    class-il  one shared head: the mask keeps every output

With z the logits and M the task's mask: loss = CE(mask(z, M), y), prediction = argmax mask(z, M).

``TaskBatches`` draws the new task's minibatches in an order fixed by a seeded generator whose
state is checkpointed; every method gets the same order. ``EarlyStop`` is the shared stop rule:
the new task's validation loss is checked every ``every`` evaluations and learning stops after
``patience`` checks without improvement. ``Memory`` holds ``per_class`` training examples of
every class of every earlier task (chosen with a seed per task): the geodesic's metric uses its
inputs, replay its inputs and labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodesic.common.data import Split
from geodesic.common.evaluate import accuracy
from geodesic.continual.tasks import Task
from geodesic.core.registry import Registry

MASKED = -1e4  # exp(MASKED - max) underflows to 0: a masked logit takes no part in softmax

SCENARIOS: Registry = Registry("continual scenario")
SCENARIOS.register("task-il")(lambda classes, m: torch.isin(torch.arange(m), torch.tensor(classes)))
SCENARIOS.register("class-il")(lambda classes, m: torch.ones(m, dtype=torch.bool))


def output_mask(scenario: str, task: Task, num_outputs: int) -> Tensor:
    """The boolean mask (num_outputs,) of the outputs that task ``task`` is judged on."""
    return SCENARIOS.get(scenario)(task.classes, num_outputs)


def masked_logits(z: Tensor, mask: Tensor) -> Tensor:
    """z with the outputs outside ``mask`` (shape (m,) or (B, m)) set to ``MASKED``."""
    return z.masked_fill(~mask.to(z.device), MASKED)


def task_loss(z: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    return F.cross_entropy(masked_logits(z, mask), y)


@torch.no_grad()
def task_scores(model: nn.Module, split: Split, mask: Tensor,
                batch_size: int = 1024) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on ``split`` with the outputs restricted to ``mask``."""
    return accuracy(model, split, batch_size, outputs=lambda z: masked_logits(z, mask))


class MaskedModel(nn.Module):
    """``net`` followed by ``masked_logits``: a task's view of the network (for scoring)."""

    def __init__(self, net: nn.Module, mask: Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return masked_logits(self.net(x), self.mask)


class TaskBatches:
    """Endless minibatches of a split: one seeded permutation per pass over the data."""

    def __init__(self, split: Split, batch_size: int, seed: int):
        if len(split) == 0:
            raise ValueError("a task without training examples cannot be learned")
        self.split, self.batch_size = split, min(batch_size, len(split))
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.randperm(len(split), generator=self.generator), 0

    def next(self) -> tuple[Tensor, Tensor]:
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.split), generator=self.generator), 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return self.split.x[index], self.split.y[index]

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state(), "order": self.order,
                "position": torch.tensor(self.position)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])


class MemoryDraws:
    """Random minibatches of memory indices: the first ``batch_size`` of a seeded permutation
    of the memory, drawn anew each time (the memory grows between tasks)."""

    def __init__(self, batch_size: int, seed: int):
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self, size: int) -> Tensor:
        return torch.randperm(size, generator=self.generator)[: self.batch_size]

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


class EarlyStop:
    """Validation every ``every`` evaluations; stop after ``patience`` checks that did not lower
    the best loss (``patience = 0``: never stop early)."""

    def __init__(self, every: int, patience: int):
        self.every, self.patience = every, patience
        self.best, self.bad, self.next_check = math.inf, 0, every

    def due(self, evals: int) -> bool:
        return self.patience > 0 and evals >= self.next_check

    def update(self, evals: int, loss: float) -> bool:
        """Record the validation ``loss`` measured after ``evals`` evaluations; True: stop."""
        self.next_check = evals + self.every
        if loss < self.best:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Tensor]:
        return {"early_stop": torch.tensor([self.best, self.bad, self.next_check],
                                           dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        best, bad, next_check = state["early_stop"].tolist()
        self.best, self.bad, self.next_check = best, int(bad), int(next_check)


@dataclass
class Memory:
    """Remembered training examples of earlier tasks; ``masks[i]`` is example i's task mask."""

    x: Tensor
    y: Tensor
    masks: Tensor

    def __len__(self) -> int:
        return len(self.y)


def task_memory(task: Task, mask: Tensor, per_class: int, seed: int, skip: int = 0) -> Memory:
    """``per_class`` training examples of each of the task's classes, drawn with ``seed``;
    ``skip`` passes over the first ones of that draw (the same seed with ``skip`` = the
    memory's ``per_class`` gives examples disjoint from the memory's)."""
    return per_class_sample(task.train, task.classes, mask, per_class, seed, skip)


def per_class_sample(split: Split, classes, mask: Tensor, per_class: int, seed: int,
                     skip: int = 0) -> Memory:
    """Examples ``skip`` to ``skip + per_class`` of a seeded random order of each class in
    ``classes`` among ``split``'s, each judged on ``mask``."""
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for c in classes:
        members = (split.y == c).nonzero().flatten()
        order = torch.randperm(len(members), generator=generator)
        picked.append(members[order[skip:skip + per_class]])
    index = torch.cat(picked).sort().values
    return Memory(split.x[index], split.y[index], mask.expand(len(index), -1).clone())


def join(a: Memory, b: Memory) -> Memory:
    return Memory(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.masks, b.masks]))


def empty_memory(like: Split, num_outputs: int) -> Memory:
    return Memory(like.x[:0], like.y[:0], torch.zeros(0, num_outputs, dtype=torch.bool))
