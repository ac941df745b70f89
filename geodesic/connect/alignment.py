"""Permutation symmetry of hidden units, and weight matching (Ainsworth et al. 2022, git
re-basin).

A chain of layers x -> L_1 -> ... -> L_K -> z (Linear / Conv with element-wise activations,
BatchNorm, pooling and flatten between them) computes the same function after any permutation
P_k of the output units of each mixing layer k < K, applied to

    W_k <- P_k W_k,  b_k <- P_k b_k       (the unit's own weights: output axis)
    BatchNorm after k: gamma, beta, running mean, running var <- P_k (.)
    W_{k+1} <- W_{k+1} P_k^T              (the next layer's input axis; after flatten, the
                                           blocks of spatial positions of each channel)

:func:`symmetry` derives these groups of axes from the traced module graph
(:func:`geodesic.core.fastmetric.trace_chain`). :func:`weight_matching` finds the permutations that
bring w2 closest to w1,

    max_pi <w1, pi(w2)> = sum_k <W1_k, P_k W2_k P_{k-1}^T> (+ biases, BatchNorm)
                        <=> min_pi ||w1 - pi(w2)||^2,

by coordinate descent: for one group k at a time (in a random order each sweep), with the other
permutations fixed, <w1, pi(w2)> = sum_ij C_ij [P_k]_ij + const with C = sum over the group's
axes of A1 A2^T (each tensor with its axis k first, the other groups applied to w2), a linear
assignment problem (scipy.optimize.linear_sum_assignment). Sweeps stop when none improves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from geodesic.core.fastmetric import trace_chain
from geodesic.core.layer_rules import FUNCTION_RULES, METHOD_RULES
from geodesic.core.space import ParameterSpace

MIXING = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FLATTEN_RULES = (FUNCTION_RULES[torch.flatten], METHOD_RULES["flatten"])
RESHAPE_RULES = (METHOD_RULES["view"], METHOD_RULES["reshape"])
SUPPORTED = ("a chain (nn.Sequential or a forward calling its layers one after another) of "
             "Linear / Conv (groups=1), BatchNorm, element-wise activations, pooling, "
             "dropout and flatten(start_dim=1)")


class AlignmentError(ValueError):
    """The model's hidden-unit permutations cannot be derived."""


@dataclass(frozen=True)
class Axis:
    """Axis ``dim`` of tensor ``name`` (a parameter or a buffer), seen as (units, block) with
    ``block`` consecutive entries per unit (a flattened channel's spatial positions)."""

    name: str
    dim: int
    block: int = 1
    parameter: bool = True  # buffers (running statistics) are permuted but not matched


