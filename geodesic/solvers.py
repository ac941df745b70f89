"""Solvers of the per-step problem

    theta* = argmin_theta  theta^T g theta - beta <theta, v>   subject to  ||theta||_2 <= eta

given a :class:`~geodesic.metric.LocalMetric` (products with g at the current point) and the
objective's direction v. Every solver returns a :class:`Step` with ||theta|| <= eta.

    qp       projected accelerated gradient on the quadratic (the paper's formulation)
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

from geodesic.metric import LocalMetric
from geodesic.registry import Registry

SOLVERS: Registry[type] = Registry("solver")


@dataclass
class Step:
    theta: Tensor
    quad: Tensor | None = None  # theta^T g theta when the solver has it for free
    residual: float | None = None  # relative residual of the linear solve (cg)


def _scale_to_ball(theta: Tensor, eta: float) -> Tensor:
    norm = theta.norm()
    return theta * (eta / norm) if norm > eta else theta


@SOLVERS.register("cg")
@dataclass
class ConjugateGradient:
    """Krylov solution of the step problem with A = g + lambda I, c = beta v, k products.

    ``trust_region=True`` (default): k Lanczos steps on A from c give A ~ Q T Q^T; the step
    problem restricted to the Krylov space, min y^T T y - c^T Q y s.t. ||y|| <= eta, is solved
    exactly (eigendecomposition of the k x k T, bisection on the multiplier mu of
    2 (T + mu I) y = ||c|| e_1), so lambda + mu is the damping that makes ||theta|| = eta
    (the GLTR method). ``trust_region=False``: k CG iterations on A x = c / 2, then
    theta = x min(1, eta / ||x||). Either way theta^T g theta comes for free.
    """

    iters: int = 10
    damping: float = 1e-3
    trust_region: bool = True

    @classmethod
    def from_settings(cls, s) -> "ConjugateGradient":
        return cls(iters=s.cg_iters, damping=s.damping, trust_region=s.cg_mode == "trust_region")

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        c = beta * v
        return (self._lanczos if self.trust_region else self._rescaled_cg)(local, c, eta)

    def _rescaled_cg(self, local: LocalMetric, c: Tensor, eta: float) -> Step:
        b = 0.5 * c
        x = torch.zeros_like(b)
        r, p = b.clone(), b.clone()
        rr = r.dot(r)
        b_norm = rr.sqrt()
        for _ in range(self.iters):
            if rr.sqrt() <= 1e-12 * b_norm:
                break
            ap = local.mvp(p) + self.damping * p
            alpha = rr / p.dot(ap)
            x.add_(alpha * p)
            r.sub_(alpha * ap)
            rr_new = r.dot(r)
            p = r + (rr_new / rr) * p
            rr = rr_new
        quad = x.dot(b - r) - self.damping * x.dot(x)
        scale = min(1.0, eta / float(x.norm().clamp_min(1e-30)))
        return Step(x * scale, quad * scale**2, float(rr.sqrt() / b_norm.clamp_min(1e-30)))

    def _lanczos(self, local: LocalMetric, c: Tensor, eta: float) -> Step:
        c_norm = c.norm()
        basis = c.new_empty(self.iters, c.numel())  # rows q_0 .. q_{k-1}: the Krylov basis Q^T
        basis[0] = c / c_norm.clamp_min(1e-30)
        alphas, betas = [], []
        for j in range(self.iters):
            u = local.mvp(basis[j])
            q = basis[: j + 1]
            h = q @ u
            alphas.append(h[j])
            u.addmv_(q.T, h, alpha=-1.0)  # full reorthogonalisation, classical Gram-Schmidt
            u.addmv_(q.T, q @ u, alpha=-1.0)  # ... applied twice ("twice is enough")
            b = u.norm()
            if j + 1 == self.iters or b <= 1e-10 * alphas[0].abs().clamp_min(1e-30):
                break
            betas.append(b)
            torch.div(u, b, out=basis[j + 1])
        k = len(alphas)
        t = torch.diag(torch.stack(alphas)).double()
        if k > 1:
            off = torch.stack(betas[: k - 1]).double()
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        d, vecs = torch.linalg.eigh(t)
        d = d.clamp_min(0.0) + self.damping
        rhs = float(c_norm) * vecs[0]  # U^T (||c|| e_1)

        def solve(mu: float) -> Tensor:
            return vecs @ (rhs / (2.0 * (d + mu)))

        y, lo, hi = solve(0.0), 0.0, float(c_norm) / (2.0 * eta)
        if y.norm() > eta:
            for _ in range(100):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if solve(mid).norm() > eta else (lo, mid)
            y = solve(hi)
        y = y.to(c.dtype)
        theta = basis[:k].T @ y
        quad = y.dot(t.to(c.dtype) @ y)
        return Step(theta, quad, None)


@SOLVERS.register("qp")
@dataclass
class ProjectedGradient:
    """FISTA on q(theta) = theta^T g theta - beta <theta, v> over the ball ||theta|| <= eta.

    Step size 1/L with L = 2 lambda_max(g), lambda_max from ``power_iters`` power iterations
    (times a safety factor of 2, since power iteration approaches lambda_max from below);
    the start point is eta v / ||v||, the optimum when g = 0.
    """

    iters: int = 20
    power_iters: int = 3

    @classmethod
    def from_settings(cls, s) -> "ProjectedGradient":
        return cls(iters=s.qp_iters)

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        u = v / v.norm().clamp_min(1e-30)
        lam = torch.zeros((), dtype=v.dtype, device=v.device)
        for _ in range(self.power_iters):
            gu = local.mvp(u)
            lam = gu.norm()
            u = gu / lam.clamp_min(1e-30)
        step = 1.0 / (4.0 * float(lam.clamp_min(1e-12)))
        theta = eta * v / v.norm().clamp_min(1e-30)
        y, t = theta.clone(), 1.0
        for _ in range(self.iters):
            grad = 2.0 * local.mvp(y) - beta * v
            new = _scale_to_ball(y - step * grad, eta)
            t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            y = new + ((t - 1.0) / t_new) * (new - theta)
            theta, t = new, t_new
        return Step(theta)


@SOLVERS.register("penalty")
@dataclass
class Penalty:
    """theta = eta d / ||d|| with d = beta v - grad D(w): one pullback, no metric products."""

    @classmethod
    def from_settings(cls, s) -> "Penalty":
        return cls()

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        d = torch.sub(v, local.distance_gradient(), alpha=1.0 / beta)  # d / beta: same theta
        return Step(d.mul_(eta / d.norm().clamp_min(1e-30)))


def build_solver(settings) -> "ConjugateGradient | ProjectedGradient | Penalty":
    """The solver named by ``settings.solver`` (a :class:`~geodesic.params.GeodesicSettings`)."""
    return SOLVERS.get(settings.solver).from_settings(settings)
