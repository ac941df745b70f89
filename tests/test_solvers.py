"""Solvers on a quadratic with known g: the exact constrained optimum and the norm bound."""
import pytest
import torch

from geodesic.solvers import SOLVERS, ConjugateGradient, Penalty, ProjectedGradient


class QuadraticMetric:
    """A stand-in for LocalMetric whose g is an explicit matrix."""

    def __init__(self, g, distance_gradient=None):
        self.g, self._dg = g, distance_gradient

    def mvp(self, theta):
        return self.g @ theta

    def distance_gradient(self):
        return self._dg


def exact_trust_region(g, c, eta):
    """argmin theta^T g theta - c^T theta, ||theta|| <= eta, by eigendecomposition + bisection."""
    d, u = torch.linalg.eigh(g)
    rhs = u.T @ c
    solve = lambda mu: u @ (rhs / (2 * (d + mu)))
    lo, hi = 0.0, float(c.norm()) / (2 * eta) + 1.0
    if d.min() > 1e-12 and solve(0.0).norm() <= eta:
        return solve(0.0)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if solve(mid).norm() > eta else (lo, mid)
    return solve(hi)


def problem(n=30, rank=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(rank, n, generator=gen, dtype=torch.float64)
    return a.T @ a / rank, torch.randn(n, generator=gen, dtype=torch.float64)


def q(g, c, theta):
    return float(theta @ g @ theta - c @ theta)


@pytest.mark.parametrize("eta", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("solver", [ConjugateGradient(iters=30, damping=1e-12),
                                    ProjectedGradient(iters=3000, power_iters=30)])
def test_cg_and_qp_reach_the_exact_optimum(solver, eta):
    g, v = problem()
    beta = 2.0
    best = exact_trust_region(g, beta * v, eta)
    step = solver(QuadraticMetric(g), v, eta, beta)
    assert step.theta.norm() <= eta * (1 + 1e-6)
    assert q(g, beta * v, step.theta) <= q(g, beta * v, best) + 0.01 * abs(q(g, beta * v, best))


@pytest.mark.parametrize("name", SOLVERS.names())
@pytest.mark.parametrize("eta", [1e-4, 0.1, 10.0])
def test_every_solver_keeps_the_norm_bound(name, eta):
    g, v = problem(seed=1)
    local = QuadraticMetric(g, distance_gradient=torch.randn(30, dtype=torch.float64))
    for kwargs in ({}, {"trust_region": False}) if name == "cg" else ({},):
        step = SOLVERS.get(name)(**kwargs)(local, v, eta, 1.0)
        assert step.theta.norm() <= eta * (1 + 1e-6)


def test_cg_reports_the_exact_quadratic_form():
    g, v = problem(seed=2)
    for solver in (ConjugateGradient(iters=8), ConjugateGradient(iters=8, trust_region=False)):
        step = solver(QuadraticMetric(g), v, 0.3, 1.0)
        assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-8)


def test_rescaled_cg_solves_the_damped_system_with_enough_iterations():
    g, v = problem(seed=3)
    damping = 0.1
    step = ConjugateGradient(iters=30, damping=damping, trust_region=False)(
        QuadraticMetric(g), v, 1e9, 2.0)
    exact = torch.linalg.solve(g + damping * torch.eye(30, dtype=torch.float64), v)
    assert torch.allclose(step.theta, exact, atol=1e-8)
    assert step.residual < 1e-8


def test_penalty_steps_along_the_pull_minus_the_distance_gradient():
    g, v = problem(seed=4)
    dg = torch.randn(30, dtype=torch.float64)
    step = Penalty()(QuadraticMetric(g, dg), v, 0.2, 3.0)
    d = 3.0 * v - dg
    assert torch.allclose(step.theta, 0.2 * d / d.norm())
