"""The continual objective and its memory metric: masking, first-order preservation, budget,
resume."""
import dataclasses

import pytest
import torch

from geodesic.common.data import Split
from geodesic.common.models import build_model
from geodesic.continual.baselines import Template
from geodesic.continual.objective import (LearnTask, MemoryLabels, MemoryMetric, StoredAnchor,
                                          task_metric)
from geodesic.continual.protocol import (EarlyStop, MemoryDraws, TaskBatches, empty_memory, join,
                                         masked_logits, output_mask, task_loss, task_memory)
from geodesic.continual.settings import ContinualSettings
from geodesic.core.krylov import ConjugateGradient
from geodesic.core.objectives import Anchor, Combined
from geodesic.core.path import load_latest_checkpoint
from geodesic.core.traverse import traverse
from tests.helpers.callbacks import Kill


pytestmark = pytest.mark.usefixtures("one_thread")


def first_task_network(tasks, scenario="task-il", width=32):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, (width,))
    masks = [output_mask(scenario, t, 10) for t in tasks]
    Template([], ContinualSettings(lr=0.05, batch_size=64, budget=60, stop_every=10,
                                   patience=0)).learn(
        model, 0, tasks, masks, empty_memory(tasks[0].train, 10), seed=0)
    return model, masks


def double(tasks):
    return [dataclasses.replace(t, **{part: Split(getattr(t, part).x.double(), getattr(t, part).y)
                                      for part in ("train", "val", "test")}) for t in tasks]


def objective(metric, tasks, masks, budget=10**6, patience=0, t=1, labels=None):
    return LearnTask(metric, TaskBatches(tasks[t].train, 64, seed=t), masks[t], tasks[t].val,
                     EarlyStop(every=12, patience=patience), budget, labels)


def test_task_il_metric_ignores_the_other_tasks_outputs(tasks):
    model, masks = first_task_network(tasks)
    memory = task_memory(tasks[0], masks[0], 5, seed=0)
    metric = MemoryMetric(model, memory)
    w = metric.space.get(model)
    theta = torch.zeros_like(w)
    head = metric.space.unflatten(theta)
    head["3.weight"][2:].normal_()  # the output rows of classes 2..9 only
    head["3.bias"][2:].normal_()
    assert metric.at(w).mvp(theta).abs().max() == 0
    class_il = MemoryMetric(model, task_memory(tasks[0], torch.ones(10, dtype=torch.bool), 5, 0))
    assert class_il.at(w).mvp(theta).abs().max() > 1e-3


def test_memory_metric_scores_each_input_on_its_own_task(tasks):
    model, masks = first_task_network(tasks)
    memory = task_memory(tasks[0], masks[0], 3, seed=0)
    metric = MemoryMetric(model, memory)
    z = metric.function(metric.space.get(model), torch.arange(len(memory)))
    assert torch.equal(z, masked_logits(model(memory.x), masks[0]))


def test_new_task_inputs_shape_g_but_the_anchor_holds_only_the_memory(tasks, float64):
    """task_metric(memory, new): g = (1/|B|) sum over every row of J^T J, while
    D = (1/|B|) sum over the memory rows of 1/2 ||z - z0||^2 (dense autograd, exact)."""
    tasks = double(tasks)
    model, masks = first_task_network(tasks, scenario="class-il")
    memory = task_memory(tasks[0], masks[0], 3, seed=0)
    new = task_memory(tasks[1], masks[1], 2, seed=1)
    metric = task_metric(model, memory, new, "logits", None, seed=0)
    assert len(metric.inputs) == len(memory) + len(new)
    w0 = metric.space.get(model)
    w = w0 + 0.05 * torch.randn_like(w0)
    rows = torch.arange(len(metric.inputs))
    held = rows < len(memory)

    def distance(v):
        d = 0.5 * (metric.function(v, rows) - metric.function(w0, rows)).pow(2).sum(-1)
        return (d * held).sum() / len(rows)

    expected = torch.autograd.functional.jacobian(distance, w)
    local = metric.at(w)
    assert torch.allclose(local.distance_gradient(), expected, rtol=1e-9, atol=1e-12)
    theta = torch.randn_like(w)
    assert torch.allclose(local.mvp(theta), metric.dense(w) @ theta, rtol=1e-9, atol=1e-12)
    memory_only = MemoryMetric(model, memory).dense(w)
    assert not torch.allclose(metric.dense(w), memory_only * len(memory) / len(rows))


