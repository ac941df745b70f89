"""The sparsify application: every method by name, on one dense network, at equal compute.

``SPARSIFY_METHODS`` maps a method name of ``params.yaml`` to a function
``(context, directory, callbacks) -> {level name: LevelResult}``:

    geodesic            the traversal toward the magnitude projection (label-free): the plain form
                        v = P_p(w) - w when ``anchor`` is 0, else the anchored form
                        v = P_p(w) - w - anchor grad D(w)
    geodesic_task       the same plus task_beta times the labelled direction -grad L(w)
    magnitude, magnitude_finetune, distill_finetune, imp
                        the baselines of :mod:`geodesic.sparsify.baselines`
    imp_long            imp given ``imp_long_factor`` times the geodesic's evaluations

The geodesic runs first; the units it spent within each level (``level_budgets``) are the
budgets of the equal-compute baselines. ``score`` turns results into the rows of
``metrics/sparsify.json``: test and validation accuracy, the measured sparsity, the cumulative
gradient-evaluation count and wall-clock seconds at each level.

Given a ``directory``, every method that computes resumes there: the traversals from their path
checkpoints, the trained baselines from their state (:class:`geodesic.core.path.StateCheckpoints`
every ``checkpoint_every`` SGD steps and after every pruning round; imp's rewind point too).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Callable

import torch
from torch import Tensor, nn

from geodesic.common.data import Dataset, Split
from geodesic.common.evaluate import AccuracyCallback, has_batchnorm, score_weights
from geodesic.common.settings import TrainSettings
from geodesic.core.io import CorruptFileError, load_tensors
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import Path, StateCheckpoints, save_milestone
from geodesic.core.registry import Registry
from geodesic.core.space import ParameterSpace
from geodesic.core.task_loss import TaskLoss
from geodesic.core.traverse import Callback, walk
from geodesic.sparsify import baselines as pruning
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import Sparsify, UnmaskedScore, build_sparsify_objective
from geodesic.sparsify.scores import target_factor
from geodesic.sparsify.settings import SparsifySettings

log = logging.getLogger(__name__)
SPARSIFY_METHODS: Registry = Registry("sparsify method")
RECALIBRATION_INPUTS = 2048  # training inputs that re-estimate BatchNorm statistics
LevelResults = dict[str, pruning.LevelResult]


@dataclass
class SparsifyContext:
    """What every method shares: the dense network, the data and the settings."""

    model: nn.Module
    data: Dataset
    settings: SparsifySettings
    init: Callable[[], nn.Module] | None = None  # the base network's initialisation (for imp)
    train_settings: TrainSettings | None = None  # and its training (for imp's rewind point)
    space: ParameterSpace = field(init=False)
    projection: MagnitudeProjection = field(init=False)
    dense: Tensor = field(init=False)
    budgets: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        s = self.settings
        self.space = ParameterSpace(self.model)
        self.projection = MagnitudeProjection.build(self.model, self.space, s.include, s.exclude,
                                                    s.ranking)
        self.dense = self.space.get(self.model)
        self._splits = {name: Split(part.x.to(self.device), part.y.to(self.device))
                        for name in ("train", "val", "test") for part in [getattr(self.data, name)]}
        self.recalibrate = (self._splits["train"].x[:RECALIBRATION_INPUTS]
                            if has_batchnorm(self.model) else None)

    @classmethod
    def from_params(cls, params, model: nn.Module, data: Dataset,
                    settings=None) -> "SparsifyContext":
        """The context of ``params`` (a :class:`~geodesic.params.Params`) for the base network
        ``model``; ``settings`` replaces ``params.sparsify``. imp's rewind point replays the
        train stage's run: its initialisation (seeded by the sparsify seed) and training config."""
        s, t = settings or params.sparsify, params.train

        def init() -> nn.Module:
            torch.manual_seed(s.seed)
            return params.model.build(data.in_shape, data.num_classes)

        return cls(model, data, s, init, params.train)

    @property
    def device(self) -> torch.device:
        return self.dense.device

    def split(self, name: str) -> Split:
        return self._splits[name]


