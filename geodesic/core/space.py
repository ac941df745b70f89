"""A module's trainable parameters as one flat vector w in R^n, and evaluation mode as a
context."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

class ParameterSpace:
    """The trainable parameters of a module seen as one flat vector w in R^n."""

    def __init__(self, model: nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dim = sum(self.numels)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        parts = w.split_with_sizes(self.numels)  # the C++ split: no Python-level checks
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes)}

    def get(self, model: nn.Module) -> Tensor:
        return self.flatten(dict(model.named_parameters())).detach()  # cat copies

    @torch.no_grad()
    def set(self, model: nn.Module, w: Tensor) -> None:
        """Copy w into the model's parameters."""
        params = dict(model.named_parameters())
        for name, value in self.unflatten(w).items():
            params[name].copy_(value)

    @torch.no_grad()
    def bind(self, model: nn.Module, w: Tensor, *, copy: bool = False) -> None:
        """Make the model's parameters views of w (no memory of their own: while a traversal
        holds w, the model holds no second copy of the weights), or with ``copy`` clones of
        w's parts (memory of their own, one tensor each, as a freshly built model has)."""
        params = dict(model.named_parameters())
        for name, value in self.unflatten(w).items():
            params[name].data = value.clone() if copy else value


@contextmanager
def eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
