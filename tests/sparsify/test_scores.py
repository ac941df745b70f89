"""Functional pruning targets: the exact diagonal of g against the dense metric, the OBD
rankings, and a walk whose target re-selects its coordinates at every level (exact levels,
pruned stays pruned, resumed equals uninterrupted)."""
import pytest
import torch
from torch import nn

from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import load_latest_checkpoint
from geodesic.core.traverse import traverse
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import Sparsify, build_sparsify_objective
from geodesic.sparsify.scores import metric_diagonal, target_factor
from tests.helpers.callbacks import Kill

pytestmark = pytest.mark.usefixtures("one_thread_per_test")


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 4)).double()


def conv_bn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5)).double()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("build, shape", [(mlp, (12,)), (conv_bn, (1, 6, 6))])
@pytest.mark.parametrize("output", ["logits", "probs", "fisher"])
def test_the_diagonal_is_the_dense_metrics_diagonal(build, shape, output):
    model = build()
    x = torch.randn(40, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    metric = FunctionalMetric(model, x, output=output)
    w = metric.space.get(model)
    before = metric.evals
    diagonal = metric_diagonal(metric, w, x)
    assert torch.allclose(diagonal, torch.diagonal(metric.dense(w, x)), rtol=1e-9, atol=1e-12)
    assert metric.evals - before == model(x[:1]).shape[-1]  # one pullback per output


def setup(rule):
    model = mlp().float()
    x = torch.randn(48, 12, generator=torch.Generator().manual_seed(1))
    metric = FunctionalMetric(model, x, batch_size=32, seed=3)
    projection = MagnitudeProjection.build(model, metric.space)
    sparsify = Sparsify(projection, [0.5, 0.8], 10, 0.05, 2, rule)
    return model, x, metric, projection, sparsify, build_sparsify_objective(sparsify, 0.1)


def test_obd_ranks_by_w_squared_times_the_diagonal_and_obd_layer_per_layer():
    model, x, metric, projection, _, _ = setup("obd")
    w = metric.space.get(model)
    diagonal = metric_diagonal(metric, w, x)
    factor = target_factor("obd", metric, w, x, projection.segments)
    keep = projection.mask(w, 0.5, factor=factor)
    score = w.square() * diagonal
    assert score[projection.prunable & ~keep].max() <= score[projection.prunable & keep].min()
    layered = target_factor("obd_layer", metric, w, x, projection.segments)
    for start, end in projection.segments:
        assert float((w[start:end] * layered[start:end]).square().mean()) == pytest.approx(1.0)
    assert target_factor("magnitude", metric, w, x, projection.segments) is None


@pytest.mark.parametrize("rule", ["obd", "obd_layer"])
def test_a_functional_target_is_reselected_per_level_and_levels_stay_exact(rule):
    model, x, metric, projection, sparsify, objective = setup(rule)
    path = traverse(model, objective, metric, ConjugateGradient(iters=3), eta=0.1, max_steps=40)
    assert list(path.milestones) == ["0.5", "0.8"]
    assert int(sparsify.factor_level) == 1  # chosen again at the second level's start
    assert projection.sparsity(path.weights) == round(0.8 * projection.count) / projection.count


def test_a_functional_target_resumes_exactly(tmp_path):
    kwargs = dict(eta=0.1, max_steps=30, checkpoint_every=4)
    model, x, metric, projection, sparsify, objective = setup("obd_layer")
    full = traverse(model, objective, metric, ConjugateGradient(iters=3),
                    directory=tmp_path / "full", **kwargs)
    cut = len(full.records) - 2  # in the second level, after its target was chosen
    assert cut > kwargs["checkpoint_every"] and full.milestones["0.5"]["step"] < cut
    model, x, metric, projection, sparsify, objective = setup("obd_layer")
    with pytest.raises(KeyboardInterrupt):
        traverse(model, objective, metric, ConjugateGradient(iters=3), directory=tmp_path / "cut",
                 callbacks=[Kill(cut)], **kwargs)
    ckpt = load_latest_checkpoint(tmp_path / "cut")
    assert "0.factor" in ckpt.objective
    model, x, metric, projection, sparsify, objective = setup("obd_layer")
    resumed = traverse(model, objective, metric, ConjugateGradient(iters=3),
                       directory=tmp_path / "cut", **kwargs)
    assert torch.equal(resumed.weights, full.weights)
    assert resumed.milestones == full.milestones
    for name in full.milestones:
        assert torch.equal(resumed.milestone_weights(name), full.milestone_weights(name))
    first, last = full.milestone_weights("0.5"), full.weights
    assert bool(((first == 0) <= (last == 0)).all())  # pruned stays pruned
