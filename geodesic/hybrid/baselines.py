"""Baselines of the hybrid application: pruning and replay training, in two orders.

Each runs once per sparsity level p with budget B_p, the geodesic's cumulative evaluations at
that level (counted as the continual baselines count them: one per forward+backward pass over a
minibatch, the replayed memory minibatch included). Both train with the continual template
(:class:`~geodesic.continual.baselines.Template`): SGD on the new task's minibatches (the
geodesic's order) plus CE on a memory minibatch (:class:`~geodesic.continual.plugins.Replay`,
the geodesic's memory), with the pruned coordinates held at zero (``KeepMask``).

    prune_finetune            w <- P_p(w0) (global magnitude); train B_p
    finetune_prune_finetune   train floor(B_p / 2); w <- P_p(w); train the rest of B_p
"""
from __future__ import annotations

import time
from pathlib import Path

from torch import Tensor

from geodesic.continual.baselines import Template
from geodesic.continual.plugins import Plugin, Replay
from geodesic.continual.settings import ContinualSettings
from geodesic.hybrid.run import HybridContext
from geodesic.sparsify.baselines import LevelResult
from geodesic.sparsify.objective import level_name


class KeepMask(Plugin):
    """Holds the pruned coordinates at zero: their gradients are zeroed before the optimizer
    step (so no momentum builds up) and the weights are masked after it."""

    def __init__(self, ctx: HybridContext, keep: Tensor):
        self.masks = {name: part.to(ctx.base.dtype)
                      for name, part in ctx.space.unflatten(keep).items()}

    def after_backward(self, ctx) -> None:
        for name, p in ctx.model.named_parameters():
            if p.grad is not None and name in self.masks:
                p.grad.mul_(self.masks[name])

    def after_step(self, ctx) -> None:
        for name, p in ctx.model.named_parameters():
            if name in self.masks:
                p.data.mul_(self.masks[name])


def template_settings(ctx: HybridContext, lr: float, budget: int) -> ContinualSettings:
    """The continual template's settings for one training phase of ``budget`` evaluations."""
    s = ctx.settings
    return ContinualSettings(seed=s.seed, batch_size=s.batch_size, budget=budget, lr=lr,
                             replay_lr=lr, replay_batch=s.replay_batch, momentum=s.momentum,
                             stop_every=s.stop_every, patience=s.patience,
                             checkpoint_every=s.checkpoint_every)


def replay_training(ctx: HybridContext, lr: float, budget: int, keep: Tensor | None,
                    directory=None, callbacks=()) -> int:
    """Train the model in place on the new task with replay for ``budget`` evaluations (the
    coordinates outside ``keep`` held at zero); returns the evaluations spent."""
    if budget <= 0:
        return 0
    p = ctx.problem
    plugins = [Replay(ctx.settings.replay_batch, ctx.settings.seed)]
    if keep is not None:
        plugins.append(KeepMask(ctx, keep))
    template = Template(plugins, template_settings(ctx, lr, budget), "replay")
    evals, _ = template.learn(ctx.model, p.new, p.tasks, p.masks, ctx.memory, ctx.settings.seed,
                              callbacks, directory)
    return evals


def _at_levels(ctx: HybridContext, train_level, directory) -> dict[str, LevelResult]:
    """``train_level(p, budget, folder) -> evaluations`` from the base network at each level."""
    results = {}
    for p in ctx.settings.levels:
        name = level_name(p)
        if name not in ctx.budgets:
            continue  # the geodesic did not reach this level: no budget to match
        ctx.space.set(ctx.model, ctx.base)
        folder = Path(directory) / name if directory is not None else None
        t0 = time.perf_counter()
        evals = train_level(p, int(ctx.budgets[name]), folder)
        results[name] = LevelResult(ctx.space.get(ctx.model), float(evals),
                                    time.perf_counter() - t0)
    ctx.space.set(ctx.model, ctx.base)
    return results


def _prune(ctx: HybridContext, p: float) -> Tensor:
    """Apply the global magnitude projection at ``p`` to the model; returns its keep-mask."""
    w = ctx.space.get(ctx.model)
    keep = ctx.projection.mask(w, p)
    ctx.space.set(ctx.model, w * keep)
    return keep


def _sub(folder, name: str):
    return None if folder is None else folder / name


def prune_finetune(ctx: HybridContext, directory=None, callbacks=()) -> dict[str, LevelResult]:
    lr = ctx.settings.prune_finetune_lr

    def level(p: float, budget: int, folder) -> int:
        return replay_training(ctx, lr, budget, _prune(ctx, p), folder, callbacks)

    return _at_levels(ctx, level, directory)


def finetune_prune_finetune(ctx: HybridContext, directory=None,
                            callbacks=()) -> dict[str, LevelResult]:
    lr = ctx.settings.finetune_prune_finetune_lr

    def level(p: float, budget: int, folder) -> int:
        spent = replay_training(ctx, lr, budget // 2, None, _sub(folder, "finetune"), callbacks)
        return spent + replay_training(ctx, lr, budget - spent, _prune(ctx, p),
                                       _sub(folder, "prune_finetune"), callbacks)

    return _at_levels(ctx, level, directory)
