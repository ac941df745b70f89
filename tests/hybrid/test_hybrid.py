"""The hybrid application on the digits data: its objective is a composition the loop does not
know, its baselines hold their masks and spend the geodesic's evaluations, a killed walk resumes
to the same end."""
import ast
import dataclasses
import inspect

import pytest
import torch

from geodesic.common.data import load_dataset
from geodesic.common.settings import TrainSettings
from geodesic.continual.objective import LearnTask
from geodesic.core import traverse as traverse_module
from geodesic.core.objectives import Anchor, Combined
from geodesic.core.traverse import Callback
from geodesic.hybrid import baselines
from geodesic.hybrid.methods import HYBRID_METHODS
from geodesic.hybrid.run import (HybridContext, build_problem, earlier_tasks, hybrid_objective,
                                 score, train_base)
from geodesic.hybrid.settings import HybridSettings
from geodesic.params import ModelSettings
from geodesic.sparsify.objective import Sparsify

pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = HybridSettings(levels=[0.5, 0.8], steps_per_level=6, settle_steps=2, cg_iters=2,
                          metric_batch=32, memory_per_class=4, base_epochs=2, batch_size=32,
                          replay_batch=8, eval_every=4, checkpoint_every=3, eta=0.3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", val_fraction=0.1, seed=0)


def context(data, settings=SETTINGS) -> HybridContext:
    problem = build_problem(data, settings)
    torch.manual_seed(settings.seed)
    model = ModelSettings(widths=[32]).build(data.in_shape, data.num_classes)
    train_base(model, data, problem, TrainSettings(epochs=2, batch_size=64), settings, "cpu")
    return HybridContext(model, problem, settings)


def test_the_base_network_never_sees_the_new_task_and_the_memory_holds_earlier_classes(data):
    problem = build_problem(data, SETTINGS)
    assert problem.new == 4 and problem.tasks[-1].classes == [8, 9]
    earlier = earlier_tasks(data, problem)
    for split in (earlier.train, earlier.val, earlier.test):
        assert len(split) and int(split.y.max()) <= 7
    assert sorted(problem.memory.y.unique().tolist()) == list(range(8))
    assert len(problem.memory) == 8 * SETTINGS.memory_per_class
    assert bool(problem.memory.masks.all())  # class-il: every output is kept


def test_the_objective_is_a_combination_of_the_three_directions_the_loop_never_names(data):
    ctx = context(data)
    from geodesic.continual.objective import MemoryMetric
    objective = hybrid_objective(ctx, MemoryMetric(ctx.model, ctx.memory))
    assert isinstance(objective, Combined)
    inner, anchor = objective.parts
    assert isinstance(inner[1], Combined) and isinstance(anchor[1], Anchor)
    assert anchor[0] == SETTINGS.anchor
    (one, sparsify), (beta, learn) = inner[1].parts
    assert (one, beta) == (1.0, SETTINGS.task_beta)
    assert isinstance(sparsify, Sparsify) and isinstance(learn, LearnTask)
    tree = ast.parse(inspect.getsource(traverse_module))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in names if any(word in n.lower() for word in (
        "hybrid", "sparsif", "learntask", "continual", "connect"))}


@pytest.fixture(scope="module")
def walked(data, tmp_path_factory):
    """The geodesic and both baselines on one context, with their results and scores."""
    ctx = context(data)
    folder = tmp_path_factory.mktemp("hybrid")
    results = {name: HYBRID_METHODS.get(name)(ctx, folder / name) for name in SETTINGS.methods}
    return ctx, results, folder


def test_every_method_reaches_each_level_exactly_and_keeps_its_masks(walked):
    ctx, results, _ = walked
    for name, levels in results.items():
        assert list(levels) == ["0.5", "0.8"], name
        first, second = (levels[k].weights for k in ("0.5", "0.8"))
        assert ctx.projection.sparsity(first) == pytest.approx(0.5, abs=1e-3)
        assert ctx.projection.sparsity(second) == pytest.approx(0.8, abs=1e-3)
    geodesic = results["geodesic"]
    pruned_first = (geodesic["0.5"].weights == 0) & ctx.projection.prunable
    assert bool((geodesic["0.8"].weights[pruned_first] == 0).all())  # never un-pruned


def test_the_baselines_spend_the_geodesics_evaluations_at_each_level(walked):
    ctx, results, _ = walked
    for level, budget in ctx.budgets.items():
        assert budget == results["geodesic"][level].grad_evals > 0
        for name in ("prune_finetune", "finetune_prune_finetune"):
            spent = results[name][level].grad_evals
            assert budget - 2 < spent <= budget, (name, level, spent, budget)


def test_scores_hold_each_task_and_their_old_new_and_all_means(walked):
    ctx, results, _ = walked
    rows = score(ctx, results["geodesic"])
    row = rows["0.8"]
    assert len(row["task_accs"]) == 5 and len(row["val_task_accs"]) == 5
    assert row["old_acc"] == pytest.approx(sum(row["task_accs"][:4]) / 4)
    assert row["new_acc"] == row["task_accs"][4]
    assert row["acc"] == pytest.approx(sum(row["task_accs"]) / 5)
    assert torch.equal(ctx.space.get(ctx.model), ctx.base)  # scoring leaves the base in place


def test_keep_mask_holds_pruned_coordinates_at_zero_through_replay_training(data):
    ctx = context(data)
    keep = ctx.projection.mask(ctx.base, 0.7)
    ctx.space.set(ctx.model, ctx.base * keep)
    spent = baselines.replay_training(ctx, 0.5, 40, keep)
    w = ctx.space.get(ctx.model)
    assert 38 <= spent <= 40
    assert bool((w[~keep] == 0).all()) and bool((w[keep] != ctx.base[keep]).any())


class Stop(Callback):
    def __init__(self, at: int):
        self.at = at

    def on_step(self, record, w):
        if record["step"] == self.at:
            raise KeyboardInterrupt


def test_a_killed_walk_resumes_to_the_same_networks(data, tmp_path):
    whole = HYBRID_METHODS.get("geodesic")(context(data), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        HYBRID_METHODS.get("geodesic")(context(data), tmp_path / "cut", [Stop(7)])
    resumed = HYBRID_METHODS.get("geodesic")(context(data), tmp_path / "cut")
    for level in whole:
        assert torch.equal(whole[level].weights, resumed[level].weights)
        assert whole[level].grad_evals == resumed[level].grad_evals


def test_bad_settings_are_refused_with_the_key_and_what_is_allowed():
    from geodesic.core.settings import ParamsError
    from geodesic.params import parse_params
    with pytest.raises(ParamsError, match="hybrid.n_tasks = 3 .*divisor of the 10 classes"):
        parse_params({"hybrid": {"n_tasks": 3}})
    with pytest.raises(ParamsError, match="hybrid.methods .*'geodesic' first"):
        parse_params({"hybrid": {"methods": ["prune_finetune"]}})
    with pytest.raises(ParamsError, match="hybrid.levels"):
        parse_params({"hybrid": {"levels": [0.9, 0.8]}})
    assert dataclasses.asdict(parse_params({}).hybrid) == dataclasses.asdict(HybridSettings())
