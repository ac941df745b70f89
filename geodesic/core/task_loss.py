"""The labelled task direction: v(w) = -grad_w L(w), L the mean cross-entropy of
f(x; w) on a minibatch of labelled examples drawn afresh each step.

The minibatches come from the objective's own generator, whose state is part of ``state_dict``,
so a resumed traversal draws the same batches. Each direction costs one gradient evaluation
(counted in ``grad_evals``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from geodesic.core.objectives import Objective


class TaskLoss(Objective):
    """v = -grad L(w) on ``batch_size`` examples of (x, y); ``function(w, x)`` gives logits."""

    def __init__(self, function: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                 batch_size: int, seed: int = 0):
        self.function, self.x, self.y = function, x, y
        self.batch_size = min(batch_size, len(y))
        self.generator = torch.Generator().manual_seed(seed)
        self.grad_evals = 0

    def direction(self, w: Tensor, local) -> Tensor:
        idx = torch.randperm(len(self.y), generator=self.generator)[: self.batch_size]
        idx = idx.to(self.y.device)
        w = w.detach().requires_grad_(True)
        loss = F.cross_entropy(self.function(w, self.x[idx]), self.y[idx])
        (grad,) = torch.autograd.grad(loss, w)
        self.grad_evals += 1
        return -grad

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
