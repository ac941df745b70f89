"""Pruning baselines for the sparsify application, along the same schedule of sparsity levels.

    magnitude           one-shot global magnitude projection of the dense weights at each level
    magnitude_finetune  at each level: magnitude projection of the current weights, then masked
                        SGD on the labelled training set
    distill_finetune    the same, minimising D(w) = 1/2 E_x ||f(x; w) - f(x; w_dense)||^2 (logits)
                        on the unlabelled inputs the geodesic's metric sees (no labels)
    imp                 iterative magnitude pruning with rewinding (Frankle et al.): rounds that
                        prune ``round_fraction`` of the remaining weights (the last round before a
                        level prunes exactly to it), rewind the survivors to an early-training
                        checkpoint, and retrain them with masked SGD on labels

Equal compute. The unit is one forward+backward-equivalent pass over ``unit_batch`` inputs (the
geodesic's metric batch): the traversal's ``evals`` count each linearisation, metric-vector
product, pullback and gradient evaluation as one unit. A training step on b examples costs
b / unit_batch units. Within each level a baseline gets the units the geodesic spent in that level
(``budgets``, a whole number of steps, rounded down), so its cumulative compute at every level
equals the geodesic's; IMP shares a level's units equally among the rounds inside it. Forward
passes without a backward pass (the distillation teacher's outputs, evaluation) are not counted,
as for the geodesic. Masks are the bool tensors of :mod:`geodesic.sparsify.masks`; pruned weights and their
momentum stay exactly zero.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodesic.common.data import Dataset
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train
from geodesic.core.io import load_tensors
from geodesic.core.path import StateCheckpoints, load_states, save_milestone
from geodesic.core.space import ParameterSpace
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import level_name

Loss = Callable[[nn.Module, Tensor], Tensor]  # (network, example indices) -> scalar loss


@dataclass
class LevelResult:
    """A method's network at one sparsity level and the compute spent up to it (cumulative)."""

    weights: Tensor
    grad_evals: float
    seconds: float


@dataclass
class MaskedSGD:
    """SGD with momentum and a cosine learning rate from ``lr`` to 0 over each call."""

    lr: float
    batch_size: int
    momentum: float = 0.9
    seed: int = 0

    def steps_for(self, units: float, unit_batch: int) -> int:
        return int(math.floor(units * unit_batch / self.batch_size + 1e-9))

    def run(self, model: nn.Module, space: ParameterSpace, w: Tensor, keep: Tensor, loss: Loss,
            n: int, steps: int, generator: torch.Generator, resume: dict | None = None,
            on_step: Callable[[int, Callable[[], dict]], None] | None = None) -> Tensor:
        """``steps`` masked steps from w on minibatches of range(n); returns the new w.

        ``on_step(j, state)`` is called after step j with a function returning the run's state
        (the network's state_dict, optimizer, schedule, minibatch order and position); a call with
        ``resume`` = such a state continues after its step as if never stopped (the caller
        restores ``generator``)."""
        if steps <= 0:
            return w * keep
        net = copy.deepcopy(model).train()
        space.set(net, w * keep)
        params = [p for p in net.parameters() if p.requires_grad]
        masks = [m.to(p.dtype) for p, m in zip(params, space.unflatten(keep).values())]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if resume is None:
            order, cursor, first = torch.randperm(n, generator=generator), 0, 0
        else:
            load_states(resume, network=net, optimizer=opt, scheduler=sched)
            order, cursor, first = resume["order"], resume["cursor"], resume["step"]

        def state(step: int) -> dict:
            return {"step": step, "network": net.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "order": order, "cursor": cursor}

        for j in range(first, steps):
            if cursor + self.batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor:cursor + self.batch_size]
            cursor += self.batch_size
            opt.zero_grad(set_to_none=True)
            loss(net, idx).backward()
            with torch.no_grad():
                for p, m in zip(params, masks):
                    p.grad.mul_(m)
            opt.step()
            sched.step()
            with torch.no_grad():
                for p, m in zip(params, masks):
                    p.mul_(m)
            if on_step is not None:
                on_step(j + 1, lambda: state(j + 1))
        return space.get(net)


@dataclass
class Round:
    """Prune to ``sparsity`` (the mask only shrinks), then ``steps`` masked SGD steps; a round
    that ends a level records that level's result."""

    sparsity: float
    steps: int
    level: str | None = None


