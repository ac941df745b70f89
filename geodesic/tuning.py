"""Hyperparameters of every method chosen on the validation split, with the same effort each.

``SPACES[application][method]`` (:mod:`geodesic.search_space`) is the search space of a method
as data: the settings keys a trial samples (:class:`LogRange`, :class:`IntRange`,
:class:`Choice`, :class:`StepSplit`); settings that decide a method's compute (steps, budgets,
metric batch, the Bezier steps) are not searched, so every trial of every method spends what
the preset gives it: the sparsify walk's split of each level's steps between the approach and
the settling after the mask is searched with their sum fixed. ``run_trial(application, method,
settings, inputs, report)`` runs one method with those settings and returns its validation
score (higher is better):

    sparsify   mean validation accuracy over the levels >= 0.9 (all levels if none is),
               averaged over ``inputs.sequences`` base networks (seeds s.seed, s.seed + 1, ...)
    continual  validation ACC (mean accuracy over all tasks after the last), averaged over the
               scenarios and over ``inputs.sequences`` sequence seeds (s.seed, s.seed + 1, ...)
    connect    minimum validation accuracy along the path (BatchNorm recomputed at each point),
               averaged over ``inputs.sequences`` pairs of base networks (seeds[0] + 2k,
               seeds[1] + 2k for k = 0, 1, ...)
    hybrid     validation accuracy over all tasks (earlier and new), averaged over the levels

Methods run in order and each trial starts from the values already chosen for the methods
before it: ``geodesic_task`` searches only its task weight on top of the geodesic's step length
and anchor; the sparsify and hybrid baselines get the chosen geodesic's per-level evaluations.

``report(step, value)`` receives intermediate validation scores while a method runs, where the
method has them (a traversal's levels, each continual task, the connect geodesic's scored
points) and may raise to stop the trial (median pruning). The test split never enters:
:func:`validation_only` replaces it by the validation split before anything runs, so every
"test" figure a method computes while tuned is a validation figure.
"""
from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from torch import Tensor, nn

from geodesic.common.data import Dataset
from geodesic.common.models import build_model
from geodesic.continual.metrics import average_accuracy
from geodesic.continual.run import BENCHMARKS, METHODS, run_sequence
from geodesic.core.traverse import Callback
from geodesic.search_space import (  # noqa: F401 (re-exported)
    SPACES, Choice, Dimension, IntRange, LogRange, StepSplit)
from geodesic.sparsify.objective import level_name

Report = Callable[[int, float], None]
SPARSIFY_FROM_LEVEL = 0.9

def methods_of(application: str, settings) -> list[str]:
    """The methods of the application's settings that are tuned, in the order they run."""
    if application in ("sparsify", "hybrid"):
        return list(settings.methods)
    if application == "continual":
        return [*settings.geodesics, *settings.baselines]
    return [*settings.geodesics, *settings.baselines]


def validation_only(data: Dataset) -> Dataset:
    """``data`` with its test split replaced by the validation split."""
    return replace(data, test=data.val)


@dataclass
class TuningInputs:
    """What every trial of an application shares: the full params (for the model section and
    the base networks' training), the validation-only data and the base networks by seed
    (hybrid: its base network on the earlier tasks, trained by the first trial)."""

    params: Any  # geodesic.params.Params
    data: Dataset
    models: dict[int, nn.Module]
    device: Any = "cpu"  # torch.device of the base networks
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)  # the geodesic's
    sequences: int = 1  # continual: task sequences; sparsify: base networks; connect: pairs


@dataclass
class Outcome:
    score: float
    evals: float
    seconds: float
    details: dict  # per level / scenario / path figures, all on the validation split
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)  # by base-network seed


def run_trial(application: str, method: str, settings, inputs: TuningInputs,
              report: Report = lambda step, value: None) -> Outcome:
    return _RUNNERS[application](method, settings, inputs, report)


def scored_levels(levels: list[float]) -> list[str]:
    """The level names a sparsify trial's score averages: those >= 0.9, or all if none is."""
    names = [level_name(p) for p in levels]
    return [n for n in names if float(n) >= SPARSIFY_FROM_LEVEL] or names