def test_held_must_flag_every_pool_row(tasks):
    model, masks = first_task_network(tasks)
    memory = task_memory(tasks[0], masks[0], 3, seed=0)
    with pytest.raises(ValueError, match=r"held has shape \(5,\): one flag per pool row \(6,\)"):
        MemoryMetric(model, memory, held=torch.ones(5, dtype=torch.bool))


def test_a_small_task_il_step_keeps_the_earlier_outputs_to_first_order(tasks, float64):
    """The natural-gradient step (g + lambda I)^-1 v, rescaled to eta, lies in the null space
    of the memory's Jacobian up to lambda: the output change is second order in eta, where the
    plain gradient step of the same length changes the outputs to first order."""
    tasks = double(tasks)
    memory = task_memory(tasks[0], output_mask("task-il", tasks[0], 10), 5, seed=0)
    solver = ConjugateGradient(iters=30, damping=1e-6, mode="rescale")

    def relative_changes(eta):
        model, masks = first_task_network(tasks)
        metric = MemoryMetric(model, memory)
        w0 = metric.space.get(model)
        kept = lambda w: metric.function(w, torch.arange(len(memory)))[:, masks[0]]
        z0 = kept(w0)
        path = traverse(model, objective(metric, tasks, masks), metric, solver, eta=eta,
                        max_steps=1)
        assert float((path.weights - w0).norm()) == pytest.approx(eta, rel=1e-6)
        v = objective(metric, tasks, masks).direction(w0, None)
        plain = w0 + eta * v / v.norm()
        return [float((kept(w) - z0).norm() / z0.norm()) for w in (path.weights, plain)]

    geodesic, plain = relative_changes(1e-3)
    assert geodesic <= 1e-3 and geodesic <= 1e-3 * plain
    geodesic_2, plain_2 = relative_changes(2e-3)
    assert geodesic_2 / geodesic == pytest.approx(4.0, rel=0.05)  # second order in eta
    assert plain_2 / plain == pytest.approx(2.0, rel=0.05)  # first order in eta


def test_an_empty_budget_returns_the_starting_network(tasks):
    model, masks = first_task_network(tasks)
    metric = MemoryMetric(model, task_memory(tasks[0], masks[0], 5, seed=0))
    w0 = metric.space.get(model)
    path = traverse(model, objective(metric, tasks, masks, budget=0), metric,
                    ConjugateGradient(iters=5), eta=0.1, max_steps=100)
    assert path.steps == 0
    assert torch.equal(metric.space.get(model), w0) and torch.equal(path.weights, w0)


def test_the_budget_counts_every_evaluation_and_is_not_exceeded(tasks):
    model, masks = first_task_network(tasks)
    metric = MemoryMetric(model, task_memory(tasks[0], masks[0], 5, seed=0))
    combined = Combined([(1.0, objective(metric, tasks, masks, budget=100)), (0.1, Anchor())])
    path = traverse(model, combined, metric, ConjugateGradient(iters=5), eta=0.1,
                    max_steps=100)
    # one linearisation + 5 products + 1 gradient + 1 anchor pullback per step
    assert [r["evals"] for r in path.records] == [8 * k for k in range(1, 13)]
    assert path.records[-1]["evals"] <= 100


