"""What every step solver returns and shares: the step, the registry of solvers by name, and
the Cauchy point, theta = t v, the fallback that is never worse than not moving."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geodesic.core.registry import Registry

SOLVERS: Registry[type] = Registry("solver")


@dataclass
class Step:
    theta: Tensor
    quad: Tensor | None = None  # theta^T g theta when the solver has it for free
    residual: float | None = None  # relative residual of the linear solve (cg)


def cauchy_length(v_norm: float, vgv: float, eta: float, beta: float) -> float:
    """t of the Cauchy point theta = t v: argmin over 0 <= t <= eta / ||v|| of
    t^2 v^T g v - beta t ||v||^2 (its value is <= 0)."""
    t = eta / v_norm
    return min(t, beta * v_norm**2 / (2.0 * vgv)) if vgv > 0 else t


def no_worse_than_standing(step: Step, v: Tensor, vgv: float, eta: float, beta: float) -> Step:
    """``step`` when q(theta) = theta^T g theta - beta <theta, v> <= 0 (no worse than theta = 0),
    else the Cauchy point along v; ``vgv`` = v^T g v."""
    if float(step.quad) - beta * float(step.theta.dot(v)) <= 0.0:
        return step
    t = cauchy_length(float(v.norm()), vgv, eta, beta)
    return Step(v * t, torch.as_tensor(t * t * vgv, dtype=v.dtype), step.residual)
