"""Solvers of the per-step problem

    theta* = argmin_theta  theta^T g theta - beta <theta, v>   subject to  ||theta||_2 <= eta

given a :class:`~geodesic.core.metric.LocalMetric` (products with g at the current point) and the
objective's direction v. Every solver returns a :class:`Step` with ||theta|| <= eta; ``qp`` and
``cg`` return a step no worse than not moving, q(theta) = theta^T g theta - beta <theta, v> <= 0:
``qp`` keeps its best iterate, starting from the Cauchy point theta = t v, t = min(eta / ||v||,
beta ||v||^2 / (2 v^T g v)), whose q = t^2 v^T g v - beta t ||v||^2 is <= 0; ``cg`` falls back
to that point should rounding leave its Krylov step with q > 0.

    qp       projected accelerated gradient on the quadratic (the paper's formulation), run
             in output space
    cg       Krylov (Lanczos / conjugate-gradient) solution with A = g + lambda I: the exact
             trust-region step in the Krylov space, or CG on A theta = beta v / 2 followed by
             theta <- theta min(1, eta / ||theta||) (natural-gradient view)
    penalty  the authors' released-code form: a step of Euclidean length eta along
             -grad [D(w) - beta <w, v>], D the output distance to the starting network,
             i.e. theta = eta d / ||d||,  d = beta v - grad D(w)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geodesic.core.krylov import ConjugateGradient  # registers cg
from geodesic.core.metric import LocalMetric
from geodesic.core.settings import GeodesicSettings
from geodesic.core.step import SOLVERS, Step, cauchy_length


@SOLVERS.register("qp")
@dataclass
class ProjectedGradient:
    """FISTA on q(theta) = theta^T g theta - beta <theta, v> over the ball ||theta|| <= eta.

    Step size 1/L with L = 2 lambda_max(g), lambda_max from ``power_iters`` power iterations
    (times a safety factor of 2, since power iteration approaches lambda_max from below);
    the start point is eta v / ||v||, the optimum when g = 0.

    Every iterate lies in span{v} + range(J^T): the gradient 2 g y - beta v does, and the ball
    projection and the momentum are linear combinations. So an iterate is held in output space
    as theta = a v + J^T rho / |B| with its image J theta = a J v + s, s = J J^T rho / |B|
    (one product, ``LocalMetric.gram``):

        gradient step   a <- a + beta / L,   rho <- rho - (2 / L) H J theta
        norm            ||theta||^2 = a^2 ||v||^2 + 2 a <J v, rho> + <rho, s>

    and the power iteration u <- g u / ||g u|| from u = v / ||v|| as g u = J^T r / |B| with
    r <- H s / ||g u||, ||g u||^2 = <r, s>. The iterates are those of weight-space FISTA; no
    n-vector is held (a step's memory is that of one product) until theta is formed at the
    end, and theta^T g theta = <J theta, H J theta> comes free. The step is the iterate of
    least q(theta) = <J theta, H J theta> - beta (a ||v||^2 + <J v, rho>) among the Cauchy
    point, the start and the iterates (FISTA is not monotone; far from convergence, when g is
    ill-conditioned, its last iterate can be worse than not moving).
    """

    iters: int = GeodesicSettings.qp_iters
    power_iters: int = 3

    @classmethod
    def from_settings(cls, s) -> "ProjectedGradient":
        return cls(iters=s.qp_iters)

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        v_norm = float(v.norm())
        if v_norm == 0.0:
            return Step(torch.zeros_like(v), torch.zeros((), dtype=v.dtype, device=v.device))
        inner, apply_h = local.output_inner, local.output_operator

        def gram(rho: Tensor) -> Tensor:
            return local.gram(rho.to(v.dtype)).double()

        jv = local.jvp(v).double()
        r, lam = apply_h(jv) / v_norm, 0.0
        for _ in range(self.power_iters):
            s = gram(r)
            lam = float(inner(r, s)) ** 0.5
            r = apply_h(s) / max(lam, 1e-30)
        step = 1.0 / (4.0 * max(lam, 1e-12))

        def value(point) -> float:  # q(theta) = theta^T g theta - beta <theta, v>
            image = point[0] * jv + point[2]
            return float(inner(image, apply_h(image))) - beta * (
                point[0] * v_norm**2 + float(inner(jv, point[1])))

        zero = torch.zeros_like(jv)
        cauchy = (cauchy_length(v_norm, float(inner(jv, apply_h(jv))), eta, beta), zero, zero)
        # (a, rho, s): theta; y the extrapolated point; both start at eta v / ||v||
        theta = (eta / v_norm, zero, zero)
        best = min((cauchy, theta), key=value)
        y, t = theta, 1.0
        for _ in range(self.iters):
            a = y[0] + step * beta
            rho = y[1] - 2.0 * step * apply_h(y[0] * jv + y[2])
            s = gram(rho)
            norm2 = a * a * v_norm**2 + 2.0 * a * float(inner(jv, rho)) + float(inner(rho, s))
            shrink = min(1.0, eta / max(norm2, 1e-60) ** 0.5)
            new = (a * shrink, rho * shrink, s * shrink)
            t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            c = (t - 1.0) / t_new
            y = tuple(n + c * (n - o) for n, o in zip(new, theta))
            theta, t = new, t_new
            best = min((best, theta), key=value)
        a, rho, s = best
        image = a * jv + s
        local.metric.evals += 1  # J v and the pullback forming theta: one product's worth
        theta_w = local.pullback(rho.to(v.dtype)).add_(v, alpha=a)
        return Step(theta_w, torch.as_tensor(float(inner(image, apply_h(image))), dtype=v.dtype))


@SOLVERS.register("penalty")
@dataclass
class Penalty:
    """theta = eta d / ||d|| with d = beta v - grad D(w): one pullback, no metric products.

    The step's theta^T g theta (the record's functional step) is measured by one jvp on the first
    ``length_batch`` inputs of the metric batch (0: all of them): an unbiased estimate of the
    whole batch's value when the batch is a random draw, at about length_batch / |B| of the
    cost of a jvp on the whole batch (bench/README.md). Like the loop's own measurement, it is
    not counted in ``evals``.
    """

    length_batch: int = GeodesicSettings.penalty_length_batch

    @classmethod
    def from_settings(cls, s) -> "Penalty":
        return cls(length_batch=s.penalty_length_batch)

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        d = torch.sub(v, local.distance_gradient(), alpha=1.0 / beta)  # d / beta: same theta
        theta = d.mul_(eta / d.norm().clamp_min(1e-30))
        return Step(theta, local.recorded_quadratic(theta, rows=self.length_batch or None))


def build_solver(settings) -> "ConjugateGradient | ProjectedGradient | Penalty":
    """The solver named by ``settings.solver`` (a
    :class:`~geodesic.core.settings.GeodesicSettings`)."""
    return SOLVERS.get(settings.solver).from_settings(settings)
