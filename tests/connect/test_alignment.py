"""Weight matching: the permutations are exact symmetries, improve the matching objective and
recover a known permutation."""
import copy

import pytest
import torch
from torch import nn

from geodesic.common.models import VGG, build_model
from geodesic.connect.alignment import Alignment, AlignmentError, symmetry, weight_matching
from geodesic.core.space import ParameterSpace
from tests.conftest import tiny_vgg_bn, with_bn_statistics


def _mlp(seed):
    torch.manual_seed(seed)
    return build_model("mlp", (1, 8, 8), 10, (12, 9))


def _vgg(seed, batch_norm):
    torch.manual_seed(seed)
    net = VGG([3, "M", 4, 4, "M"], (2, 8, 8), 5, batch_norm=batch_norm)
    return with_bn_statistics(net, (1, 2, 8, 8))


NETWORKS = {  # name -> (builder of seed, input shape)
    "mlp": (_mlp, (1, 8, 8)),
    "vgg_bn": (lambda seed: _vgg(seed, True), (2, 8, 8)),
    "vgg": (lambda seed: _vgg(seed, False), (2, 8, 8)),
}


def _random_alignment(net, seed):
    sym, space = symmetry(net), ParameterSpace(net)
    gen = torch.Generator().manual_seed(seed)
    return Alignment(sym, space, [torch.randperm(n, generator=gen) for n in sym.sizes])


def _inputs(shape, n=32):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(7)) * 2 + 0.5


@pytest.mark.parametrize("name", list(NETWORKS))
def test_a_permuted_network_computes_the_same_outputs(name):
    build, shape = NETWORKS[name]
    net = build(0).eval()
    x = _inputs(shape)
    for alignment in (_random_alignment(net, 1), weight_matching(
            net, ParameterSpace(net).get(net), ParameterSpace(net).get(build(1)))):
        twin = copy.deepcopy(net)
        alignment.apply_model(twin)
        space = ParameterSpace(net)
        assert not torch.equal(space.get(twin), space.get(net))
        assert torch.equal(space.get(twin), alignment.apply(space.get(net)))
        with torch.no_grad():
            assert torch.allclose(twin(x), net(x), atol=1e-5, rtol=1e-5)
        assert torch.equal(alignment.inverse(space.get(twin)), space.get(net))


def test_batchnorm_running_statistics_travel_with_their_units():
    net = tiny_vgg_bn()
    alignment = _random_alignment(net, 2)
    twin = copy.deepcopy(net)
    alignment.apply_model(twin)
    perm = alignment.perms[0]
    bn, bn_twin = net.features[1], twin.features[1]
    assert torch.equal(bn_twin.running_mean, bn.running_mean[perm])
    assert torch.equal(bn_twin.running_var, bn.running_var[perm])
    assert torch.equal(bn_twin.weight, bn.weight[perm])
    assert int(bn_twin.num_batches_tracked) == int(bn.num_batches_tracked)


def test_the_flattened_channels_carry_their_spatial_blocks():
    """After the last pool a channel is a 2x2 map: the classifier's inputs move in blocks of 4."""
    net = _vgg(0, True)
    [*_, last] = symmetry(net).groups
    assert [a for a in last if a.name == "classifier.weight"][0].block == 4


@pytest.mark.parametrize("name", list(NETWORKS))
def test_matching_improves_on_the_identity(name):
    build, _ = NETWORKS[name]
    net, other = build(0), build(1)
    space = ParameterSpace(net)
    w1, w2 = space.get(net), space.get(other)
    alignment = weight_matching(net, w1, w2, seed=0)
    assert alignment.identity_objective == pytest.approx(float(w1.double() @ w2.double()))
    assert alignment.objective == pytest.approx(float(w1.double() @ alignment.apply(w2).double()))
    assert alignment.objective > alignment.identity_objective + 1e-3
    assert float((w1 - alignment.apply(w2)).norm()) < float((w1 - w2).norm())
    assert float(alignment.apply(w2).norm()) == pytest.approx(float(w2.norm()), rel=1e-6)
    assert alignment.sweeps >= 2  # the last sweep finds no improvement
    again = weight_matching(net, w1, w2, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(alignment.perms, again.perms))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_matching_a_permuted_copy_recovers_the_permutation(name):
    build, _ = NETWORKS[name]
    net = build(0)
    space = ParameterSpace(net)
    w = space.get(net)
    scrambled = _random_alignment(net, 5)
    found = weight_matching(net, w, scrambled.apply(w), seed=3)
    assert found.objective == pytest.approx(float(w.double().norm() ** 2), rel=1e-9)
    assert torch.equal(found.apply(scrambled.apply(w)), w)
    assert all(torch.equal(p, torch.argsort(q)) for p, q in zip(found.perms, scrambled.perms))


@pytest.mark.parametrize("net, words", [
    (nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2)), "is not a chain"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)),
     "layer '0' (Conv2d) has groups=2"),
    (nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(3, 2)), "takes 3 inputs from 6"),
])
def test_models_it_does_not_understand_are_refused_by_name(net, words):
    with pytest.raises(AlignmentError) as info:
        symmetry(net)
    assert words in str(info.value) and "supported: a chain" in str(info.value)


def test_a_residual_network_is_refused():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(x + torch.relu(self.a(x)))

    with pytest.raises(AlignmentError, match="Residual is not a chain"):
        symmetry(Residual())


def test_a_frozen_parameter_of_a_permuted_layer_is_refused():
    net = _mlp(0)
    net[1].bias.requires_grad_(False)
    with pytest.raises(AlignmentError, match=r"frozen parameters \['1.bias'\]"):
        symmetry(net)


def test_bad_arguments_are_refused_before_compute():
    net = _mlp(0)
    w = ParameterSpace(net).get(net)
    with pytest.raises(ValueError, match="max_sweeps = 0 is not allowed: >= 1"):
        weight_matching(net, w, w, max_sweeps=0)
    with pytest.raises(ValueError, match="flat vectors of the model's"):
        weight_matching(net, w, w[:-1])


def test_the_library_models_have_one_group_per_hidden_layer():
    assert symmetry(build_model("mlp", (1, 28, 28), 10, (300, 100))).sizes == [300, 100]
    assert symmetry(build_model("vgg11_bn", (3, 32, 32), 10)).sizes == [
        64, 128, 256, 256, 512, 512, 512, 512]
    assert len(symmetry(build_model("vgg16", (3, 32, 32), 10)).sizes) == 13
