"""The fast paths give the plain path's numbers: per-layer products (geodesic.core.fastmetric) equal
the generic torch.func products and the dense J^T H J in float64, for every output kind;
unsupported models fall back; the compiled tangent recursion gives the eager numbers; AMP is off
on the CPU."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geodesic.common.models import VGG
from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import TowardTarget
from geodesic.core.traverse import traverse
from tests.conftest import tiny_convnet_bn, tiny_mlp, tiny_vgg_bn, with_bn_statistics


def tiny_vgg():
    torch.manual_seed(1)
    return VGG([3, "M", 4, "M"], (2, 8, 8), 5, batch_norm=False)


def mixed_layers():
    """Every other supported layer kind: LeakyReLU, Sigmoid, AvgPool, BatchNorm1d, Dropout."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.LeakyReLU(0.1),
                        nn.AvgPool2d(2), nn.Identity(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Sigmoid(),
                        nn.Dropout(0.5), nn.Linear(6, 4))
    return with_bn_statistics(net, (1, 2, 8, 8))


class Functional(nn.Module):
    """A forward written with functional calls and tensor methods, traced by torch.fx."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.pool = nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        h = self.pool(F.relu(self.conv(x)))
        return self.fc(torch.tanh(h.flatten(1)))


class Residual(nn.Module):
    """Not a chain (a skip connection): the generic path must take over."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.b(x + torch.tanh(self.a(x)))


CHAINS = [(tiny_mlp, (7, 6)), (tiny_convnet_bn, (5, 2, 4, 4)), (tiny_vgg_bn, (4, 2, 8, 8)),
          (tiny_vgg, (4, 2, 8, 8)), (mixed_layers, (5, 2, 8, 8)), (Functional, (3, 2, 8, 8))]


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("kind", ["logits", "probs", "fisher"])
@pytest.mark.parametrize("make, shape", CHAINS, ids=lambda v: getattr(v, "__name__", ""))
def test_fast_products_equal_generic_and_dense(float64, make, shape, kind):
    model = make().double()
    x = torch.randn(*shape)
    fast, plain = FunctionalMetric(model, x, kind), FunctionalMetric(model, x, kind, fast=False)
    assert fast.chain is not None and plain.chain is None
    w = fast.space.get(model) + 0.1 * torch.randn(fast.space.dim)  # off the stored weights
    dense = plain.dense(w)
    a, b = fast.at(w), plain.at(w)
    assert rel(a.z, b.z) < 1e-12
    for _ in range(2):
        theta = torch.randn_like(w)
        assert rel(a.jvp(theta), b.jvp(theta)) < 1e-12
        assert rel(a.mvp(theta), dense @ theta) < 1e-10
        assert rel(a.mvp(theta), b.mvp(theta)) < 1e-12
        assert float(a.quadratic(theta)) == pytest.approx(float(theta @ dense @ theta), rel=1e-10)
    u = torch.randn_like(a.z)
    assert rel(a.pullback(u), b.pullback(u)) < 1e-12
    assert rel(a.distance_gradient(), b.distance_gradient()) < 1e-12


def test_library_models_take_the_fast_path():
    from geodesic.common.models import build_model
    for name, shape in [("mlp", (1, 8, 8)), ("vgg11", (3, 32, 32)), ("vgg16_bn", (3, 32, 32))]:
        model = build_model(name, shape, 10)
        assert FunctionalMetric(model, torch.randn(2, *shape)).chain is not None, name


def test_frozen_parameters_are_constants(float64):
    model = tiny_vgg_bn().double()
    model.features[0].weight.requires_grad_(False)
    x = torch.randn(4, 2, 8, 8)
    fast, plain = FunctionalMetric(model, x), FunctionalMetric(model, x, fast=False)
    assert fast.chain is not None and fast.space.dim == plain.space.dim
    w = fast.space.get(model)
    theta = torch.randn_like(w)
    assert rel(fast.at(w).mvp(theta), plain.dense(w) @ theta) < 1e-10