def train_rounds(model: nn.Module, space: ParameterSpace, projection: MagnitudeProjection,
                 w: Tensor, rounds: list[Round], sgd: MaskedSGD, loss: Loss, n: int,
                 unit_batch: int, rewind: Tensor | None = None,
                 checkpoints: StateCheckpoints | None = None) -> dict[str, LevelResult]:
    """The rounds in order: each ranks the current weights (starting from ``w``) for its mask
    and trains from them, or from ``rewind`` when given. With ``checkpoints`` (a directory),
    the state is saved every ``checkpoints.every`` SGD steps and after every round that took
    a step, each level's weights as a milestone; a call that finds a checkpoint resumes from
    it and returns what an uninterrupted call returns."""
    checkpoints = checkpoints or StateCheckpoints(None, 1)
    generator = torch.Generator().manual_seed(sgd.seed)
    keep, units, seconds, done, first, run = projection.full_mask(), 0.0, 0.0, 0, 0, None
    out: dict[str, LevelResult] = {}
    state = checkpoints.latest()
    if state is not None:
        first, run, w, keep = state["round"], state["run"], state["w"], state["keep"]
        units, seconds, done = state["units"], state["seconds"], state["done"]
        generator.set_state(state["generator"])
        out = {name: LevelResult(_milestone(checkpoints, name), evals, secs)
               for name, (evals, secs) in state["levels"].items()}
    for i in range(first, len(rounds)):
        r = rounds[i]
        t0 = time.perf_counter() - (run["seconds"] if run else 0.0)
        if run is None:
            keep = projection.mask(w, r.sparsity, keep)

        def snapshot(next_round: int, run_state: dict | None, weights: Tensor) -> dict:
            return {"round": next_round, "run": run_state, "w": weights, "keep": keep,
                    "units": units, "seconds": seconds, "done": done,
                    "generator": generator.get_state(),
                    "levels": {k: [v.grad_evals, v.seconds] for k, v in out.items()}}

        def on_step(j: int, run_state: Callable[[], dict]) -> None:
            if j < r.steps and checkpoints.due(done + j):
                checkpoints.save(done + j, snapshot(
                    i, {**run_state(), "seconds": time.perf_counter() - t0}, w))

        w = sgd.run(model, space, w if rewind is None else rewind, keep, loss, n, r.steps,
                    generator, run, on_step)
        run = None
        units += r.steps * sgd.batch_size / unit_batch
        seconds += time.perf_counter() - t0
        done += r.steps
        if r.level is not None:
            out[r.level] = LevelResult(w, units, seconds)
            if checkpoints.directory is not None:
                save_milestone(checkpoints.directory, r.level, w)
        if r.steps > 0:
            checkpoints.save(done, snapshot(i + 1, None, w))
    return out


def _milestone(checkpoints: StateCheckpoints, name: str) -> Tensor:
    return load_tensors(checkpoints.directory / "milestones" / f"{name}.safetensors",
                        checkpoints.device)[0]["w"]


def label_loss(x: Tensor, y: Tensor) -> Loss:
    """Cross-entropy on the labelled examples (x, y)."""
    return lambda net, idx: F.cross_entropy(net(x[idx]), y[idx])


def distill_loss(x: Tensor, teacher: nn.Module) -> Loss:
    """D = 1/2 mean_x ||f(x; w) - f(x; w_dense)||^2 on the inputs x (no labels)."""
    with torch.no_grad():
        was = teacher.training
        z0 = teacher.eval()(x)
        teacher.train(was)
    return lambda net, idx: 0.5 * (net(x[idx]) - z0[idx]).pow(2).sum(-1).mean()


def magnitude(w: Tensor, projection: MagnitudeProjection, levels: list[float],
              factor: Tensor | None = None) -> dict[str, LevelResult]:
    """One-shot pruning of the dense weights at each level by |w_i| (times ``factor``, a
    target rule's c); no compute."""
    return {level_name(p): LevelResult(projection.project(w, p, factor=factor), 0.0, 0.0)
            for p in levels}


def prune_and_train(model: nn.Module, space: ParameterSpace, projection: MagnitudeProjection,
                    w: Tensor, levels: list[float], budgets: dict[str, float], unit_batch: int,
                    sgd: MaskedSGD, loss: Loss, n: int,
                    checkpoints: StateCheckpoints | None = None) -> dict[str, LevelResult]:
    """At each level: prune the current weights to it by magnitude, then train with the mask
    for the level's budget (magnitude_finetune with labels, distill_finetune without)."""
    rounds = [Round(p, sgd.steps_for(budgets[level_name(p)], unit_batch), level_name(p))
              for p in levels]
    return train_rounds(model, space, projection, w, rounds, sgd, loss, n, unit_batch,
                        checkpoints=checkpoints)


def imp_schedule(levels: list[float], fraction: float) -> list[tuple[float, str | None]]:
    """IMP's rounds: (sparsity after the round, level name when the round ends a level)."""
    rounds, s = [], 0.0
    for p in levels:
        while True:
            nxt = 1.0 - (1.0 - s) * (1.0 - fraction)
            if nxt >= p - 1e-9:
                rounds.append((p, level_name(p)))
                s = p
                break
            rounds.append((nxt, None))
            s = nxt
    return rounds


def iterative_magnitude_pruning(model: nn.Module, space: ParameterSpace,
                                projection: MagnitudeProjection, w: Tensor, w_rewind: Tensor,
                                levels: list[float], budgets: dict[str, float], unit_batch: int,
                                sgd: MaskedSGD, loss: Loss, n: int, fraction: float = 0.2,
                                checkpoints: StateCheckpoints | None = None
                                ) -> dict[str, LevelResult]:
    """IMP with rewinding to ``w_rewind``; ``w`` (the trained dense weights) ranks round one.
    The rounds up to a level share its budget equally."""
    rounds, pending = [], []
    for sparsity, name in imp_schedule(levels, fraction):
        pending.append(sparsity)
        if name is None:
            continue
        steps = sgd.steps_for(budgets[name] / len(pending), unit_batch)
        rounds += [Round(s, steps, name if k == len(pending) - 1 else None)
                   for k, s in enumerate(pending)]
        pending = []
    return train_rounds(model, space, projection, w, rounds, sgd, loss, n, unit_batch,
                        rewind=w_rewind, checkpoints=checkpoints)


class _Rewound(Exception):
    pass


def early_weights(model: nn.Module, data: Dataset, cfg: TrainSettings, seed: int, epochs: int,
                  device="cpu") -> Tensor:
    """The weights after ``epochs`` epochs of the base network's own training run, replayed:
    ``model`` must hold the initialisation that run started from (``train`` is deterministic on
    the CPU for a seed), and is trained in place. 0 epochs: the initialisation itself."""
    space = ParameterSpace(model)
    if epochs > 0:
        def stop(record: dict, net: nn.Module) -> None:
            if record["epoch"] >= epochs:
                raise _Rewound

        try:
            train(model, data, cfg, seed, device=device, on_epoch=stop)
        except _Rewound:
            pass
    return space.get(model)
