"""Masks (global / layer-wise magnitude, torch.nn.utils.prune export) and the pruning baselines
(exact levels, masks held, equal compute, IMP's rounds and rewind point)."""
import pytest
import torch
from torch import nn

from geodesic.common.data import Dataset, Split
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train
from geodesic.core.registry import UnknownNameError
from geodesic.core.space import ParameterSpace
from geodesic.sparsify import baselines as pruning
from geodesic.sparsify.masks import MagnitudeProjection, prunable_names, to_torch_prune


pytestmark = pytest.mark.usefixtures("one_thread_per_test")


def convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3))


def test_prunable_are_conv_and_linear_weights_unless_configured():
    net = convnet()
    assert prunable_names(net) == ["0.weight", "4.weight", "6.weight"]
    assert prunable_names(net, include=("weights", "biases"), exclude=("6.",)) == [
        "0.weight", "0.bias", "4.weight", "4.bias"]
    assert prunable_names(net, include=("norm",)) == ["1.weight", "1.bias"]


def test_global_projection_zeroes_exactly_the_smallest_prunable_weights():
    net = convnet()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    w = space.get(net)
    for p in (0.3, 0.77, 0.95):
        keep = proj.mask(w, p)
        pruned = ~keep
        assert int(pruned.sum()) == round(p * proj.count)
        assert not bool(pruned[~proj.prunable].any())
        assert float(w[pruned].abs().max()) <= float(w[keep & proj.prunable].abs().min())
        assert proj.sparsity(proj.project(w, p)) == round(p * proj.count) / proj.count


def test_layerwise_projection_prunes_each_tensor_to_the_level():
    net = convnet()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space, ranking="layerwise")
    keep = proj.mask(space.get(net), 0.6)
    for start, end in proj.segments:
        assert int((~keep[start:end]).sum()) == round(0.6 * (end - start))
    with pytest.raises(UnknownNameError, match="global, layerwise"):
        MagnitudeProjection.build(net, space, ranking="random")


def test_a_pruned_coordinate_is_never_revived_by_a_later_projection():
    net = convnet()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    w = space.get(net)
    keep = proj.mask(w, 0.5)
    grown = w.clone()
    grown[~keep] = 100.0  # even if the pruned coordinates became the largest
    later = proj.mask(grown, 0.7, keep)
    assert not bool((later & ~keep).any())
    assert int((~later).sum()) == round(0.7 * proj.count)


def test_export_to_torch_prune_gives_the_same_network():
    net = convnet()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    keep = proj.mask(space.get(net), 0.8)
    masked = space.get(net) * keep
    reference = convnet()
    space.set(reference, masked)
    to_torch_prune(net, space, keep)
    assert torch.equal(net[4].weight_mask.bool(), space.unflatten(keep)["4.weight"])
    x = torch.randn(5, 1, 6, 6)
    net.eval(), reference.eval()
    assert torch.allclose(net(x), reference(x), atol=1e-6)


