"""How each supported layer runs forward and propagates a tangent (per layer, affine in its
input for fixed weights, or element-wise):


    Linear     y = W a + b                 dy = W da + dW a + db
    ConvNd     y = W * a + b               dy = W * da + dW * a + db
    BatchNorm  y = g (a - m) / s + c       dy = (g / s) da + ((a - m) / s) dg + dc     (eval mode:
                                           running mean m, s = sqrt(running var + eps))
    ReLU       y = max(a, 0)               dy = 1[y > 0] da
    LeakyReLU  y = a (a > 0) + k a (a<=0)  dy = da 1[a > 0] + k da 1[a <= 0]
    Tanh       y = tanh a                  dy = (1 - y^2) da
    Sigmoid    y = sigma(a)                dy = y (1 - y) da
    MaxPoolNd  y_i = a_{idx(i)}            dy_i = da_{idx(i)}   (the argmax indices of the pass)
    AvgPool, AdaptiveAvgPool, Flatten, view, reshape, Identity, Dropout (eval): linear, dy = f(da)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Params = dict[str, Tensor]


@dataclass
class Rule:
    """How one layer runs forward (keeping what its tangent needs) and propagates a tangent.

    ``forward(step, a, p) -> (y, saved)`` and ``tangent(step, saved, p, dp, da) -> dy``, where p
    are the layer's parameters, dp their tangents (None for frozen ones) and da the input tangent
    (None means zero). A parameter-free linear layer gives ``linear=f`` instead: y = f(a),
    dy = f(da). A tangent owns the da it is given (the recursion's previous output, never read
    again) and may overwrite it; it returns a tensor with its own memory (no broadcast view).
    """

    forward: Callable | None = None
    tangent: Callable | None = None
    linear: Callable | None = None


def _linear_forward(step, a, p):
    return F.linear(a, p["weight"], p.get("bias")), a


def _linear_tangent(step, a, p, dp, da):
    dy = None
    if dp.get("weight") is not None or dp.get("bias") is not None:
        dw = dp.get("weight")
        dy = F.linear(a, dw if dw is not None else torch.zeros_like(p["weight"]), dp.get("bias"))
    if da is None:
        return dy
    if dy is None:
        return F.linear(da, p["weight"])
    if da.dim() == 2:  # dy += da W^T in one call, into the fresh dy; an in-place op is not
        # autocast, so the operands are cast to dy's dtype here (no-ops without autocast)
        return dy.addmm_(da.to(dy.dtype), p["weight"].t().to(dy.dtype))
    return dy.add_(F.linear(da, p["weight"]).to(dy.dtype))


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv(step, a, weight, bias):
    m = step.module
    return _CONV[len(m.kernel_size)](a, weight, bias, m.stride, m.padding, m.dilation, m.groups)


def _conv_forward(step, a, p):
    return _conv(step, a, p["weight"], p.get("bias")), a


def _conv_tangent(step, a, p, dp, da):
    dy = None
    if dp.get("weight") is not None or dp.get("bias") is not None:
        dw = dp.get("weight")
        dy = _conv(step, a, dw if dw is not None else torch.zeros_like(p["weight"]),
                   dp.get("bias"))
    if da is None:
        return dy
    dx = _conv(step, da, p["weight"], None)
    return dx if dy is None else dy.add_(dx)  # dy is a fresh tensor


def _channel(v: Tensor, ndim: int) -> Tensor:
    """A per-channel vector shaped to broadcast over (N, C, ...)."""
    return v.view(1, -1, *([1] * (ndim - 2)))


def _bn_forward(step, a, p):
    m = step.module
    y = F.batch_norm(a, m.running_mean, m.running_var, p.get("weight"), p.get("bias"),
                     False, 0.0, m.eps)
    return y, a


def _bn_tangent(step, a, p, dp, da):
    """dy = (g / s) da + k a + (dc - k m) with k = dg / s: per-channel factors, so at most two
    fused passes (addcmul) over the activations."""
    m = step.module
    inv = (m.running_var + m.eps).rsqrt()
    dg, dc = dp.get("weight"), dp.get("bias")
    k = None if dg is None else inv * dg
    shift = None if k is None else -k * m.running_mean  # the per-channel constant
    if dc is not None:
        shift = dc if shift is None else shift + dc
    dy = None if k is None else torch.addcmul(_channel(shift, a.ndim), a, _channel(k, a.ndim))
    if da is not None:
        scale = _channel(inv if p.get("weight") is None else inv * p["weight"], a.ndim)
        if dy is not None:
            return dy.addcmul_(da, scale)  # dy is a fresh tensor
        return da * scale if shift is None else torch.addcmul(_channel(shift, a.ndim), da, scale)
    if dy is not None or shift is None:
        return dy
    return _channel(shift, a.ndim).expand_as(a).contiguous()  # a tensor of its own, see Rule


def _pool_forward(step, a, p):
    m = step.module
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[step.args[0]]
    y, idx = pool(a, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                  return_indices=True)
    return y, idx


def _pool_tangent(step, idx, p, dp, da):
    if da is None:
        return None
    return da.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)


def _elementwise(fn: Callable, slope: Callable) -> Rule:
    """y = fn(a), dy = s da with the slope s = fn'(a) = slope(step, a, y) formed once per point."""
    def forward(step, a, p):
        y = fn(step, a)
        return y, slope(step, a.detach(), y.detach())

    def tangent(step, s, p, dp, da):
        return None if da is None else da.mul_(s)  # da is the recursion's own: overwritten

    return Rule(forward, tangent)