def test_memory_labels_add_gamma_times_the_memory_s_label_gradient(tasks, float64):
    """v = -grad [CE_t(batch) + gamma CE(mask_i(f(x_i)), y_i) over a replay_batch of the
    memory], each example on its own task's outputs (dense autograd, exact); 2 evaluations."""
    tasks = double(tasks)
    model, masks = first_task_network(tasks)
    memory = join(task_memory(tasks[0], masks[0], 4, seed=0),
                  task_memory(tasks[1], masks[1], 4, seed=1))
    metric = MemoryMetric(model, memory)
    w = metric.space.get(model) + 0.05 * torch.randn(metric.space.dim, dtype=torch.float64)
    learn = objective(metric, tasks, masks, t=2,
                      labels=MemoryLabels(0.7, memory, MemoryDraws(5, seed=3)))
    v = learn.direction(w, None)
    x, y = TaskBatches(tasks[2].train, 64, seed=2).next()
    index = MemoryDraws(5, seed=3).next(len(memory))

    def loss(u):
        new = task_loss(learn.function(u, x), y, masks[2])
        old = task_loss(learn.function(u, memory.x[index]), memory.y[index], memory.masks[index])
        return new + 0.7 * old

    assert torch.allclose(v, -torch.autograd.functional.jacobian(loss, w), rtol=1e-9,
                          atol=1e-12)
    assert learn.grad_evals == 2
    plain = objective(metric, tasks, masks, t=2)
    assert not torch.allclose(plain.direction(w, None), v)
    assert plain.grad_evals == 1


def test_early_stopping_ends_the_path_when_validation_loss_stalls(tasks):
    model, masks = first_task_network(tasks)
    metric = MemoryMetric(model, task_memory(tasks[0], masks[0], 5, seed=0))
    learn = objective(metric, tasks, masks, patience=2)
    path = traverse(model, learn, metric, ConjugateGradient(iters=4), eta=2.0, max_steps=400)
    losses = [r["val_loss"] for r in path.records if "val_loss" in r]
    assert path.steps < 400 and learn.stopped
    assert min(losses[-2:]) >= min(losses[:-2])


def test_a_killed_traversal_resumes_like_an_uninterrupted_one(tasks, tmp_path):
    def run(directory, callbacks=()):
        model, masks = first_task_network(tasks)
        metric = MemoryMetric(model, task_memory(tasks[0], masks[0], 5, seed=0), batch_size=6)
        learn = objective(metric, tasks, masks, budget=120, patience=3)
        return traverse(model, learn, metric, ConjugateGradient(iters=3), eta=0.2,
                        max_steps=1000, checkpoint_every=4, directory=directory,
                        callbacks=callbacks)

    full = run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", [Kill(8)])
    assert load_latest_checkpoint(tmp_path / "cut").step == 8
    resumed = run(tmp_path / "cut")
    assert torch.equal(resumed.weights, full.weights)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(resumed.records) == strip(full.records)


def test_skipping_the_memory_s_draw_gives_disjoint_examples(tasks):
    mask = torch.ones(10, dtype=torch.bool)
    kept = task_memory(tasks[1], mask, 5, seed=3)
    other = task_memory(tasks[1], mask, 5, seed=3, skip=5)
    both = task_memory(tasks[1], mask, 10, seed=3)
    assert len(other) == len(kept) == 10  # two classes
    assert not (kept.x[:, None] == other.x[None]).flatten(2).all(-1).any()
    rows = lambda m: {tuple(x.flatten().tolist()) for x in m.x}
    assert rows(kept) | rows(other) == rows(both)


def test_the_stored_anchor_pulls_each_held_row_toward_its_own_target(tasks, float64):
    """v = -grad (1/|B|) sum_i h_i 1/2 ||z_i(w) - z*_i||^2 on the drawn rows (dense, exact)."""
    tasks = double(tasks)
    model, masks = first_task_network(tasks, scenario="class-il")
    memory = task_memory(tasks[0], masks[0], 3, seed=0)
    new = task_memory(tasks[1], masks[1], 2, seed=1)
    metric = task_metric(model, memory, new, "logits", 5, seed=0)
    targets = torch.randn(len(metric.inputs), 10)
    w = metric.space.get(model) + 0.05 * torch.randn(metric.space.dim)
    local = metric.at(w)
    rows, held = local.rows, (local.rows < len(memory)).double()

    def distance(v):
        d = 0.5 * (metric.function(v, rows) - targets[rows]).pow(2).sum(-1)
        return (d * held).sum() / len(rows)

    v = StoredAnchor(targets).direction(w, local)
    assert torch.allclose(v, -torch.autograd.functional.jacobian(distance, w), rtol=1e-9,
                          atol=1e-12)