class LevelReport(Callback):
    """At each scored level a traversal reaches, reports the mean validation accuracy over the
    scored levels reached so far in this trial (``values``, shared by the trial's networks: the
    running estimate of its score), so pruning never judges a trial by a level its score
    ignores."""

    def __init__(self, levels: list[float], report: Report, values: list | None = None):
        self.names, self.report = scored_levels(levels), report
        self.values = [] if values is None else values

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None:
        if name in self.names and "val_acc" in record:
            self.values.append(record["val_acc"])
            self.report(len(self.values) - 1, statistics.fmean(self.values))


def _sparsify(method: str, s, inputs: TuningInputs, report: Report) -> Outcome:
    """Mean over ``inputs.sequences`` base networks (seeds s.seed, +1, ...) of the mean
    validation accuracy over the scored levels; each baseline gets the chosen geodesic's
    per-level evaluations on the same network."""
    from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext, level_budgets, score

    scores, details, budgets, evals, seconds, values = [], {}, {}, 0.0, 0.0, []
    for seed in range(s.seed, s.seed + inputs.sequences):
        model = copy.deepcopy(inputs.models[seed])
        ctx = SparsifyContext.from_params(inputs.params, model, inputs.data,
                                          settings=replace(s, seed=seed))
        ctx.budgets = dict(inputs.budgets.get(str(seed), {}))
        hooks = [LevelReport(s.levels, report, values)]
        results = SPARSIFY_METHODS.get(method)(ctx, None, hooks)
        rows = score(ctx, results)
        scored = [k for k in scored_levels(s.levels) if k in rows] or list(rows)
        scores.append(statistics.fmean(rows[k]["val_acc"] for k in scored))
        last = rows[list(rows)[-1]]
        evals += last["grad_evals"] / inputs.sequences
        seconds += last["seconds"] / inputs.sequences
        details[str(seed)] = {k: r["val_acc"] for k, r in rows.items()}
        if method == "geodesic":
            budgets[str(seed)] = level_budgets(results)
    return Outcome(statistics.fmean(scores), evals, seconds,
                   details if inputs.sequences > 1 else details[str(s.seed)], budgets)


def _continual(method: str, s, inputs: TuningInputs, report: Report) -> Outcome:
    import torch

    data, p = inputs.data, inputs.params
    scores: dict[str, list[float]] = {scenario: [] for scenario in s.scenarios}
    evals, seconds, step = 0.0, 0.0, 0
    for seed in range(s.seed, s.seed + inputs.sequences):
        tasks = BENCHMARKS.get(s.benchmark)(data, s.n_tasks, seed)
        for scenario in s.scenarios:
            torch.manual_seed(seed)
            model = build_model(p.model.name, data.in_shape, data.num_classes,
                                p.model.widths).to(inputs.device)

            def on_task(t: int, result, first=step) -> None:
                report(first + t, statistics.fmean(result.val_matrix[-1][: t + 1]))

            result = run_sequence(METHODS.get(method)(replace(s, seed=seed)), model, tasks,
                                  scenario, data.num_classes, per_class=s.memory_per_class,
                                  seed=seed, eval_every=s.eval_every, on_task=on_task)
            scores[scenario].append(average_accuracy(result.val_matrix))
            evals += sum(result.evals) / inputs.sequences
            seconds += sum(result.seconds) / inputs.sequences
            step += len(tasks)
    means = {scenario: statistics.fmean(v) for scenario, v in scores.items()}
    return Outcome(statistics.fmean(means.values()), evals, seconds, means)


def connect_pairs(seeds: list[int], sequences: int) -> list[tuple[int, int]]:
    """The pairs of base networks a connect trial walks between: (seeds[0] + 2k,
    seeds[1] + 2k) for k < ``sequences`` (seeds [0, 1]: (0, 1), (2, 3), ...)."""
    return [(seeds[0] + 2 * k, seeds[1] + 2 * k) for k in range(sequences)]


