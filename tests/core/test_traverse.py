"""The traversal loop: norm bound, records, milestones, and resume == uninterrupted."""
import math

import pytest
import torch

from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import Objective, TowardTarget
from geodesic.core.path import Path, checkpoint_file, load_latest_checkpoint
from geodesic.core.solvers import Penalty, ProjectedGradient
from geodesic.core.traverse import Callback, NumericalFault, traverse
from tests.conftest import tiny_mlp
from tests.helpers.callbacks import Kill


def setup(seed=0, pool=40, batch=16):
    model = tiny_mlp(seed)
    x = torch.randn(pool, 6, generator=torch.Generator().manual_seed(1))
    metric = FunctionalMetric(model, x, batch_size=batch, seed=5)
    w0 = metric.space.get(model)
    target = w0 + torch.randn(w0.shape, generator=torch.Generator().manual_seed(2))
    return model, metric, TowardTarget(target, tol=0.05)


@pytest.mark.parametrize("solver", [ConjugateGradient(iters=5), ProjectedGradient(iters=5)])
def test_killed_and_resumed_traversal_equals_uninterrupted(tmp_path, solver):
    model, metric, objective = setup()
    full = traverse(model, objective, metric, solver, eta=0.05, max_steps=40,
                    checkpoint_every=7, directory=tmp_path / "full")
    model, metric, objective = setup()
    with pytest.raises(KeyboardInterrupt):
        traverse(model, objective, metric, solver, eta=0.05, max_steps=40, checkpoint_every=7,
                 directory=tmp_path / "cut", callbacks=[Kill(21)])
    assert load_latest_checkpoint(tmp_path / "cut").step == 21
    model, metric, objective = setup()  # a fresh process: nothing carried over but the files
    resumed = traverse(model, objective, metric, solver, eta=0.05, max_steps=40,
                       checkpoint_every=7, directory=tmp_path / "cut")
    assert torch.equal(resumed.weights, full.weights)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(resumed.records) == strip(full.records)
    assert torch.equal(Path.load(tmp_path / "cut").weights, full.weights)


def test_records_and_norm_bound():
    model, metric, objective = setup()
    w0 = metric.space.get(model)
    path = traverse(model, objective, metric, ConjugateGradient(iters=4), eta=0.03, max_steps=25)
    assert path.steps == 25
    assert all(r["step_norm"] <= 0.03 * (1 + 1e-6) for r in path.records)
    assert [r["step"] for r in path.records] == list(range(1, 26))
    assert all(r["functional_step"] >= 0 and math.isfinite(r["functional_step"])
               for r in path.records)
    assert path.records[-1]["evals"] == 25 * (1 + 4)  # one linearisation + 4 products a step
    assert torch.equal(metric.space.get(model), path.weights)
    assert path.euclidean_length >= float((path.weights - w0).norm()) - 1e-6
    assert path.records[-1]["distance"] < path.records[0]["distance"]


def test_reaches_the_target_and_stops():
    model, metric, objective = setup()
    objective.tol = 0.2  # the penalty form settles where beta ||v|| balances grad D
    path = traverse(model, objective, metric, Penalty(), eta=0.05, beta=100.0, max_steps=500)
    assert objective.done(path.weights)
    assert path.steps < 500


def test_a_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path):
    model, metric, objective = setup()
    traverse(model, objective, metric, ConjugateGradient(iters=3), eta=0.05, max_steps=20,
             checkpoint_every=5, directory=tmp_path)
    newest = checkpoint_file(tmp_path, 20)
    newest.write_bytes(newest.read_bytes()[:-10])
    assert load_latest_checkpoint(tmp_path).step == 15


class Milestones(Objective):
    """Milestone at steps 3 and 6 and a final projection: exercises the objective hooks."""

    def __init__(self):
        self.count = torch.zeros((), dtype=torch.long)

    def direction(self, w, local):
        return torch.ones_like(w)

    def after_step(self, w):
        self.count += 1
        return w, [f"m{int(self.count)}"] if int(self.count) in (3, 6) else []

    def finish(self, w):
        return torch.zeros_like(w), ["final"]

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"].clone()


def test_milestones_are_recorded_and_stored(tmp_path):
    model, metric, _ = setup()
    path = traverse(model, Milestones(), metric, ConjugateGradient(iters=2), eta=0.01,
                    max_steps=8, directory=tmp_path)
    assert list(path.milestones) == ["m3", "m6", "final"]
    assert path.milestones["m6"]["step"] == 6
    assert torch.equal(path.milestone_weights("final"), torch.zeros_like(path.weights))


class Poison(Objective):
    def direction(self, w, local):
        return torch.full_like(w, float("nan"))


def test_a_non_finite_direction_stops_with_a_clear_error(tmp_path):
    model, metric, _ = setup()
    with pytest.raises(NumericalFault, match="not finite at step 1"):
        traverse(model, Poison(), metric, ConjugateGradient(iters=2), eta=0.01, max_steps=3,
                 directory=tmp_path)


def test_the_cached_distance_to_the_target_follows_in_place_changes_of_w():
    target = torch.zeros(5)
    objective = TowardTarget(target, tol=0.1)
    w = torch.full((5,), 2.0)
    assert objective.distance(w) == pytest.approx(math.sqrt(20.0))
    w.mul_(0.5)  # in place: the same tensor, a new value
    assert objective.distance(w) == pytest.approx(math.sqrt(5.0))
    other = torch.full((5,), 1.0)  # equal value, another tensor
    assert objective.distance(other) == pytest.approx(math.sqrt(5.0))
    assert not objective.done(w) and objective.done(torch.full((5,), 0.01))


class Watch(Callback):
    """Records whether the model's parameters are the current point w, and stops at step 3."""

    def __init__(self, model, space):
        self.model, self.space, self.seen = model, space, []

    def on_step(self, record, w):
        params = dict(self.model.named_parameters())
        first = params[self.space.names[0]]
        self.seen.append((torch.equal(self.space.get(self.model), w),
                          first.data_ptr() == w.data_ptr()))
        self.last = w.clone()
        if record["step"] == 3:
            raise KeyboardInterrupt


def _separate_memory(model, w):
    ptrs = [p.data_ptr() for p in model.parameters()]
    inside = w.data_ptr() <= min(ptrs) < w.data_ptr() + w.numel() * w.element_size()
    return len(set(ptrs)) == len(ptrs) and not inside and all(
        p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in model.parameters())


def test_the_model_follows_w_during_the_walk_and_owns_its_memory_after():
    model, metric, objective = setup()
    watch = Watch(model, metric.space)
    with pytest.raises(KeyboardInterrupt):  # stopped mid-walk: the model is at the last point
        traverse(model, objective, metric, ConjugateGradient(iters=2), eta=0.03, max_steps=9,
                 callbacks=[watch])
    assert watch.seen == [(True, True)] * 3  # views of w, not a copy
    last = metric.space.get(model)
    assert torch.equal(last, watch.last) and _separate_memory(model, last)
    path = traverse(model, objective, metric, ConjugateGradient(iters=2), eta=0.03, max_steps=4)
    assert torch.equal(metric.space.get(model), path.weights)
    assert _separate_memory(model, path.weights)
