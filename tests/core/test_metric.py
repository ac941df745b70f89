"""The matrix-free metric equals the dense (1/|B|) sum_x J_x^T H J_x built from the Jacobian."""
import pytest
import torch
from torch.func import jacrev

from geodesic.core.metric import FunctionalMetric, functional_length
from geodesic.core.outputs import OUTPUT_KINDS
from geodesic.core.registry import UnknownNameError
from tests.conftest import tiny_convnet_bn, tiny_mlp, tiny_vgg_bn


def explicit_metric(metric: FunctionalMetric, w, x, kind: str):
    """Dense g written out from its definition, independent of FunctionalMetric.dense."""
    jac = jacrev(lambda v: metric.function(v, x))(w)  # (B, m, n)
    g = torch.zeros(w.numel(), w.numel())
    for b in range(x.shape[0]):
        z = metric.function(w, x[b:b + 1])[0]
        p = torch.softmax(z, -1)
        s = torch.diag(p) - torch.outer(p, p)
        h = {"logits": torch.eye(len(z)), "probs": s @ s, "fisher": s}[kind]
        g += jac[b].T @ h @ jac[b]
    return g / x.shape[0]


@pytest.mark.parametrize("kind", ["logits", "probs", "fisher"])
@pytest.mark.parametrize("make, shape", [(tiny_mlp, (7, 6)), (tiny_convnet_bn, (5, 2, 4, 4))])
def test_metric_vector_product_equals_dense(float64, make, shape, kind):
    model = make().double()
    x = torch.randn(*shape)
    metric = FunctionalMetric(model, x, kind)
    w = metric.space.get(model)
    dense = explicit_metric(metric, w, x, kind)
    assert torch.allclose(metric.dense(w), dense, rtol=1e-10, atol=1e-12)
    local = metric.at(w)
    for _ in range(3):
        theta = torch.randn_like(w)
        exact = dense @ theta
        assert (local.mvp(theta) - exact).norm() / exact.norm() < 1e-5
        assert abs(float(local.quadratic(theta)) - float(theta @ exact)) < 1e-8 * float(theta @ exact)
        assert functional_length(local, theta) == pytest.approx(float(theta @ exact) ** 0.5)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("kind", ["logits", "fisher"])
@pytest.mark.parametrize("make, shape", [(tiny_mlp, (7, 6)), (tiny_vgg_bn, (6, 2, 8, 8))])
def test_quadratic_on_the_first_rows_is_the_dense_quadratic_of_those_inputs(float64, make, shape,
                                                                            kind, fast):
    model = make().double()
    x = torch.randn(*shape)
    metric = FunctionalMetric(model, x, kind, fast=fast)
    assert (metric.chain is not None) == fast
    w = metric.space.get(model)
    mask = (torch.rand(w.shape) < 0.6).double()
    local = metric.at(w).restrict(mask)
    theta = torch.randn_like(w)
    for rows in (1, 3, len(x) - 1):
        dense = explicit_metric(metric, w, x[:rows], kind)
        exact = float((theta * mask) @ dense @ (theta * mask))
        assert float(local.quadratic(theta, rows)) == pytest.approx(exact, rel=1e-10)
    whole = float(local.quadratic(theta))
    assert float(local.quadratic(theta, len(x))) == whole  # rows >= |B|: the whole batch
    assert float(local.quadratic(theta, 100)) == whole


def test_metric_leaves_batchnorm_statistics_and_mode_alone(float64):
    model = tiny_convnet_bn().double().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metric = FunctionalMetric(model, torch.randn(4, 2, 4, 4))
    metric.at(metric.space.get(model)).mvp(torch.randn(metric.space.dim))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_metric_is_positive_semidefinite_and_sees_the_outputs(float64):
    model = tiny_mlp().double()
    metric = FunctionalMetric(model, torch.randn(4, 6))
    g = metric.dense(metric.space.get(model))
    eig = torch.linalg.eigvalsh(g)
    assert eig.min() > -1e-10
    assert (eig > 1e-8).sum() <= 4 * 3  # rank <= batch x outputs


def test_sampled_batches_follow_the_generator_state(float64):
    model = tiny_mlp().double()
    metric = FunctionalMetric(model, torch.randn(50, 6), batch_size=8, seed=3)
    state = metric.state_dict()
    first = metric.sample()
    metric.load_state_dict(state)
    assert torch.equal(metric.sample(), first)


def test_unknown_output_kind_lists_known():
    with pytest.raises(UnknownNameError, match="fisher, logits, probs"):
        OUTPUT_KINDS.get("kl")


def test_distance_gradient_is_the_gradient_of_the_output_distance(float64):
    model = tiny_mlp().double()
    x = torch.randn(6, 6)
    w0 = FunctionalMetric(model, x).space.get(model)
    w = w0 + 0.3 * torch.randn_like(w0)
    metric = FunctionalMetric(model, x, "logits", reference=w0)
    dist = lambda v: 0.5 * ((metric.function(v, x) - metric.function(w0, x)) ** 2).sum() / len(x)
    assert torch.allclose(metric.at(w).distance_gradient(), torch.func.grad(dist)(w), atol=1e-12)