def traverse_levels(ctx: SparsifyContext, hybrid: bool, directory=None,
                    callbacks=()) -> tuple[Path, LevelResults]:
    """Run the geodesic (``hybrid``: with the task direction) from the dense network."""
    s = ctx.settings
    model = ctx.model
    ctx.space.set(model, ctx.dense)
    train, val, test = ctx.split("train"), ctx.split("val"), ctx.split("test")
    metric = FunctionalMetric(model, train.x, s.output, s.metric_batch, seed=s.seed,
                              **s.metric_options())
    sparsify = Sparsify(ctx.projection, s.levels, s.steps_per_level, s.level_tol,
                        s.settle_steps, s.target)
    task = TaskLoss(metric.function, train.x, train.y, s.metric_batch, seed=s.seed + 1)
    objective = build_sparsify_objective(sparsify, s.anchor, task if hybrid else None,
                                         s.task_beta)
    name = "geodesic_task" if hybrid else "geodesic"
    kept = MilestoneWeights()
    bn = ctx.recalibrate
    hooks = [kept, AccuracyCallback(model, ctx.space, val, s.eval_every, "val", bn),
             AccuracyCallback(model, ctx.space, test, s.eval_every, "test", bn),
             UnmaskedScore(sparsify, model, ctx.space, test, recalibrate=bn), *callbacks]
    path = walk(model, objective, metric, s, max_steps=s.step_budget, directory=directory,
                callbacks=hooks, name=name)
    ctx.space.set(model, ctx.dense)
    return path, path_levels(path, kept.weights)


class MilestoneWeights(Callback):
    """Keeps the weights of every milestone reached in this call, by name."""

    def __init__(self):
        self.weights: dict[str, Tensor] = {}

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None:
        self.weights[name] = w


def path_levels(path: Path, weights: dict[str, Tensor] | None = None) -> LevelResults:
    """Each level's milestone weights (from ``weights``, else from the path's folder) with the
    cumulative evals and seconds at its step."""
    out, weights = {}, weights or {}
    for name, record in path.milestones.items():
        at = path.records[record["step"] - 1] if record["step"] else {"evals": 0, "seconds": 0.0}
        w = weights[name] if name in weights else path.milestone_weights(name)
        out[name] = pruning.LevelResult(w, float(at["evals"]), float(at["seconds"]))
    return out


def level_budgets(results: LevelResults) -> dict[str, float]:
    """The units spent within each level (differences of the cumulative counts)."""
    budgets, before = {}, 0.0
    for name, result in results.items():
        budgets[name], before = result.grad_evals - before, result.grad_evals
    return budgets


