"""Sparsification along geodesics: exact levels, pruned stays pruned, the path bends toward
function-preserving directions, and a resumed traversal equals an uninterrupted one."""
import pytest
import torch
from torch import nn

from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import load_latest_checkpoint
from geodesic.core.solvers import Penalty, ProjectedGradient
from geodesic.core.task_loss import TaskLoss
from geodesic.core.traverse import Callback, traverse
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import Sparsify, build_sparsify_objective, level_name
from tests.helpers.callbacks import Kill

LEVELS = [0.5, 0.8, 0.9]


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))


pytestmark = pytest.mark.usefixtures("one_thread_per_test")


def setup(levels=LEVELS, steps=15, tol=0.05, anchor=0.0, task_beta=0.0, batch=32, seed=0,
          pool=48, settle=0):
    model = net(seed)
    x = torch.randn(pool, 12, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (pool,), generator=torch.Generator().manual_seed(2))
    metric = FunctionalMetric(model, x, batch_size=batch, seed=3)
    projection = MagnitudeProjection.build(model, metric.space)
    sparsify = Sparsify(projection, levels, steps, tol, settle)
    task = TaskLoss(metric.function, x, y, 16, seed=4)
    objective = build_sparsify_objective(sparsify, anchor, task, task_beta)
    return model, metric, projection, sparsify, objective


class Weights(Callback):
    def __init__(self):
        self.steps, self.milestones = [], {}

    def on_step(self, record, w):
        self.steps.append(w.clone())

    def on_milestone(self, name, record, w):
        self.milestones[name] = (record["step"], w.clone())


@pytest.mark.parametrize("solver, settle", [(ConjugateGradient(iters=4), 0),
                                            (ConjugateGradient(iters=4), 3),
                                            (ProjectedGradient(iters=4), 0), (Penalty(), 0)])
def test_every_level_is_exact_and_pruned_weights_stay_zero(solver, settle):
    model, metric, projection, sparsify, objective = setup(anchor=0.1, settle=settle)
    seen = Weights()
    path = traverse(model, objective, metric, solver, eta=0.05, max_steps=100,
                    callbacks=[seen])
    assert list(path.milestones) == [level_name(p) for p in LEVELS] == ["0.5", "0.8", "0.9"]
    n = projection.count
    for p in LEVELS:
        step, w = seen.milestones[level_name(p)]
        zeros = int((w[projection.prunable] == 0).sum())
        assert abs(zeros - p * n) <= 1, (p, zeros, p * n)
        assert path.milestones[level_name(p)]["sparsity"] == pytest.approx(zeros / n)
        for later in seen.steps[step:]:  # every point after this level's end
            assert bool((later[(w == 0) & projection.prunable] == 0).all())
    assert not bool(path.weights[~projection.prunable].eq(0).any())  # biases never pruned


def test_a_level_ends_at_its_step_cap_with_the_exact_mask():
    model, metric, projection, sparsify, objective = setup(steps=3, tol=0.0)
    path = traverse(model, objective, metric, ConjugateGradient(iters=3), eta=0.01,
                    max_steps=100)
    assert [r["step"] for r in path.milestones.values()] == [3, 6, 9]
    assert path.steps == 9
    assert projection.sparsity(path.weights) == pytest.approx(
        round(0.9 * projection.count) / projection.count)


def test_a_step_budget_that_ends_mid_level_masks_the_current_level_only():
    model, metric, projection, sparsify, objective = setup(steps=10, tol=0.0)
    path = traverse(model, objective, metric, ConjugateGradient(iters=3), eta=0.01,
                    max_steps=14)
    assert list(path.milestones) == ["0.5", "0.8"]
    assert path.milestones["0.8"]["step"] == 14
    assert projection.sparsity(path.weights) == pytest.approx(
        round(0.8 * projection.count) / projection.count)


def _line_ratio(metric, w0, target, pieces=20):
    """Functional length per Euclidean length of the straight segment w0 -> target."""
    theta = (target - w0) / pieces
    functional = sum(float(metric.at(w0 + k * theta).quadratic(theta).clamp_min(0).sqrt())
                     for k in range(pieces))
    return functional / float((target - w0).norm())