@dataclass
class Symmetry:
    """The permutation groups of a model: group k permutes ``sizes[k]`` units on ``groups[k]``."""

    groups: list[list[Axis]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # the mixing layer whose outputs group k are

    def apply(self, tensors: dict[str, Tensor], perms: list[Tensor],
              skip: int | None = None) -> dict[str, Tensor]:
        """pi(tensors): every axis of group k indexed by perms[k] (new unit i = old perms[k][i]);
        group ``skip`` left as it is. Tensors no group touches are returned unchanged."""
        out = dict(tensors)
        for k, (axes, perm) in enumerate(zip(self.groups, perms)):
            if k == skip:
                continue
            for axis in axes:
                if axis.name in out:
                    out[axis.name] = _index(out[axis.name], axis, perm)
        return out


def _index(t: Tensor, axis: Axis, perm: Tensor) -> Tensor:
    units = t.shape[axis.dim] // axis.block
    blocks = t.unflatten(axis.dim, (units, axis.block))
    return blocks.index_select(axis.dim, perm.to(t.device)).flatten(axis.dim, axis.dim + 1)


def _units_first(t: Tensor, axis: Axis) -> Tensor:
    """The tensor as a (units, rest) matrix: row i holds every entry of unit i on the axis."""
    units = t.shape[axis.dim] // axis.block
    return t.unflatten(axis.dim, (units, axis.block)).movedim(axis.dim, 0).reshape(units, -1)


def _flatten_start(step) -> int:
    if step.module is not None:
        return step.module.start_dim if step.module.end_dim == -1 else -99
    start = step.kwargs.get("start_dim", step.args[0] if step.args else 0)
    end = step.kwargs.get("end_dim", step.args[1] if len(step.args) > 1 else -1)
    return start if end == -1 else -99


def symmetry(model: nn.Module) -> Symmetry:
    """The hidden-unit permutation groups of ``model`` (see the module docstring); raises
    :class:`AlignmentError` naming the layer for anything else."""
    space = ParameterSpace(model)
    steps = trace_chain(model, space.names)
    if steps is None:
        raise AlignmentError(f"alignment: {type(model).__name__} is not a chain of known layers "
                             f"(torch.fx trace); supported: {SUPPORTED}")
    module_names = {id(m): n for n, m in model.named_modules()}
    mixing = [i for i, s in enumerate(steps) if isinstance(s.module, MIXING)]
    seen = [s.module for i, s in enumerate(steps) if s.params]
    if len({id(m) for m in seen}) != len(seen):
        raise AlignmentError("alignment: a layer is called twice (shared weights); supported: "
                             + SUPPORTED)
    sym = Symmetry()
    current, layout = None, "input"  # the group the activation's units carry; its layout

    def refuse(step, why: str):
        what = (f"layer {module_names[id(step.module)]!r} ({type(step.module).__name__})"
                if step.module is not None else "a flatten / view / reshape call")
        return AlignmentError(f"alignment: {what} {why}; supported: {SUPPORTED}")

    for i, step in enumerate(steps):
        m = step.module
        if isinstance(m, MIXING):
            conv = not isinstance(m, nn.Linear)
            if conv and m.groups != 1:
                raise refuse(step, f"has groups={m.groups}")
            if current is not None:
                n, fan_in = sym.sizes[current], m.weight.shape[1]
                ok = layout == "channels" if conv else (
                    layout == "flat" and fan_in % n == 0 or layout == "features" and fan_in == n)
                if not ok:
                    raise refuse(step, f"takes {fan_in} inputs from {n} permuted units laid out "
                                 f"as {layout}")
                block = fan_in // n if layout == "flat" else 1
                sym.groups[current].append(Axis(step.params["weight"], 1, block))
            if i == mixing[-1]:
                current = None  # the outputs z are never permuted
                continue
            current, layout = len(sym.groups), "channels" if conv else "features"
            sym.groups.append([Axis(step.params[p], 0) for p in ("weight", "bias")
                               if p in step.params])
            sym.sizes.append(m.weight.shape[0])
            sym.layers.append(module_names[id(m)])
        elif current is None:
            continue
        elif isinstance(m, NORMS):
            prefix = module_names[id(m)]
            sym.groups[current] += [Axis(full, 0) for full in step.params.values()]
            sym.groups[current] += [Axis(f"{prefix}.{b}", 0, parameter=False)
                                    for b in ("running_mean", "running_var")]
        elif isinstance(m, nn.Flatten) or step.rule in FLATTEN_RULES:
            if _flatten_start(step) != 1:
                raise refuse(step, "flattens other than from dimension 1 to the last")
            layout = "flat" if layout == "channels" else layout
        elif step.rule in RESHAPE_RULES:
            raise refuse(step, "reshapes permuted units")
    frozen = [a.name for axes in sym.groups for a in axes
              if a.parameter and a.name not in space.names]
    if frozen:
        raise AlignmentError(f"alignment: frozen parameters {sorted(set(frozen))} carry permuted "
                             f"units but are not part of the weight vector w; supported: "
                             f"every parameter of a permuted layer trainable")
    return sym


@dataclass
class Alignment:
    """The permutations pi found by weight matching, and how well they match.

    ``objective`` = <w1, pi(w2)>, ``identity_objective`` = <w1, w2>, ``sweeps`` the coordinate
    descent sweeps over all groups, ``seconds`` its wall-clock."""

    symmetry: Symmetry
    space: ParameterSpace
    perms: list[Tensor]
    objective: float = 0.0
    identity_objective: float = 0.0
    sweeps: int = 0
    seconds: float = 0.0

    def apply(self, w: Tensor) -> Tensor:
        """pi(w) for a flat weight vector w (computes w's function)."""
        return self.space.flatten(self.symmetry.apply(self.space.unflatten(w), self.perms))

    def inverse(self, w: Tensor) -> Tensor:
        """pi^{-1}(w): a point of the aligned path in w2's own coordinates."""
        inverse = [torch.argsort(p) for p in self.perms]
        return self.space.flatten(self.symmetry.apply(self.space.unflatten(w), inverse))

    def apply_model(self, model: nn.Module) -> None:
        """Permute ``model``'s parameters and BatchNorm running statistics in place."""
        with torch.no_grad():
            state = model.state_dict()
            for name, value in self.symmetry.apply(state, self.perms).items():
                state[name].copy_(value)


def weight_matching(model: nn.Module, w1: Tensor, w2: Tensor, seed: int = 0,
                    max_sweeps: int = 100) -> Alignment:
    """The permutations pi of ``model``'s hidden units maximising <w1, pi(w2)> (the module
    docstring's coordinate descent), from the identity, groups in a random order per sweep
    drawn from ``seed``; at most ``max_sweeps`` sweeps."""
    if max_sweeps < 1:
        raise ValueError(f"weight_matching: max_sweeps = {max_sweeps} is not allowed: >= 1")
    sym, space = symmetry(model), ParameterSpace(model)
    if w1.shape != (space.dim,) or w2.shape != (space.dim,):
        raise ValueError(f"weight_matching: w1 {tuple(w1.shape)} and w2 {tuple(w2.shape)} must "
                         f"both be flat vectors of the model's {space.dim} parameters")
    t0 = time.perf_counter()
    a, b = space.unflatten(w1.double()), space.unflatten(w2.double())
    perms = [torch.arange(n, device=w1.device) for n in sym.sizes]
    gen = torch.Generator().manual_seed(seed)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for k in torch.randperm(len(perms), generator=gen).tolist():
            axes = [x for x in sym.groups[k] if x.parameter]
            others = sym.apply({x.name: b[x.name] for x in axes}, perms, skip=k)
            cost = sum(_units_first(a[x.name], x) @ _units_first(others[x.name], x).T
                       for x in axes)
            cost = cost.cpu().numpy()
            _, cols = linear_sum_assignment(cost, maximize=True)
            old = cost[np.arange(len(cols)), perms[k].cpu().numpy()].sum()
            new = cost[np.arange(len(cols)), cols].sum()
            if new > old + 1e-12 * max(abs(old), 1.0):
                perms[k] = torch.as_tensor(cols, device=w1.device)
                improved = True
        if not improved:
            break
    result = Alignment(sym, space, perms, sweeps=sweeps)
    result.objective = float(w1.double().dot(result.apply(w2.double())))
    result.identity_objective = float(w1.double().dot(w2.double()))
    result.seconds = time.perf_counter() - t0
    return result