class RunningMinimum(Callback):
    """Reports the running estimate of a connect trial's score: the mean of the finished
    pairs' minimum validation accuracies (``finished``) and the minimum seen so far along this
    traversal, at steps numbered on from ``first``."""

    def __init__(self, report: Report, finished: list[float] = (), first: int = 0):
        self.report, self.low = report, math.inf
        self.finished, self.first = list(finished), first

    def on_step(self, record: dict, w: Tensor) -> None:
        if "val_acc" in record:
            self.low = min(self.low, record["val_acc"])
            self.report(self.first + record["step"], statistics.fmean([*self.finished,
                                                                        self.low]))


def _connect(method: str, s, inputs: TuningInputs, report: Report) -> Outcome:
    """Mean over ``inputs.sequences`` pairs (:func:`connect_pairs`) of the minimum validation
    accuracy along the method's path."""
    from geodesic.connect.run import GEODESICS, endpoints, run_curve, run_geodesic

    pairs = connect_pairs(s.seeds, inputs.sequences)
    mins, barriers, evals, seconds = [], [], 0.0, 0.0
    for k, pair in enumerate(pairs):
        first, second = (copy.deepcopy(inputs.models[seed]) for seed in pair)
        ends = endpoints(first, second, inputs.data, s.bn_inputs, s.metric_batch)
        if method in GEODESICS:
            tracker = RunningMinimum(report, mins, k * (s.max_steps + 1))
            result = run_geodesic(ends, s, callbacks=(tracker,), name=method)
        else:
            result = run_curve(method, ends, s)
        m = result.metrics
        mins.append(m["val_min_acc"])
        barriers.append(m["val_barrier"])
        evals += m["grad_evals"] / inputs.sequences
        seconds += m["seconds"] / inputs.sequences
    details = {"val_min_acc": statistics.fmean(mins), "val_barrier": statistics.fmean(barriers)}
    if inputs.sequences > 1:
        details["pairs"] = {f"{a}-{b}": low for (a, b), low in zip(pairs, mins)}
    return Outcome(statistics.fmean(mins), evals, seconds, details)


class TaskMeanReport(Callback):
    """Reports the mean validation accuracy over all tasks at each sparsity level a hybrid
    traversal reaches (the baselines have no intermediate scores: they are never pruned)."""

    def __init__(self, s, report: Report):
        self.names = [level_name(p) for p in s.levels]
        self.tasks, self.report = s.n_tasks, report

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None:
        if name in self.names:
            self.report(self.names.index(name), statistics.fmean(
                record[f"val{j}_acc"] for j in range(self.tasks)))


def _hybrid(method: str, s, inputs: TuningInputs, report: Report) -> Outcome:
    import torch

    from geodesic.hybrid.methods import HYBRID_METHODS
    from geodesic.hybrid.run import HybridContext, build_problem, score, train_base

    data, p = inputs.data, inputs.params
    problem = build_problem(data, s)
    if s.seed not in inputs.models:  # the base network on the earlier tasks, trained once
        torch.manual_seed(s.seed)
        base = p.model.build(data.in_shape, data.num_classes).to(inputs.device)
        inputs.models[s.seed] = train_base(base, data, problem, p.train, s, inputs.device)
    ctx = HybridContext(copy.deepcopy(inputs.models[s.seed]), problem, s)
    ctx.budgets = dict(inputs.budgets.get(str(s.seed), {}))
    rows = score(ctx, HYBRID_METHODS.get(method)(ctx, None, [TaskMeanReport(s, report)]))
    last = rows[list(rows)[-1]]
    return Outcome(statistics.fmean(r["val_acc"] for r in rows.values()), last["grad_evals"],
                   last["seconds"], {k: {q: r[f"val_{q}"] for q in ("acc", "old_acc", "new_acc")}
                                     for k, r in rows.items()},
                   {str(s.seed): dict(ctx.budgets)} if method == "geodesic" else {})


_RUNNERS: dict[str, Callable[..., Outcome]] = {
    "sparsify": _sparsify, "continual": _continual, "connect": _connect, "hybrid": _hybrid}
APPLICATIONS = tuple(_RUNNERS)