def test_the_geodesic_is_functionally_shorter_than_the_straight_line(float64):
    model, metric, projection, sparsify, objective = setup(levels=[0.5], steps=40, pool=8)
    w0 = metric.space.get(model)
    line = _line_ratio(metric, w0, projection.project(w0, 0.5))
    # beta / eta fixed as eta -> 0 keeps the trust-region multiplier beta ||v|| / (2 eta) small
    path = traverse(model, objective, metric, ConjugateGradient(iters=30), eta=1e-3,
                    beta=1e-4, max_steps=40)
    geodesic = path.functional_length / path.euclidean_length
    assert geodesic < 0.1 * line, (geodesic, line)  # measured: 0.016 against 0.33


def test_interrupted_mid_level_and_resumed_equals_uninterrupted(tmp_path):
    kwargs = dict(eta=0.05, max_steps=45, checkpoint_every=4)
    hybrid = dict(anchor=0.1, task_beta=0.5, steps=12, settle=2)
    model, metric, projection, sparsify, objective = setup(**hybrid)
    full = traverse(model, objective, metric, ConjugateGradient(iters=3),
                    directory=tmp_path / "full", **kwargs)
    model, metric, projection, sparsify, objective = setup(**hybrid)
    with pytest.raises(KeyboardInterrupt):
        traverse(model, objective, metric, ConjugateGradient(iters=3),
                 directory=tmp_path / "cut", callbacks=[Kill(16)], **kwargs)
    ckpt = load_latest_checkpoint(tmp_path / "cut")
    assert ckpt.step == 16 and int(ckpt.objective["0.level"]) == 1  # inside the second level
    assert int(ckpt.objective["0.settling"]) == 0 and 0 < int(ckpt.objective["0.level_steps"])
    model, metric, projection, sparsify, objective = setup(**hybrid)
    resumed = traverse(model, objective, metric, ConjugateGradient(iters=3),
                       directory=tmp_path / "cut", **kwargs)
    assert torch.equal(resumed.weights, full.weights)
    assert resumed.milestones == full.milestones
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(resumed.records) == strip(full.records)
    for name in full.milestones:
        assert torch.equal(resumed.milestone_weights(name), full.milestone_weights(name))


def test_settling_keeps_the_mask_and_returns_toward_the_starting_function():
    model, metric, projection, sparsify, objective = setup(levels=[0.8], steps=10, tol=0.0,
                                                           anchor=1.0, settle=8, batch=48)
    w0 = metric.space.get(model)
    seen = Weights()
    path = traverse(model, objective, metric, ConjugateGradient(iters=8), eta=0.05,
                    max_steps=100, callbacks=[seen])
    assert path.steps == 18 and path.milestones["0.8"]["step"] == 18

    def output_distance(w):
        return float((metric.function(w, metric.inputs) - metric.function(w0, metric.inputs))
                     .pow(2).sum(-1).mean() / 2)

    masked = seen.steps[9]  # the point right after the mask
    assert projection.sparsity(masked) == projection.sparsity(path.weights) == pytest.approx(
        round(0.8 * projection.count) / projection.count)
    assert torch.equal(masked == 0, path.weights == 0)
    assert output_distance(path.weights) < 0.9 * output_distance(masked)


def test_composition_adds_the_anchor_and_task_directions():
    model, metric, projection, sparsify, objective = setup(anchor=0.3, task_beta=0.5)
    w = metric.space.get(model)
    local = metric.at(w)
    v = objective.direction(w, local)
    _, _, _, s2, _ = setup()
    task = TaskLoss(metric.function, metric.inputs,
                    torch.randint(0, 4, (48,), generator=torch.Generator().manual_seed(2)), 16,
                    seed=4)
    expected = (s2.direction(w, local) - 0.3 * local.distance_gradient()
                + 0.5 * task.direction(w, local))
    assert torch.allclose(v, expected, atol=1e-6)
    assert objective.grad_evals == 1
    assert build_sparsify_objective(s2) is s2  # the plain paper form: v = P_p(w) - w


def test_levels_must_increase():
    model, metric, projection, *_ = setup()
    with pytest.raises(ValueError, match="increase"):
        Sparsify(projection, [0.9, 0.5], 10, 0.1)
