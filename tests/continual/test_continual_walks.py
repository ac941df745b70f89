"""The continual walks as learners over a task sequence: geodesic_task_inputs and
geodesic_replay against the paper's walk, and the stored anchor's targets across tasks."""
import dataclasses

import pytest
import torch

from geodesic.common.models import build_model
from geodesic.continual.objective import memory_outputs
from geodesic.continual.protocol import output_mask, task_memory
from geodesic.continual.settings import ContinualSettings
from tests.helpers.callbacks import KillAfter


pytestmark = pytest.mark.usefixtures("one_thread")


def two_tasks(tasks, method, **settings):
    """``method`` over the first two tasks (class-IL, 40 evaluations a task): the result and
    the weights at the end."""
    from geodesic.continual.run import METHODS, run_sequence

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, (32,))
    s = ContinualSettings(**{**dict(eta=0.5, anchor=1.0, budget=40, task_inputs=10, patience=0,
                                    metric_batch=64, cg_iters=4, replay_batch=8), **settings})
    result = run_sequence(METHODS.get(method)(s), model, tasks[:2], "class-il", 10, per_class=5,
                          seed=0)
    return result, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_geodesic_task_inputs_is_the_geodesic_with_new_inputs_and_its_own_values(tasks):
    def run(method, **own):
        return two_tasks(tasks, method, **own)[0]

    plain, damped = run("geodesic"), run("geodesic_task_inputs")
    assert plain.matrix[0] == damped.matrix[0]  # the first task: the plain template
    assert max(plain.evals[1], damped.evals[1]) <= 40
    assert plain.matrix[1] != damped.matrix[1]
    assert run("geodesic", task_inputs_eta=0.1).matrix == plain.matrix  # not its key
    assert run("geodesic_task_inputs", task_inputs_eta=0.1).matrix != damped.matrix
    assert run("geodesic_task_inputs", task_inputs_beta=4.0).matrix != damped.matrix
    s = ContinualSettings(task_inputs_anchor=3.0, task_inputs_beta=4.0).for_method(
        "geodesic_task_inputs")
    assert (s.anchor, s.eta, s.beta) == (3.0, ContinualSettings().eta, 4.0)


def test_geodesic_replay_is_the_geodesic_with_the_memory_s_labels_and_its_own_values(tasks):
    def run(method, **own):
        return two_tasks(tasks, method, **own)

    (plain, w_plain), (labelled, w_labelled) = run("geodesic"), run(
        "geodesic_replay", geodesic_replay_labels=2.0)
    assert plain.matrix[0] == labelled.matrix[0]
    assert labelled.evals[1] <= 40 and labelled.steps[1] == plain.steps[1]
    assert labelled.evals[1] - plain.evals[1] == labelled.steps[1]  # one more evaluation a step
    assert not torch.allclose(w_plain, w_labelled)
    assert torch.equal(run("geodesic", memory_labels=2.0)[1], w_labelled)  # the same walk
    assert torch.equal(run("geodesic", geodesic_replay_labels=2.0)[1], w_plain)  # not its key
    s = ContinualSettings(geodesic_replay_labels=3.0, geodesic_replay_eta=0.2).for_method(
        "geodesic_replay")
    assert (s.memory_labels, s.eta, s.anchor) == (3.0, 0.2, ContinualSettings().anchor)
    assert ContinualSettings().for_method("geodesic").memory_labels == 0.0  # the paper's walk


def test_stored_targets_are_the_outputs_each_example_had_when_it_entered(tasks, tmp_path):
    """anchor_target stored: the memory's rows of task j hold the network's masked outputs at
    the end of task j; a killed and resumed sequence ends as an uninterrupted one."""
    from geodesic.continual.run import GeodesicLearner, run_sequence

    s = ContinualSettings(eta=0.5, anchor=2.0, anchor_target="stored", budget=30, patience=0,
                          cg_iters=2, metric_batch=64, checkpoint_every=2)
    ends = []

    def run(directory=None, killer=None):
        torch.manual_seed(0)
        model = build_model("mlp", (1, 8, 8), 10, (32,))
        learner = GeodesicLearner(s)
        result = run_sequence(learner, model, tasks[:3], "task-il", 10, per_class=4, seed=0,
                              callbacks=[killer or KillAfter()], directory=directory,
                              on_task=lambda t, r: ends.append(memory_outputs(
                                  model, task_memory(tasks[t], output_mask(
                                      "task-il", tasks[t], 10), 4, seed=t))))
        return result, learner, torch.cat([p.detach().flatten() for p in model.parameters()])

    full, learner, w_full = run()
    assert torch.equal(learner.stored, torch.cat(ends[:2]))  # tasks 0 and 1 entered
    start = dataclasses.replace(s, anchor_target="start")
    torch.manual_seed(0)
    other = build_model("mlp", (1, 8, 8), 10, (32,))
    run_sequence(GeodesicLearner(start), other, tasks[:3], "task-il", 10, per_class=4, seed=0)
    assert not torch.equal(torch.cat([p.detach().flatten() for p in other.parameters()]), w_full)
    counter = KillAfter()
    run(killer=counter)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, KillAfter(counter.calls * 3 // 4))
    resumed, _, w = run(tmp_path)
    assert resumed.matrix == full.matrix and torch.equal(w, w_full)