def digits_like(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (x.flatten(1)[:, :3].argmax(1))
    split = Split(x, y)
    return Dataset(split, split.subset(torch.arange(16)), split.subset(torch.arange(16)), 3,
                   (1, 6, 6), "probe")


def test_prune_and_train_holds_the_mask_and_spends_the_budget():
    net, data = convnet(), digits_like()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    budgets = {"0.5": 2.0, "0.9": 3.3}
    sgd = pruning.MaskedSGD(lr=0.05, batch_size=16)
    out = pruning.prune_and_train(net, space, proj, space.get(net), [0.5, 0.9], budgets, 32,
                                  sgd, pruning.label_loss(data.train.x, data.train.y),
                                  len(data.train))
    assert list(out) == ["0.5", "0.9"]
    assert out["0.5"].grad_evals == 2.0  # 4 steps of 16 examples = 2 units of 32
    assert out["0.9"].grad_evals == 2.0 + 3.0  # 3.3 units allow 6 whole steps
    first_keep = out["0.5"].weights != 0
    for name, p in (("0.5", 0.5), ("0.9", 0.9)):
        assert proj.sparsity(out[name].weights) == round(p * proj.count) / proj.count
    assert not bool((out["0.9"].weights != 0)[~first_keep & proj.prunable].any())


def test_imp_rounds_prune_a_fifth_of_the_rest_and_hit_every_level():
    rounds = pruning.imp_schedule([0.5, 0.9], 0.2)
    sparsities = [s for s, _ in rounds]
    assert [name for _, name in rounds if name] == ["0.5", "0.9"]
    assert sparsities[:3] == pytest.approx([0.2, 0.36, 0.488])
    assert sparsities[3] == 0.5 and sparsities[-1] == 0.9
    for before, after in zip(sparsities[3:-2], sparsities[4:-1]):
        assert 1 - after == pytest.approx(0.8 * (1 - before))


def test_imp_rewinds_to_the_early_weights_and_keeps_levels_exact():
    net, data = convnet(), digits_like()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    rewind = convnet(seed=5)
    w_rewind = space.get(rewind)
    sgd = pruning.MaskedSGD(lr=0.05, batch_size=16)
    out = pruning.iterative_magnitude_pruning(
        net, space, proj, space.get(net), w_rewind, [0.5, 0.9], {"0.5": 0.0, "0.9": 0.0}, 32,
        sgd, pruning.label_loss(data.train.x, data.train.y), len(data.train))
    w = out["0.9"].weights  # no budget: the rewound weights under the final mask
    assert torch.equal(w, w_rewind * (w != 0) + 0.0)
    assert proj.sparsity(w) == round(0.9 * proj.count) / proj.count
    assert out["0.9"].grad_evals == 0


def test_imp_long_is_imp_given_a_multiple_of_the_geodesics_evaluations():
    """imp_long equals imp run on budgets scaled by imp_long_factor, bitwise, and spends more."""
    from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext
    from geodesic.sparsify.settings import SparsifySettings

    s = SparsifySettings(levels=[0.5, 0.9], metric_batch=32, imp_batch=16, imp_lr=0.05,
                         imp_rewind_epochs=0, imp_long_factor=3.0)
    ctx = SparsifyContext(convnet(), digits_like(), s, lambda: convnet(5), TrainSettings())
    walk = {"0.5": 2.0, "0.9": 3.0}
    ctx.budgets = walk
    long = SPARSIFY_METHODS.get("imp_long")(ctx)
    short = SPARSIFY_METHODS.get("imp")(ctx)
    ctx.budgets = {name: 3.0 * units for name, units in walk.items()}
    scaled = SPARSIFY_METHODS.get("imp")(ctx)
    for name in walk:
        assert torch.equal(long[name].weights, scaled[name].weights)
        assert long[name].grad_evals == scaled[name].grad_evals
    assert long["0.9"].grad_evals > short["0.9"].grad_evals > 0
    assert long["0.9"].grad_evals <= 3.0 * sum(walk.values())


def test_early_weights_replay_the_base_training_run():
    data = digits_like()
    cfg = TrainSettings(lr=0.05, epochs=3, batch_size=16)
    seen = {}
    full = convnet(seed=7)
    train(full, data, cfg, 7, on_epoch=lambda r, m: seen.setdefault(
        r["epoch"], ParameterSpace(m).get(m)))
    assert torch.equal(pruning.early_weights(convnet(seed=7), data, cfg, 7, 1), seen[1])
    assert torch.equal(pruning.early_weights(convnet(seed=7), data, cfg, 7, 0),
                       ParameterSpace(convnet(seed=7)).get(convnet(seed=7)))


def test_magnitude_costs_nothing_and_is_exact():
    net = convnet()
    space = ParameterSpace(net)
    proj = MagnitudeProjection.build(net, space)
    out = pruning.magnitude(space.get(net), proj, [0.5, 0.98])
    assert {k: (r.grad_evals, proj.sparsity(r.weights)) for k, r in out.items()} == {
        "0.5": (0.0, round(0.5 * proj.count) / proj.count),
        "0.98": (0.0, round(0.98 * proj.count) / proj.count)}


class Counted:
    """The loss, counting its calls and raising KeyboardInterrupt after ``limit`` of them."""

    def __init__(self, loss, limit=10 ** 9):
        self.loss, self.limit, self.calls = loss, limit, 0

    def __call__(self, net, idx):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt  # as a kill would stop it
        return self.loss(net, idx)


@pytest.mark.parametrize("method", ["prune_and_train", "imp"])
def test_an_interrupted_baseline_resumes_to_the_uninterrupted_result(method, tmp_path):
    """Killed mid-round, at a round boundary and twice in a row, every rerun ends with bitwise
    the weights and counts of an uninterrupted run; a damaged newest checkpoint is skipped."""
    from geodesic.core.path import StateCheckpoints, checkpoint_files

    data = digits_like()
    loss = pruning.label_loss(data.train.x, data.train.y)
    sgd = pruning.MaskedSGD(lr=0.05, batch_size=16, seed=3)
    budgets = {"0.5": 7.0, "0.9": 9.3}

    def run(loss, directory=None):
        net = convnet()  # BatchNorm: its running statistics are part of the state
        space = ParameterSpace(net)
        proj = MagnitudeProjection.build(net, space)
        ckpt = StateCheckpoints(directory, every=3) if directory else None
        if method == "imp":
            return pruning.iterative_magnitude_pruning(
                net, space, proj, space.get(net), space.get(convnet(5)), [0.5, 0.9], budgets,
                32, sgd, loss, len(data.train), checkpoints=ckpt)
        return pruning.prune_and_train(net, space, proj, space.get(net), [0.5, 0.9], budgets,
                                       32, sgd, loss, len(data.train), checkpoints=ckpt)

    counted = Counted(loss)
    full = run(counted)
    for cut in ([4], [14], [1, 9], [20]):
        folder = tmp_path / f"{method}-{'-'.join(map(str, cut))}"
        for calls in cut:
            with pytest.raises(KeyboardInterrupt):
                run(Counted(loss, calls), folder)
        assert len(checkpoint_files(folder)) <= 2
        if cut == [20]:  # an altered newest checkpoint: the one before it is used
            newest = checkpoint_files(folder)[0]
            newest.write_bytes(newest.read_bytes()[:-1] + b"\0")
        again = Counted(loss)
        resumed = run(again, folder)
        assert again.calls < counted.calls  # continued, not started afresh
        assert list(resumed) == list(full)
        for name in full:
            assert torch.equal(resumed[name].weights, full[name].weights), (cut, name)
            assert resumed[name].grad_evals == full[name].grad_evals
