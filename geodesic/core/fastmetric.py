"""Per-layer Jacobian products from activations captured once per point.

For a network that is a chain of layers a_l = f_l(a_{l-1}; w_l), a_0 = x, z = a_L, the Jacobian
product J theta is the forward tangent recursion

    da_0 = 0,   da_l = (df_l/da)(a_{l-1}) da_{l-1} + (df_l/dw_l)(a_{l-1}) theta_l,   J theta = da_L

evaluated from the inputs a_{l-1} (and, for non-linearities, outputs a_l) saved by ONE forward
pass at w. Unlike ``torch.func.jvp`` it does not recompute the primal pass: a linear or
convolutional layer costs two matrix products (W da + dW a), the first layer one. J^T u is
reverse mode through the retained graph of that same forward pass. Per layer (affine in its
input for fixed weights, or element-wise; the rules of
:mod:`geodesic.core.layer_rules`).

``trace_chain`` recognises such networks with ``torch.fx.symbolic_trace`` (the VGGs and MLPs of
:mod:`geodesic.common.models`, any ``nn.Sequential`` of these layers, or a ``forward`` that calls
them one after another). Anything else returns ``None`` and the metric falls back to the
generic ``torch.func`` path; the two agree to rounding (tests/core/test_fast_paths.py).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodesic.core.layer_rules import (FUNCTION_RULES, METHOD_RULES, MODULE_RULES, POOL_DIMS,
                                       Params, Rule)


@dataclass
class ChainStep:
    """One traced call: its rule, module (if any), constant arguments and parameter names."""

    rule: Rule
    module: nn.Module | None = None
    args: tuple = ()
    params: dict[str, str] = field(default_factory=dict)  # local name -> full name
    kwargs: dict[str, Any] = field(default_factory=dict)


def _supported_module(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module.padding_mode == "zeros"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.running_mean is not None and module.running_var is not None
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return not module.return_indices
    return True


def trace_chain(model: nn.Module, names: list[str]) -> list[ChainStep] | None:
    """The model as a chain of supported layers, or None when it is not one.

    ``names`` are the trainable parameters (the coordinates of w); every one must be used by
    exactly the traced layers, and every traced call must take the previous call's output as
    its only tensor argument.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # control flow, unsupported Python: use the generic path
        return None
    modules = dict(model.named_modules())
    all_params = {n for n, _ in model.named_parameters()}
    steps: list[ChainStep] = []
    previous = None
    used: set[str] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                return None
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                return None
            break
        # ``inplace`` is irrelevant here: the chain runs its own out-of-place forward
        kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
        if not node.args or node.args[0] is not previous:
            return None
        rest = node.args[1:]
        if any(isinstance(a, torch.fx.Node) for a in (*rest, *kwargs.values())):
            return None
        if node.op == "call_module":
            module = modules[node.target]
            rule = MODULE_RULES.get(type(module))
            if rule is None or rest or kwargs or not _supported_module(module):
                return None
            params = {local: f"{node.target}.{local}" if node.target else local
                      for local, _ in module.named_parameters(recurse=False)}
            if not set(params.values()) <= all_params:
                return None
            used.update(params.values())
            rest = (POOL_DIMS[type(module)],) if type(module) in POOL_DIMS else ()
            steps.append(ChainStep(rule, module, rest, params))
        elif kwargs and node.target not in ("flatten", torch.flatten):
            return None  # only flatten takes keyword arguments here
        elif node.op == "call_function" and node.target in FUNCTION_RULES:
            steps.append(ChainStep(FUNCTION_RULES[node.target], None, rest, kwargs=kwargs))
        elif node.op == "call_method" and node.target in METHOD_RULES:
            steps.append(ChainStep(METHOD_RULES[node.target], None, rest, kwargs=kwargs))
        else:
            return None
        previous = node
    if not set(names) <= used:
        return None
    return steps


class ChainLinearization:
    """The network linearised at w on inputs x: z, J theta and J^T u from one forward pass."""

    def __init__(self, steps: list[ChainStep], space, w: Tensor, x: Tensor,
                 frozen: Params, autocast=None, tangent: Callable | None = None):
        self.steps, self.space, self.autocast = steps, space, autocast
        self.tangent = tangent or partial(tangent_recursion, steps, space)
        self.leaf = w.detach().requires_grad_()
        self.params = {**frozen, **space.unflatten(w.detach())}
        params = {**frozen, **space.unflatten(self.leaf)}
        self.saved: list[Any] = []
        with torch.enable_grad(), self._autocast():
            a = x
            for step in steps:
                if step.rule.linear is not None:
                    a, saved = step.rule.linear(step, a), None
                else:
                    a, saved = step.rule.forward(step, a, _local(step, params))
                    saved = saved.detach()
                self.saved.append(saved)
        self.out = a
        self.z = a.detach().to(w.dtype)  # float32 (or float64) even when the pass ran in bf16

    def _autocast(self):
        return self.autocast() if self.autocast is not None else nullcontext()

    @torch.no_grad()
    def jvp(self, theta: Tensor, rows: int | None = None) -> Tensor:
        """J theta by the forward tangent recursion over the saved activations; with ``rows``,
        over the first ``rows`` inputs' activations only (every saved tensor is batch-first)."""
        saved = self.saved if rows is None else [None if s is None else s[:rows]
                                                 for s in self.saved]
        with self._autocast():
            da = self.tangent(theta, self.params, saved)
        if da is None:
            return torch.zeros_like(self.z[:rows])
        return da.to(self.z.dtype)

    def vjp(self, u: Tensor) -> Tensor:
        """J^T u (summed over the batch) by reverse mode through the retained forward graph."""
        (grad,) = torch.autograd.grad(self.out, self.leaf, u.to(self.out.dtype),
                                      retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.leaf) if grad is None else grad


def tangent_recursion(steps: list[ChainStep], space, theta: Tensor, params: Params,
                      saved: list[Any]) -> Tensor | None:
    """da_L of the recursion da_l = (df_l/da) da_{l-1} + (df_l/dw_l) theta_l, da_0 = 0, from the
    activations ``saved`` by one forward pass at ``params``: J theta (None when it is zero).
    A pure function of tensors, so ``torch.compile`` can take it whole (``compiled_tangent``)."""
    tangents = space.unflatten(theta)
    da = None
    for step, s in zip(steps, saved):
        if step.rule.linear is not None:
            da = None if da is None else step.rule.linear(step, da)
        else:
            dp = {k: tangents.get(full) for k, full in step.params.items()}
            da = step.rule.tangent(step, s, _local(step, params), dp, da)
    return da


def compiled_tangent(steps: list[ChainStep], space) -> Callable:
    """``tangent_recursion`` of this chain under ``torch.compile``. The activations and weights
    are its inputs, so a new point w reuses the compiled code; a new batch size recompiles."""
    return torch.compile(partial(tangent_recursion, steps, space), dynamic=False)


def _local(step: ChainStep, params: Params) -> Params:
    return {local: params[full] for local, full in step.params.items()}