@SPARSIFY_METHODS.register("geodesic")
def _geodesic(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    results = traverse_levels(ctx, False, directory, callbacks)[1]
    ctx.budgets = level_budgets(results)
    return results


@SPARSIFY_METHODS.register("geodesic_task")
def _geodesic_task(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    return traverse_levels(ctx, True, directory, callbacks)[1]


@SPARSIFY_METHODS.register("magnitude")
def _magnitude(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    return pruning.magnitude(ctx.dense, ctx.projection, ctx.settings.levels)


@SPARSIFY_METHODS.register("obd")
def _obd(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    """One-shot pruning of the dense network by OBD scores (no walk, no training)."""
    s = ctx.settings
    rule = s.target if s.target != "magnitude" else "obd"
    metric = FunctionalMetric(ctx.model, ctx.split("train").x, s.output, s.metric_batch,
                              seed=s.seed, **s.metric_options())
    t0 = time.perf_counter()
    factor = target_factor(rule, metric, ctx.dense, metric.sample(), ctx.projection.segments)
    seconds = time.perf_counter() - t0
    return {name: pruning.LevelResult(r.weights, float(metric.evals), seconds)
            for name, r in pruning.magnitude(ctx.dense, ctx.projection, s.levels,
                                             factor).items()}


def _sgd(ctx: SparsifyContext, lr: float, batch: int) -> pruning.MaskedSGD:
    return pruning.MaskedSGD(lr, batch, seed=ctx.settings.seed)


def _checkpoints(ctx: SparsifyContext, directory) -> StateCheckpoints:
    """A baseline's resumable state in ``directory``, every ``checkpoint_every`` SGD steps."""
    return StateCheckpoints(directory, ctx.settings.checkpoint_every, device=ctx.device)


def _prune_then_train(ctx: SparsifyContext, key: str, loss, directory=None) -> LevelResults:
    """Project to each level, then SGD on ``loss`` at ``<key>_lr`` / ``<key>_batch`` with the
    geodesic's evaluations of that level."""
    s, train = ctx.settings, ctx.split("train")
    return pruning.prune_and_train(
        ctx.model, ctx.space, ctx.projection, ctx.dense, s.levels, ctx.budgets, s.metric_batch,
        _sgd(ctx, getattr(s, f"{key}_lr"), getattr(s, f"{key}_batch")), loss, len(train),
        _checkpoints(ctx, directory))


@SPARSIFY_METHODS.register("magnitude_finetune")
def _magnitude_finetune(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    train = ctx.split("train")
    return _prune_then_train(ctx, "finetune", pruning.label_loss(train.x, train.y), directory)


@SPARSIFY_METHODS.register("distill_finetune")
def _distill_finetune(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    ctx.space.set(ctx.model, ctx.dense)  # the teacher is the dense network
    loss = pruning.distill_loss(ctx.split("train").x, ctx.model)
    return _prune_then_train(ctx, "distill", loss, directory)


@SPARSIFY_METHODS.register("imp")
def _imp(ctx: SparsifyContext, directory=None, callbacks=(), factor: float = 1.0
         ) -> LevelResults:
    """IMP with ``factor`` times the geodesic's evaluations at every level."""
    s, train = ctx.settings, ctx.split("train")
    budgets = {name: factor * units for name, units in ctx.budgets.items()}
    return pruning.iterative_magnitude_pruning(
        ctx.model, ctx.space, ctx.projection, ctx.dense, _rewind_point(ctx, directory),
        s.levels, budgets, s.metric_batch, _sgd(ctx, s.imp_lr, s.imp_batch),
        pruning.label_loss(train.x, train.y), len(train), s.imp_fraction,
        _checkpoints(ctx, directory))


@SPARSIFY_METHODS.register("imp_long")
def _imp_long(ctx: SparsifyContext, directory=None, callbacks=()) -> LevelResults:
    return _imp(ctx, directory, callbacks, ctx.settings.imp_long_factor)


def _rewind_point(ctx: SparsifyContext, directory=None) -> Tensor:
    """imp's rewind point, replayed from the base network's training (kept as the milestone
    ``rewind`` in ``directory``, so a resumed imp does not replay it again)."""
    if ctx.init is None or ctx.train_settings is None:
        raise ValueError("imp needs the base network's initialisation and training settings")
    file = FsPath(directory) / "milestones" / "rewind.safetensors" if directory else None
    if file is not None and file.exists():
        try:
            return load_tensors(file, ctx.device)[0]["w"]
        except CorruptFileError as exc:
            log.warning("replaying imp's rewind point: %s", exc)
    w = pruning.early_weights(ctx.init().to(ctx.device), ctx.data, ctx.train_settings,
                              ctx.settings.seed, ctx.settings.imp_rewind_epochs, ctx.device)
    if directory is not None:
        save_milestone(directory, "rewind", w)
    return w


def score(ctx: SparsifyContext, results: LevelResults) -> dict[str, dict]:
    """{level: {test_acc, val_acc, val_loss, sparsity, grad_evals, seconds}} for one method
    (with BatchNorm, its statistics are first re-estimated on training inputs, for every
    method alike)."""
    rows = {}
    for name, r in results.items():
        test_acc, _ = score_weights(ctx.model, ctx.space, r.weights, ctx.split("test"),
                                    ctx.recalibrate)
        val_acc, val_loss = score_weights(ctx.model, ctx.space, r.weights, ctx.split("val"),
                                          ctx.recalibrate)
        rows[name] = {"test_acc": test_acc, "val_acc": val_acc, "val_loss": val_loss,
                      "sparsity": ctx.projection.sparsity(r.weights),
                      "grad_evals": r.grad_evals, "seconds": r.seconds}
    return rows