def _relu_forward(step, a, p):
    y = F.relu(a)
    return y, y  # the graph keeps y anyway: no extra memory


def _relu_tangent(step, y, p, dp, da):
    # da 1[y > 0] in one pass (the kernel ReLU's own backward uses), written over da
    return None if da is None else torch.ops.aten.threshold_backward.grad_input(da, y, 0,
                                                                                grad_input=da)


RELU = Rule(_relu_forward, _relu_tangent)
TANH = _elementwise(lambda s, a: torch.tanh(a), lambda s, a, y: 1 - y * y)
SIGMOID = _elementwise(lambda s, a: torch.sigmoid(a), lambda s, a, y: y * (1 - y))
LEAKY = _elementwise(lambda s, a: F.leaky_relu(a, s.module.negative_slope),
                     lambda s, a, y: torch.where(a > 0, 1.0, s.module.negative_slope).to(a.dtype))
IDENTITY = Rule(linear=lambda step, a: a)

MODULE_RULES: dict[type, Rule] = {
    nn.Linear: Rule(_linear_forward, _linear_tangent),
    nn.Conv1d: Rule(_conv_forward, _conv_tangent),
    nn.Conv2d: Rule(_conv_forward, _conv_tangent),
    nn.Conv3d: Rule(_conv_forward, _conv_tangent),
    nn.BatchNorm1d: Rule(_bn_forward, _bn_tangent),
    nn.BatchNorm2d: Rule(_bn_forward, _bn_tangent),
    nn.BatchNorm3d: Rule(_bn_forward, _bn_tangent),
    nn.MaxPool1d: Rule(_pool_forward, _pool_tangent),
    nn.MaxPool2d: Rule(_pool_forward, _pool_tangent),
    nn.MaxPool3d: Rule(_pool_forward, _pool_tangent),
    nn.ReLU: RELU, nn.Tanh: TANH, nn.Sigmoid: SIGMOID, nn.LeakyReLU: LEAKY,
    nn.Identity: IDENTITY, nn.Dropout: IDENTITY,
    nn.Flatten: Rule(linear=lambda step, a: a.flatten(step.module.start_dim,
                                                      step.module.end_dim)),
    nn.AvgPool2d: Rule(linear=lambda step, a: step.module(a)),
    nn.AdaptiveAvgPool2d: Rule(linear=lambda step, a: step.module(a)),
}
POOL_DIMS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}

# Functions and tensor methods a traced forward may call on the running activation.
FUNCTION_RULES: dict[Any, Rule] = {
    torch.flatten: Rule(linear=lambda step, a: torch.flatten(a, *step.args, **step.kwargs)),
    torch.relu: RELU, F.relu: RELU, torch.tanh: TANH, torch.sigmoid: SIGMOID,
}
METHOD_RULES: dict[str, Rule] = {
    "flatten": Rule(linear=lambda step, a: a.flatten(*step.args, **step.kwargs)),
    "view": Rule(linear=lambda step, a: a.reshape(*step.args)),
    "reshape": Rule(linear=lambda step, a: a.reshape(*step.args)),
    "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID,
}
