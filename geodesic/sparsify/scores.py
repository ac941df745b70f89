"""Which coordinates a sparsity target removes: magnitude, or the function's own sensitivity.

The projection P_p ranks the prunable coordinates by |w_i| c_i and zeroes the smallest; a target
rule gives the factor c at the current point:

    magnitude   c_i = 1                               |w_i|, the paper's target
    obd         c_i = sqrt(g_ii)                      w_i^2 g_ii: the second-order change of the
                                                      function when w_i alone is set to 0 (optimal
                                                      brain damage with g for the Hessian)
    obd_layer   c_i = sqrt(g_ii / S_l(i))             the same score over its layer's mean,
                S_l = mean_{j in layer l} w_j^2 g_jj  so that layers compete on equal terms

g_ii is the diagonal of the functional metric at w on one metric batch, exact: with
H(z_x) = U_x diag(lambda_x) U_x^T (the output-space operator of the metric),

    g_ii = (1/|B|) sum_x sum_k lambda_xk (u_xk^T J_x)_i^2,

from the per-example Jacobians J_x (m x n): it costs m evaluations, one pullback per output
over the batch. A traversal re-selects its target from the current point at the start of every
sparsity level (:class:`~geodesic.sparsify.objective.Sparsify`).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from geodesic.core.metric import FunctionalMetric
from geodesic.core.registry import Registry

TARGET_RULES: Registry = Registry("sparsity target rule")
CHUNK = 32  # examples whose Jacobians are held at once (m x n each)


def metric_diagonal(metric: FunctionalMetric, w: Tensor, x: Tensor) -> Tensor:
    """diag g(w) on the inputs ``x``, exact (see the module docstring); m evaluations."""
    w = w.detach()
    total = torch.zeros_like(w)
    eye = None
    for start in range(0, len(x), CHUNK):
        part = x[start:start + CHUNK]
        z = metric.function(w, part)
        if eye is None:
            eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        h = torch.stack([metric.operator(z, e.expand_as(z)) for e in eye], dim=-1)
        lam, u = torch.linalg.eigh(h)  # (b, m), (b, m, m)
        jac = vmap(jacrev(lambda v, xi: metric.function(v, xi[None])[0]),
                   in_dims=(None, 0))(w, part)  # (b, m, n)
        rotated = torch.einsum("bmk,bmn->bkn", u, jac)
        total += torch.einsum("bk,bkn->n", lam.clamp_min(0), rotated.square())
    metric.evals += z.shape[-1]
    return total / len(x)


@TARGET_RULES.register("magnitude")
def magnitude_factor(w: Tensor, diagonal: Tensor | None, segments) -> None:
    return None


@TARGET_RULES.register("obd")
def obd_factor(w: Tensor, diagonal: Tensor, segments) -> Tensor:
    return diagonal.clamp_min(0).sqrt()


@TARGET_RULES.register("obd_layer")
def obd_layer_factor(w: Tensor, diagonal: Tensor, segments) -> Tensor:
    factor = diagonal.clamp_min(0)
    for start, end in segments:
        mean = (w[start:end].square() * factor[start:end]).mean()
        factor[start:end] /= mean.clamp_min(torch.finfo(w.dtype).tiny)
    return factor.sqrt()


def target_factor(rule: str, metric: FunctionalMetric, w: Tensor, x: Tensor,
                  segments) -> Tensor | None:
    """The factor c of ``rule`` at w (None for magnitude, which needs no metric)."""
    if rule == "magnitude":
        return None
    return TARGET_RULES.get(rule)(w, metric_diagonal(metric, w, x), segments)
