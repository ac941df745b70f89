"""Solvers on a quadratic with known g: the exact constrained optimum and the norm bound."""
from types import SimpleNamespace

import pytest
import torch

from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.solvers import SOLVERS, Penalty, ProjectedGradient
from tests.conftest import tiny_mlp, tiny_vgg_bn


class QuadraticMetric:
    """A stand-in for LocalMetric whose g is an explicit matrix, factored g = A^T A so that
    J = A on a batch of one input whose outputs have one entry per row of A (H = I)."""

    def __init__(self, g, distance_gradient=None):
        self.g, self._dg = g, distance_gradient
        d, u = torch.linalg.eigh(g)
        self.a = (u * d.clamp_min(0).sqrt()).T
        self.metric = SimpleNamespace(evals=0)

    def mvp(self, theta):
        self.metric.evals += 1
        return self.g @ theta

    def jvp(self, theta):
        return (self.a @ theta)[None]

    def pullback(self, u):
        return self.a.T @ u[0].to(self.a.dtype)

    def gram(self, u):
        self.metric.evals += 1
        return self.jvp(self.pullback(u))

    def output_inner(self, a, b):
        return (a * b).sum()

    def output_operator(self, u):
        return u

    def distance_gradient(self):
        return self._dg

    def recorded_quadratic(self, theta, rows=None):
        return theta @ self.g @ theta


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
                                    ConjugateGradient(iters=30, damping=1e-12, mode="output_basis"),
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
    modes = ({"mode": m} for m in ("trust_region", "output_basis", "rescale"))
    for kwargs in modes if name == "cg" else ({},):
        step = SOLVERS.get(name)(**kwargs)(local, v, eta, 1.0)
        assert step.theta.norm() <= eta * (1 + 1e-6)


def test_cg_reports_the_exact_quadratic_form():
    g, v = problem(seed=2)
    modes = ("trust_region", "output_basis", "rescale")
    for solver in (ConjugateGradient(iters=8, mode=m) for m in modes):
        step = solver(QuadraticMetric(g), v, 0.3, 1.0)
        assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-8)


def test_rescaled_cg_solves_the_damped_system_with_enough_iterations():
    g, v = problem(seed=3)
    damping = 0.1
    step = ConjugateGradient(iters=30, damping=damping, mode="rescale")(
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
    assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-12)


@pytest.mark.parametrize("length_batch, rows", [(0, 7), (3, 3), (7, 7), (50, 7)])
def test_penalty_measures_its_functional_step_on_the_first_inputs(float64, length_batch, rows):
    model = tiny_mlp().double()
    x = torch.randn(7, 6)
    metric = FunctionalMetric(model, x)
    w = metric.space.get(model)
    local = metric.at(w)
    evals = metric.evals
    step = Penalty(length_batch=length_batch)(local, torch.randn_like(w), 0.1, 2.0)
    assert metric.evals == evals + 1  # the pullback; the record's measurement is not counted
    dense = metric.dense(w, x[:rows])
    assert float(step.quad) == pytest.approx(float(step.theta @ dense @ step.theta), rel=1e-10)


def network_problem(kind, masked):
    """A real LocalMetric on a tiny MLP (7 inputs x 3 outputs), optionally restricted to a
    random coordinate subspace, with its dense metric P g P and a direction v in the subspace."""
    model = tiny_mlp().double()
    metric = FunctionalMetric(model, torch.randn(7, 6), kind)
    w = metric.space.get(model)
    mask = (torch.rand_like(w) > 0.3).double() if masked else None
    local = metric.at(w).restrict(mask)
    p = torch.eye(w.numel()) if mask is None else torch.diag(mask)
    v = torch.randn_like(w) if mask is None else torch.randn_like(w) * mask
    return metric, local, mask, p @ metric.dense(w) @ p, v


