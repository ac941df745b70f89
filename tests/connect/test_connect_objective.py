"""The Connect objective on a tiny network: the walk arrives within eps and joins w2, never
overshoots it, stops where its budget ends, and with the constant pull does not crawl near w2;
the anchor pulls toward w2's outputs or toward their interpolation with w1's."""
import pytest
import torch

from geodesic.connect.objective import Connect, InterpolatedAnchor, connect_objective
from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import Anchor
from geodesic.core.traverse import traverse
from tests.conftest import tiny_mlp

pytestmark = pytest.mark.usefixtures("one_thread")

ETA = 0.2


def _toward(tol_eps=0.05, steps=400, constant_pull=False, beta=1.0):
    model = tiny_mlp(0)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    metric = FunctionalMetric(model, x, batch_size=16, seed=5)
    w1 = metric.space.get(model)
    w2 = w1 + torch.randn(w1.shape, generator=torch.Generator().manual_seed(2))
    objective = Connect(w1, w2, tol_eps, constant_pull)
    path = traverse(model, objective, metric, ConjugateGradient(iters=4), eta=ETA, beta=beta,
                    max_steps=steps)
    return path, objective, w1, w2


def test_the_walk_ends_within_eps_and_joins_the_target():
    path, objective, w1, w2 = _toward()
    scale = float((w2 - w1).norm())
    assert float((objective.end - w2).norm()) <= 0.05 * scale
    assert path.records[-1]["distance_rel"] <= 0.05
    assert torch.equal(path.weights, w2)
    assert set(path.milestones) == {"arrived", "joined"}
    assert all(r["step_norm"] <= ETA * (1 + 1e-6) for r in path.records)


def test_steps_never_overshoot_the_target():
    path, objective, w1, w2 = _toward(tol_eps=1e-3, steps=200)
    distances = [r["distance"] for r in path.records]
    norms = [r["step_norm"] for r in path.records]
    before = [float((w2 - w1).norm())] + distances[:-1]
    assert all(n <= d * (1 + 1e-6) for n, d in zip(norms, before))


def test_the_constant_pull_arrives_where_the_papers_pull_crawls():
    """beta 0.1 on a curved network: the paper's steps shrink with the distance left (the
    geometric tail of the module docstring), the constant pull's keep the length eta."""
    crawl, _, w1, w2 = _toward(tol_eps=1e-3, beta=0.1)
    pull, objective, _, _ = _toward(tol_eps=1e-3, beta=0.1, constant_pull=True)
    straight = float((w2 - w1).norm()) / ETA  # steps of a walk at eta along the chord
    assert set(pull.milestones) == {"arrived", "joined"}
    assert len(pull.records) <= 1.5 * straight
    assert len(crawl.records) > 3 * len(pull.records)
    assert min(r["step_norm"] for r in crawl.records) < 0.01 * ETA
    assert torch.equal(pull.weights, w2)
    first, _, _, _ = _toward(tol_eps=1e-3, beta=0.1, steps=1)
    second, _, _, _ = _toward(tol_eps=1e-3, beta=0.1, steps=1, constant_pull=True)
    assert torch.equal(first.weights, second.weights)  # at w1, ||w2 - w|| = ||w2 - w1||


def test_the_constant_pull_has_the_chord_length_everywhere():
    w1, w2 = torch.zeros(5), torch.arange(5.0)
    objective = Connect(w1, w2, 0.01, constant_pull=True)
    for w in (w1, torch.full((5,), 3.0), w2 - 1e-3):
        v = objective.direction(w, None)
        assert float(v.norm()) == pytest.approx(float(w2.norm()), rel=1e-6)
        assert torch.allclose(v / v.norm(), (w2 - w) / (w2 - w).norm())


def test_a_walk_out_of_budget_stops_where_it_is():
    path, objective, w1, w2 = _toward(steps=3)
    assert set(path.milestones) == {"stopped"}
    assert torch.equal(path.weights, objective.end)
    assert path.records[-1]["distance_rel"] > 0.05


@pytest.mark.parametrize("batch", [None, 5])  # the whole pool, or drawn rows of it
def test_the_interpolated_anchor_is_the_gradient_of_the_distance_to_the_output_interpolation(
        float64, batch):
    """v = -grad_w 1/2 mean ||f(x; w) - ((1 - t) f(x; w1) + t f(x; w2))||^2 with t = 1 -
    ||w2 - w|| / ||w2 - w1||, against autograd on the batch the metric drew."""
    model = tiny_mlp(0).double()
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    w1 = FunctionalMetric(model, x).space.get(model)
    w2 = w1 + torch.randn(w1.shape, generator=torch.Generator().manual_seed(4),
                          dtype=torch.float64)
    metric = FunctionalMetric(model, x, batch_size=batch, reference=w2, seed=1)
    objective = connect_objective(Connect(w1, w2, 0.01), metric, w1, 1.0, "interpolated")
    anchor = objective.parts[1][1]
    assert isinstance(anchor, InterpolatedAnchor)
    w = w1 + 0.3 * (w2 - w1) + 0.05 * torch.randn(w1.shape, dtype=torch.float64)
    local = metric.at(w)
    rows = local.x
    t = 1 - float((w2 - w).norm() / (w2 - w1).norm())
    assert anchor.progress_fraction(w) == pytest.approx(t, abs=1e-12) and 0 < t < 1
    z_t = (1 - t) * metric.function(w1, rows) + t * metric.function(w2, rows)
    dist = lambda v: 0.5 * ((metric.function(v, rows) - z_t) ** 2).sum() / len(rows)
    assert torch.allclose(anchor.direction(w, local), -torch.func.grad(dist)(w), atol=1e-10)
    assert anchor.progress_fraction(w2) == 1.0 and anchor.progress_fraction(w1 - w2) == 0.0


def test_the_anchor_toward_w2_is_the_plain_anchor_and_a_zero_anchor_adds_nothing():
    model = tiny_mlp(0)
    x = torch.randn(8, 6)
    metric = FunctionalMetric(model, x)
    w1 = metric.space.get(model)
    connect = Connect(w1, w1 + 1, 0.01)
    assert isinstance(connect_objective(connect, metric, w1, 0.5, "w2").parts[1][1], Anchor)
    for target in ("w2", "interpolated"):
        assert connect_objective(connect, metric, w1, 0.0, target) is connect
