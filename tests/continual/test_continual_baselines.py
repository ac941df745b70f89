"""The baseline template and plugins: penalties vanish at their anchors, budgets and data order
are shared, the registries match the params names."""
import pytest
import torch

from geodesic.common.models import build_model
from geodesic.continual.baselines import BASELINES, Context, Template, old_output_groups
from geodesic.continual.plugins import EWC, SI, DarkReplay, LwF, Replay
from geodesic.continual.protocol import SCENARIOS, empty_memory, output_mask, task_memory
from geodesic.continual.run import METHODS, run_sequence
from geodesic.continual.settings import (CONTINUAL_BASELINES, CONTINUAL_GEODESICS,
                                         CONTINUAL_SCENARIOS, ContinualSettings)
from geodesic.core.path import checkpoint_files
from geodesic.core.registry import UnknownNameError
from geodesic.core.settings import ParamsError
from geodesic.params import parse_params
from tests.helpers.callbacks import KillAfter


pytestmark = pytest.mark.usefixtures("one_thread")


def network(seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", (1, 8, 8), 10, (16,))


def learn(plugins, tasks, t, model, masks, budget=40, memory=None):
    template = Template(plugins, ContinualSettings(lr=0.05, finetune_lr=0.05, batch_size=32,
                                                 budget=budget, stop_every=10, patience=0))
    memory = memory if memory is not None else empty_memory(tasks[0].train, 10)
    return template.learn(model, t, tasks, masks, memory, seed=t)


def context(model, tasks, masks, t):
    return Context(model, t, tasks[t], masks[t], old_output_groups(tasks, masks, t),
                   empty_memory(tasks[0].train, 10), 32, torch.device("cpu"))


def perturb(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("make", [lambda: EWC(1e3, "separate"), lambda: EWC(1e3, "online", 0.9),
                                  lambda: SI(10.0), lambda: LwF(1.0, 2.0)])
def test_penalties_are_zero_at_their_anchors_and_positive_elsewhere(tasks, make):
    masks = [output_mask("task-il", t, 10) for t in tasks]
    model, plugin = network(), make()
    learn([plugin], tasks, 0, model, masks)
    ctx = context(model, tasks, masks, 1)
    x, y = tasks[1].train.x[:32], tasks[1].train.y[:32]
    assert float(plugin.penalty(ctx, x, y, model(x)).detach()) == pytest.approx(0.0, abs=1e-6)
    perturb(model)
    assert float(plugin.penalty(ctx, x, y, model(x)).detach()) > 1e-4


def test_separate_ewc_has_the_gradient_of_the_sum_of_its_terms(tasks):
    masks = [output_mask("task-il", t, 10) for t in tasks]
    model, ewc = network(), EWC(1.0, "separate", samples=64)
    terms = []
    for t in range(3):
        learn([ewc], tasks, t, model, masks)
        fisher = ewc.fisher(context(model, tasks, masks, t))
        terms.append((fisher, {n: p.detach().clone() for n, p in model.named_parameters()}))
    perturb(model)
    ctx = context(model, tasks, masks, 3)
    x = tasks[3].train.x[:4]
    literal = 0.5 * sum(((p - a[n]) ** 2 * f[n]).sum() for f, a in terms
                        for n, p in model.named_parameters())
    want = torch.autograd.grad(literal, list(model.parameters()))
    got = torch.autograd.grad(ewc.penalty(ctx, x, None, model(x)), list(model.parameters()))
    for a, b in zip(want, got):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-8)


def test_the_template_spends_exactly_the_budget_and_counts_replay_passes(tasks):
    masks = [output_mask("class-il", t, 10) for t in tasks]
    model = network()
    assert learn([], tasks, 0, model, masks, budget=37) == (37, 37)
    memory = task_memory(tasks[0], masks[0], 5, seed=0)
    evals, steps = learn([Replay(8)], tasks, 1, model, masks, budget=37, memory=memory)
    assert (evals, steps) == (36, 18)  # two passes a step; a 19th step would exceed 37


def test_der_stores_each_example_s_logits_from_the_end_of_its_task(tasks):
    """At the start of task 1 the network is task 0's end point: the dark term is exactly 0
    on task 0's memory, the logits of task 0's examples never change afterwards, and a
    perturbed network pays for its drift from them."""
    masks = [output_mask("class-il", t, 10) for t in tasks]
    model, plugin = network(), DarkReplay(8, alpha=1.0, beta=0.0, seed=0)
    learn([plugin], tasks, 0, model, masks)
    memory = task_memory(tasks[0], masks[0], 5, seed=0)
    ctx = context(model, tasks, masks, 1)
    ctx.memory = memory
    plugin.before_task(ctx)
    with torch.no_grad():
        assert torch.equal(plugin.logits, model(memory.x))
    x, y = tasks[1].train.x[:8], tasks[1].train.y[:8]
    assert float(plugin.penalty(ctx, x, y, model(x))) == 0.0 and ctx.evals == 1
    stored = plugin.logits.clone()
    perturb(model)
    assert float(plugin.penalty(ctx, x, y, model(x))) > 1e-4
    ctx.memory = type(memory)(*(torch.cat([a, a]) for a in (memory.x, memory.y, memory.masks)))
    plugin.before_task(ctx)
    assert len(plugin.logits) == 2 * len(memory) and torch.equal(plugin.logits[:10], stored)


def test_an_empty_budget_leaves_the_network_unchanged(tasks):
    masks = [output_mask("task-il", t, 10) for t in tasks]
    model = network()
    before = [p.detach().clone() for p in model.parameters()]
    assert learn([], tasks, 0, model, masks, budget=0) == (0, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_lwf_distils_each_earlier_task_on_the_seen_classes_only(tasks):
    task_il = [output_mask("task-il", t, 10) for t in tasks]
    class_il = [output_mask("class-il", t, 10) for t in tasks]
    groups = old_output_groups(tasks, task_il, 2)
    assert [g.nonzero().flatten().tolist() for g in groups] == [[0, 1], [2, 3]]
    groups = old_output_groups(tasks, class_il, 2)
    assert [g.nonzero().flatten().tolist() for g in groups] == [[0, 1, 2, 3]]


def test_every_method_learns_the_first_task_identically(tasks):
    settings = ContinualSettings(budget=30, batch_size=32, patience=0)
    rows = {}
    for name in METHODS.names():
        model = network()
        result = run_sequence(METHODS.get(name)(settings), model, tasks[:2], "class-il", 10,
                              per_class=3, seed=0)
        rows[name] = result.matrix[0]
    assert all(row == rows["finetune"] for row in rows.values())


def test_registries_hold_exactly_the_params_names():
    assert BASELINES.names() == sorted(CONTINUAL_BASELINES)
    assert METHODS.names() == sorted((*CONTINUAL_GEODESICS, *CONTINUAL_BASELINES))
    assert SCENARIOS.names() == sorted(CONTINUAL_SCENARIOS)
    with pytest.raises(UnknownNameError, match="known: derpp, ewc, finetune, lwf, replay, si"):
        BASELINES.get("agem")


@pytest.mark.parametrize("section, message", [
    ({"scenarios": ["domain-il"]}, "continual.scenarios.*one of task-il, class-il"),
    ({"baselines": ["ewc", "ewc"]}, "continual.baselines.*distinct"),
    ({"benchmark": "rotated"}, "continual.benchmark.*one of split, permuted"),
])
def test_bad_continual_params_name_the_key_and_the_allowed_values(section, message):
    with pytest.raises(ParamsError, match=message):
        parse_params({"continual": section})


@pytest.mark.parametrize("name", ["finetune", "ewc", "si", "lwf", "replay", "derpp",
                                  "geodesic", "geodesic_replay"])
def test_an_interrupted_sequence_resumes_to_the_uninterrupted_result(tasks, tmp_path, name):
    """Killed inside a task, between tasks and twice in a row, the rerun ends with bitwise the
    accuracy matrix, counts and weights of an uninterrupted run (checkpoints every 3 steps)."""
    settings = ContinualSettings(budget=40, batch_size=16, patience=3, stop_every=8,
                                 fisher_samples=16, replay_batch=8, cg_iters=2,
                                 checkpoint_every=3)

    def run(directory=None, killer=None):
        model = network()
        result = run_sequence(METHODS.get(name)(settings), model, tasks[:3], "class-il", 10,
                              per_class=3, seed=0, callbacks=[killer or KillAfter()],
                              directory=directory)
        return result, torch.cat([p.detach().flatten() for p in model.parameters()])

    full_counter = KillAfter()
    full, w_full = run(killer=full_counter)
    n = full_counter.calls  # about 9 records per task
    for cut in ([n // 2], [n - 2], [n // 5, n * 3 // 5]):
        folder = tmp_path / "-".join(map(str, cut))
        for limit in cut:
            with pytest.raises(KeyboardInterrupt):
                run(folder, KillAfter(limit))
        counter = KillAfter()
        resumed, w = run(folder, counter)
        assert counter.calls < full_counter.calls  # continued, not started afresh
        assert (resumed.matrix, resumed.val_matrix) == (full.matrix, full.val_matrix), cut
        assert (resumed.evals, resumed.steps) == (full.evals, full.steps)
        assert torch.equal(w, w_full)
        if not name.startswith("geodesic"):  # a finished task keeps only its end state
            folders = sorted(f for f in folder.rglob("checkpoints") if f.is_dir())
            assert len(folders) == 3
            assert all(len(checkpoint_files(f.parent)) == 1 for f in folders)
