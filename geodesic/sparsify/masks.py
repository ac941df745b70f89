"""Pruning masks as plain tensors over the flat weight vector w in R^n.

``keep`` is a bool tensor of shape (n,): False marks a pruned coordinate. Which coordinates may be
pruned at all is the bool tensor ``prunable`` (by default the weights of Linear and Conv layers;
biases and norm layers are kept unless ``include`` names them).

Magnitude projection at sparsity p over the N prunable coordinates:

    global     zero the k = round(p N) prunable coordinates of smallest |w_i|
    layerwise  in each prunable tensor t, zero the round(p N_t) of smallest |w_i|

Coordinates that a previous mask pruned rank below every other, so a projection at a higher
sparsity never revives them. ``to_torch_prune`` exports a mask to ``torch.nn.utils.prune`` form
(``weight_orig`` and ``weight_mask``) for users of that API.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from geodesic.core.registry import Registry
from geodesic.core.space import ParameterSpace

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
INCLUDE = ("weights", "biases", "norm")
RANKINGS: Registry = Registry("ranking")


def _zero_smallest(out: Tensor, idx: Tensor, score: Tensor, k: int) -> None:
    if k > 0:
        out[idx[torch.topk(score, k, largest=False, sorted=False).indices]] = False


@RANKINGS.register("global")
def _global(out: Tensor, score: Tensor, prunable: Tensor, segments, sparsity: float) -> None:
    idx = prunable.nonzero().squeeze(1)
    _zero_smallest(out, idx, score[idx], round(sparsity * len(idx)))


@RANKINGS.register("layerwise")
def _layerwise(out: Tensor, score: Tensor, prunable: Tensor, segments, sparsity: float) -> None:
    for start, end in segments:
        idx = torch.arange(start, end, device=score.device)
        _zero_smallest(out, idx, score[start:end], round(sparsity * (end - start)))


def prunable_names(model: nn.Module, include=("weights",), exclude=()) -> list[str]:
    """Names of the parameters that may be pruned; ``exclude`` holds name prefixes."""
    names = []
    for module_name, module in model.named_modules():
        kinds = {"weight": "weights", "bias": "biases"} if isinstance(module, LAYER_TYPES) else (
            {"weight": "norm", "bias": "norm"} if isinstance(module, NORM_TYPES) else {})
        for attr, kind in kinds.items():
            name = f"{module_name}.{attr}" if module_name else attr
            if kind in include and getattr(module, attr, None) is not None and not any(
                    name.startswith(prefix) for prefix in exclude):
                names.append(name)
    return names


@dataclass
class MagnitudeProjection:
    """The magnitude projection over the prunable part of a :class:`ParameterSpace`."""

    prunable: Tensor  # bool (n,)
    segments: list[tuple[int, int]]  # [start, end) of each prunable tensor in w
    ranking: str = "global"

    @classmethod
    def build(cls, model: nn.Module, space: ParameterSpace, include=("weights",), exclude=(),
              ranking: str = "global") -> "MagnitudeProjection":
        RANKINGS.get(ranking)
        names = set(prunable_names(model, include, exclude))
        if not names:
            raise ValueError(f"no prunable parameters (include={list(include)}, "
                             f"exclude={list(exclude)})")
        prunable = torch.zeros(space.dim, dtype=torch.bool)
        segments, start = [], 0
        for name, numel in zip(space.names, space.numels):
            if name in names:
                prunable[start:start + numel] = True
                segments.append((start, start + numel))
            start += numel
        device = next(model.parameters()).device
        return cls(prunable.to(device), segments, ranking)

    @property
    def count(self) -> int:
        return int(self.prunable.sum())

    def full_mask(self) -> Tensor:
        return torch.ones_like(self.prunable)

    def mask(self, w: Tensor, sparsity: float, keep: Tensor | None = None,
             factor: Tensor | None = None) -> Tensor:
        """The keep-mask of the projection of w at ``sparsity``, ranking by |w_i| (times
        ``factor``, a target rule's c, when given: :mod:`geodesic.sparsify.scores`);
        coordinates already pruned by ``keep`` stay pruned."""
        score = w.detach().abs() * factor if factor is not None else w.detach().abs().clone()
        if keep is not None:
            score[~keep] = -1.0
        out = torch.ones_like(self.prunable)
        RANKINGS.get(self.ranking)(out, score, self.prunable, self.segments, sparsity)
        return out

    def project(self, w: Tensor, sparsity: float, keep: Tensor | None = None,
                factor: Tensor | None = None) -> Tensor:
        return w * self.mask(w, sparsity, keep, factor)

    def sparsity(self, w: Tensor) -> float:
        """The measured fraction of prunable weights that are exactly zero."""
        return float((w[self.prunable] == 0).sum()) / self.count


def to_torch_prune(model: nn.Module, space: ParameterSpace, keep: Tensor) -> nn.Module:
    """Attach ``keep`` to ``model`` with ``torch.nn.utils.prune.custom_from_mask`` (in place):
    every parameter with a pruned coordinate becomes ``<name>_orig`` times ``<name>_mask``."""
    modules = dict(model.named_modules())
    for name, part in space.unflatten(keep).items():
        if bool(part.all()):
            continue
        module_name, _, attr = name.rpartition(".")
        prune.custom_from_mask(modules[module_name], attr, part.to(torch.float32))
    return model