@pytest.mark.parametrize("frozen", [("bn.weight",), ("bn.bias",), ("bn.weight", "bn.bias"),
                                    ("conv.weight", "conv.bias"),
                                    ("conv.weight", "conv.bias", "bn.weight"),
                                    ("conv.weight", "conv.bias", "bn.bias")])
def test_batchnorm_tangent_with_frozen_parts(float64, frozen):
    """Every branch of the BatchNorm tangent (scale, shift, incoming tangent, each absent)
    against the generic path: frozen BatchNorm factors, and a frozen first convolution so the
    first BatchNorm gets no incoming tangent."""
    model = tiny_vgg_bn().double()
    conv, bn = model.features[0], model.features[1]
    assert isinstance(bn, nn.BatchNorm2d)
    for name in frozen:
        getattr({"conv": conv, "bn": bn}[name.split(".")[0]], name.split(".")[1]) \
            .requires_grad_(False)
    x = torch.randn(4, 2, 8, 8)
    fast, plain = FunctionalMetric(model, x), FunctionalMetric(model, x, fast=False)
    assert fast.chain is not None
    w = fast.space.get(model) + 0.1 * torch.randn(fast.space.dim)
    a, b = fast.at(w), plain.at(w)
    theta = torch.randn_like(w)
    given = theta.clone()
    assert rel(a.jvp(theta), b.jvp(theta)) < 1e-12
    assert torch.equal(theta, given)  # the in-place point-wise tangents wrote into no input
    assert rel(a.mvp(theta), plain.dense(w) @ theta) < 1e-10


def test_non_chains_fall_back_to_the_generic_path(float64):
    for model in (Residual().double(), nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4)).double()):
        x = torch.randn(5, 6)
        metric = FunctionalMetric(model, x)
        assert metric.chain is None
        w = metric.space.get(model)
        theta = torch.randn_like(w)
        assert rel(metric.at(w).mvp(theta), metric.dense(w) @ theta) < 1e-10


def test_fast_and_generic_traversals_agree(float64):
    def run(fast):
        model = tiny_vgg_bn().double()
        x = torch.randn(12, 2, 8, 8, generator=torch.Generator().manual_seed(5))
        metric = FunctionalMetric(model, x, batch_size=8, seed=1, fast=fast)
        w0 = metric.space.get(model)
        target = w0 + torch.randn(w0.shape, generator=torch.Generator().manual_seed(6))
        return traverse(model, TowardTarget(target, 1e-3), metric, ConjugateGradient(iters=4),
                        eta=0.05, max_steps=5)

    fast, plain = run(True), run(False)
    assert rel(fast.weights, plain.weights) < 1e-10
    for r, s in zip(fast.records, plain.records):
        assert r["functional_step"] == pytest.approx(s["functional_step"], rel=1e-8)
        assert r["evals"] == s["evals"]


def test_compiled_tangent_gives_the_eager_numbers(float64):
    """torch.compile of the tangent recursion: same J theta, g theta and path as eager, and a new
    point reuses the compiled code (the activations are its inputs, not constants)."""
    def run(compile):
        model = tiny_vgg_bn().double()
        x = torch.randn(6, 2, 8, 8, generator=torch.Generator().manual_seed(5))
        metric = FunctionalMetric(model, x, compile=compile)
        w0 = metric.space.get(model)
        target = w0 + torch.randn(w0.shape, generator=torch.Generator().manual_seed(6))
        theta = torch.randn(w0.shape, generator=torch.Generator().manual_seed(7))
        local = metric.at(w0)
        products = (local.jvp(theta), local.mvp(theta))
        path = traverse(model, TowardTarget(target, 1e-3), metric, ConjugateGradient(iters=4),
                        eta=0.05, max_steps=3)
        return metric, products, path

    compiled, (jc, gc), path_c = run(True)
    eager, (je, ge), path_e = run(False)
    assert compiled.tangent is not None and eager.tangent is None
    assert rel(jc, je) < 1e-12 and rel(gc, ge) < 1e-12
    assert rel(path_c.weights, path_e.weights) < 1e-12
    assert [r["evals"] for r in path_c.records] == [r["evals"] for r in path_e.records]
    assert FunctionalMetric(tiny_vgg_bn(), torch.randn(2, 2, 8, 8), compile=True,
                            fast=False).tangent is None  # the generic path is never compiled