@pytest.mark.parametrize("mode", ["trust_region", "output_basis"])
@pytest.mark.parametrize("kind", ["logits", "fisher"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("eta", [1e-3, 0.3, 30.0])
def test_cg_on_a_network_is_the_exact_trust_region_step(float64, mode, kind, masked, eta):
    """Both Lanczos forms on a real LocalMetric: with the Krylov space complete (k past the
    rank of g, 7 inputs x 3 outputs) the step is the exact optimum from the dense metric,
    also confined to a coordinate subspace; at most k products are counted."""
    metric, local, mask, g, v = network_problem(kind, masked)
    evals = metric.evals
    step = ConjugateGradient(iters=25, damping=1e-9, mode=mode)(local, v, eta, 2.0)
    assert metric.evals - evals <= 25  # fewer when the Krylov space is complete early
    best = exact_trust_region(g + 1e-9 * torch.eye(len(g)), 2.0 * v, eta)
    assert torch.allclose(step.theta, best, rtol=1e-6, atol=1e-9 * eta)
    assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-6)
    if mask is not None:
        assert torch.all(step.theta[mask == 0] == 0)


def test_the_default_output_basis_matches_the_weight_space_basis_in_float32():
    """The default cg (output-space basis) against the weight-space basis in float32 on a conv
    net with BatchNorm: the same Krylov step to float32 rounding, so the same objective."""
    model = tiny_vgg_bn()
    metric = FunctionalMetric(model, torch.randn(16, 2, 8, 8, generator=torch.Generator()
                                                  .manual_seed(0)))
    w = metric.space.get(model)
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    local = metric.at(w)

    def objective(theta):
        return float(local.quadratic(theta)) - float(theta @ v)

    assert ConjugateGradient().mode == "output_basis"
    for eta in (1.0, 100.0):  # at 100 the Krylov space matters: 3 products are 6% off
        default = ConjugateGradient()(local, v, eta)
        weight = ConjugateGradient(mode="trust_region")(local, v, eta)
        assert float((default.theta - weight.theta).norm() / weight.theta.norm()) < 1e-4
        assert objective(default.theta) == pytest.approx(objective(weight.theta), rel=1e-5)


def weight_space_fista(g, v, eta, beta, iters, power_iters):
    """The qp iteration written directly in weight space with a dense g: the reference. Returns
    the candidates of the step: the Cauchy point along v, the start, then every iterate."""
    u = v / v.norm()
    for _ in range(power_iters):
        u = g @ u
        lam = u.norm()
        u = u / lam
    step = 1.0 / (4.0 * float(lam))
    t_cauchy = min(eta / float(v.norm()), beta * float(v @ v) / (2 * float(v @ g @ v)))
    theta = eta * v / v.norm()
    candidates = [t_cauchy * v, theta]
    y, t = theta.clone(), 1.0
    for _ in range(iters):
        new = y - step * (2.0 * g @ y - beta * v)
        new = new * min(1.0, eta / float(new.norm()))
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        y = new + (t - 1.0) / t_new * (new - theta)
        theta, t = new, t_new
        candidates.append(theta)
    return candidates


@pytest.mark.parametrize("kind", ["logits", "probs", "fisher"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("eta", [1e-3, 0.3, 30.0])
def test_qp_in_output_space_has_the_weight_space_iterates(float64, kind, masked, eta):
    """qp's output-space FISTA on a real LocalMetric gives the step of FISTA run on the dense
    metric, iterate for iterate, also in a coordinate subspace; power_iters + iters products
    plus one, and theta^T g theta exact; the step is the candidate of least q."""
    metric, local, mask, g, v = network_problem(kind, masked)
    evals = metric.evals
    step = ProjectedGradient(iters=15, power_iters=4)(local, v, eta, 2.0)
    assert metric.evals - evals == 4 + 15 + 1
    candidates = weight_space_fista(g, v, eta, 2.0, 15, 4)
    q = [float(c @ g @ c - 2.0 * c @ v) for c in candidates]
    assert any(torch.allclose(step.theta, c, rtol=1e-9, atol=1e-12 * eta) for c in candidates)
    assert float(step.theta @ g @ step.theta - 2.0 * step.theta @ v) == pytest.approx(
        min(q), rel=1e-9, abs=1e-15)
    assert step.theta.norm() <= eta * (1 + 1e-9)
    assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-9)
    if mask is not None:
        assert torch.all(step.theta[mask == 0] == 0)


def test_qp_in_float32_matches_float64_on_a_conv_net_with_batchnorm():
    """The output-space representation in float32 against the same solver in float64 on a
    conv net with BatchNorm: the step agrees to float32 rounding of the network's products."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 8, 8, generator=gen)
    steps = {}
    for dtype in (torch.float32, torch.float64):
        model = tiny_vgg_bn().to(dtype)
        metric = FunctionalMetric(model, x.to(dtype))
        w = metric.space.get(model)
        v = torch.randn(w.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        steps[dtype] = [ProjectedGradient()(metric.at(w), v, eta).theta.double()
                        for eta in (1.0, 100.0)]
    for single, double in zip(steps[torch.float32], steps[torch.float64]):
        assert float((single - double).norm() / double.norm()) < 1e-4


def ill_conditioned_problem():
    """The issue's reproduction: a 3-4-2 tanh MLP in float64 on 40 random inputs (g of
    condition number ~4e6), v random, eta = 3 ||(2g)^-1 v|| (the trust region inactive)."""
    torch.manual_seed(22)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    metric = FunctionalMetric(model, torch.randn(40, 3))
    w = metric.space.get(model)
    v = torch.randn_like(w)
    g = metric.dense(w)
    eta = 3.0 * float(torch.linalg.solve(2.0 * g, v).norm())
    return metric.at(w), g, v, eta


@pytest.mark.parametrize("solver", [ProjectedGradient(), *(ConjugateGradient(mode=m) for m in (
    "trust_region", "output_basis", "rescale"))], ids=["qp", "cg-trust_region",
                                                         "cg-output_basis", "cg-rescale"])
def test_a_step_is_never_worse_than_not_moving(float64, solver):
    """On the ill-conditioned reproduction the last FISTA iterate has q = +4.9e10 (the optimum
    is -1.07e6); every step has q(theta) <= 0, qp's at most the Cauchy point's."""
    local, g, v, eta = ill_conditioned_problem()

    def q(theta):
        return float(theta @ g @ theta - theta @ v)

    optimum = q(torch.linalg.solve(2.0 * g, v))
    assert optimum == pytest.approx(-1.07e6, rel=0.01)
    cauchy = min(eta / float(v.norm()), float(v @ v) / (2 * float(v @ g @ v))) * v
    step = solver(local, v, eta)
    assert q(step.theta) <= 0.0 and step.theta.norm() <= eta * (1 + 1e-9)
    assert float(step.quad) == pytest.approx(float(step.theta @ g @ step.theta), rel=1e-6)
    if isinstance(solver, ProjectedGradient):
        assert q(cauchy) < 0.0
        assert q(step.theta) <= q(cauchy) * (1 - 1e-12)  # the Cauchy point itself, up to rounding
        last = weight_space_fista(g, v, eta, 1.0, 20, 3)[-1]
        assert q(last) > 1e10  # what the last iterate alone would have been


def test_cg_falls_back_to_the_cauchy_point_when_its_step_is_worse_than_not_moving():
    """A Krylov step whose q(theta) > 0 (as rounding can leave it) is replaced by the Cauchy
    point along v."""
    from geodesic.core.step import Step, no_worse_than_standing
    g = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    v = torch.tensor([1.0, 0.0], dtype=torch.float64)
    worse = Step(torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor(1.0))
    step = no_worse_than_standing(worse, v, float(v @ g @ v), eta=1.0, beta=2.0)
    assert torch.allclose(step.theta, torch.tensor([0.25, 0.0], dtype=torch.float64))
    assert float(step.quad) == pytest.approx(0.25)
    kept = Step(torch.tensor([0.1, 0.0], dtype=torch.float64), torch.tensor(0.04))
    assert no_worse_than_standing(kept, v, 4.0, eta=1.0, beta=2.0) is kept
