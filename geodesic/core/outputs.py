"""The output spaces of the metric: g(w) = (1/|B|) sum_x J_x^T H(z_x) J_x with H the Hessian
of an output distance D at z = z0 (``OUTPUT_KINDS``: its product H u), and dD/dz for the pull
back to a reference function.

    logits  H = I                  D = 1/2 ||z - z0||^2
    probs   H = S^2, S = diag(p) - p p^T    D = 1/2 ||p - p0||^2
    fisher  H = S                  D = KL(p0 || p)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from geodesic.core.registry import Registry

OUTPUT_KINDS: Registry[Callable] = Registry("metric output kind")


def _softmax_jacobian_product(z: Tensor, u: Tensor) -> Tensor:
    """S u with S = diag(p) - p p^T, p = softmax(z), row by row."""
    p = torch.softmax(z, dim=-1)
    return p * u - p * (p * u).sum(-1, keepdim=True)


@OUTPUT_KINDS.register("logits")
def logits_operator(z: Tensor, u: Tensor) -> Tensor:
    return u


@OUTPUT_KINDS.register("probs")
def probs_operator(z: Tensor, u: Tensor) -> Tensor:
    return _softmax_jacobian_product(z, _softmax_jacobian_product(z, u))


@OUTPUT_KINDS.register("fisher")
def fisher_operator(z: Tensor, u: Tensor) -> Tensor:
    return _softmax_jacobian_product(z, u)


def output_distance_gradient(kind: str, z: Tensor, z0: Tensor) -> Tensor:
    """dD/dz for the output distance matching each metric (its Hessian at z = z0 is H):

    logits  D = 1/2 ||z - z0||^2            dD/dz = z - z0
    probs   D = 1/2 ||p - p0||^2            dD/dz = S (p - p0)
    fisher  D = KL(p0 || p)                 dD/dz = p - p0
    """
    if kind == "logits":
        return z - z0
    dp = torch.softmax(z, -1) - torch.softmax(z0, -1)
    return _softmax_jacobian_product(z, dp) if kind == "probs" else dp