def test_amp_is_off_on_the_cpu():
    model = tiny_convnet_bn()
    x = torch.randn(5, 2, 4, 4)
    amp, plain = FunctionalMetric(model, x, amp=True), FunctionalMetric(model, x)
    assert amp.autocast() is None
    w = amp.space.get(model)
    theta = torch.randn_like(w)
    assert torch.equal(amp.at(w).mvp(theta), plain.at(w).mvp(theta))
    generic = FunctionalMetric(model, x, amp=True, fast=False)
    assert generic.autocast() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_keeps_float32_state_and_stays_close():
    model = tiny_vgg_bn().cuda()
    x = torch.randn(8, 2, 8, 8, device="cuda")
    amp, plain = FunctionalMetric(model, x, amp=True), FunctionalMetric(model, x)
    assert amp.autocast() is not None
    w = amp.space.get(model)
    theta = torch.randn_like(w)
    a, b = amp.at(w), plain.at(w)
    assert a.z.dtype == torch.float32 and a.mvp(theta).dtype == torch.float32
    assert rel(a.mvp(theta), b.mvp(theta)) < 5e-2


def test_cached_reference_outputs_equal_a_forward_pass_and_follow_changes(float64):
    model = tiny_convnet_bn().double()
    pool = torch.randn(10, 2, 4, 4)
    metric = FunctionalMetric(model, pool, batch_size=4, seed=2)
    w = metric.space.get(model) + 0.1 * torch.randn(metric.space.dim)
    local = metric.at(w)  # a sampled batch: z0 from the cache
    explicit = metric.at(w, local.x)  # the same batch given explicitly: z0 by a forward pass
    assert rel(local.distance_gradient(), explicit.distance_gradient()) < 1e-12
    with torch.no_grad():  # new BatchNorm statistics: the cache must follow
        model.train()(torch.randn(8, 2, 4, 4) * 3)
        model.eval()
    assert rel(metric.reference_outputs(), metric.function(metric.reference, pool)) < 1e-12
    metric.reference = w.clone()
    assert rel(metric.reference_outputs(), metric.function(w, pool)) < 1e-12


@pytest.mark.parametrize("fast", [True, False])
def test_amp_plumbing_with_cpu_bfloat16_standing_in_for_cuda(monkeypatch, fast):
    """The autocast code path (low-precision forward, float32 z and products) runs and stays
    close, using CPU bfloat16 autocast in place of CUDA's."""
    from functools import partial
    model = tiny_vgg_bn()
    x = torch.randn(6, 2, 8, 8)
    amp, plain = FunctionalMetric(model, x, amp=True, fast=fast), FunctionalMetric(model, x)
    monkeypatch.setattr(amp, "autocast",
                        lambda: partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16))
    w = amp.space.get(model)
    theta = torch.randn_like(w)
    a, b = amp.at(w), plain.at(w)
    assert a.z.dtype == torch.float32 and a.mvp(theta).dtype == torch.float32
    assert rel(a.z, b.z) < 5e-2
    assert rel(a.mvp(theta), b.mvp(theta)) < 1e-1
    assert a.distance_gradient().dtype == torch.float32


def test_quarter_width_vgg11_bn_on_padded_grey_images_takes_the_fast_path(float64):
    """The CPU preset's network (conf/scale_model/cpu_vgg11_bn.yaml) on 1x32x32 inputs."""
    from geodesic.common.models import build_model
    model = with_bn_statistics(build_model("vgg11_bn", (1, 32, 32), 10, width=0.25).double(),
                               (16, 1, 32, 32))
    x = torch.randn(3, 1, 32, 32)
    fast, plain = FunctionalMetric(model, x), FunctionalMetric(model, x, fast=False)
    assert fast.chain is not None and plain.chain is None
    w = fast.space.get(model)
    a, b = fast.at(w), plain.at(w)
    theta = torch.randn_like(w)
    assert rel(a.jvp(theta), b.jvp(theta)) < 1e-12
    assert rel(a.mvp(theta), b.mvp(theta)) < 1e-12
