"""THE traversal loop. Each step solves

    theta* = argmin  theta^T g(w) theta - beta <theta, v(w)>   s.t.  ||theta|| <= eta

with the given solver and moves w <- w + theta*, until the objective says stop or the step
budget runs out. The loop knows nothing of sparsity, tasks or tracking: the objective supplies
v(w), the coordinate subspace a step may move in (``subspace``: the metric and v are restricted
to it, so every solver's step stays in it exactly), constraints and milestones; callbacks see
every record, milestone and checkpoint.

A record holds: ``step``; ``step_norm`` = ||theta||; ``functional_step`` = sqrt(theta^T g theta)
(the solver's value when it has one: ``Penalty`` measures it on the first inputs of the batch);
``eta`` (halved after a non-finite step); ``evals``, the cumulative forward+backward-equivalent
evaluations (metric products, pullbacks and objective gradients; measuring ``functional_step``
for solvers that do not produce it is not counted); ``seconds``, cumulative wall-clock; and the
objective's progress numbers. Callbacks may add entries (e.g. held-out accuracy).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path as FsPath
from typing import Sequence

from torch import Tensor, nn

from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import Objective
from geodesic.core.path import (Checkpoint, Path, load_latest_checkpoint, save_checkpoint,
                                save_milestone)
from geodesic.core.solvers import build_solver

log = logging.getLogger(__name__)


class NumericalFault(RuntimeError):
    """The traversal produced non-finite numbers that halving the step did not cure."""


class Callback:
    """Hooks the loop calls; override the ones you need."""

    def on_start(self, path: Path, w: Tensor) -> None: ...

    def on_step(self, record: dict, w: Tensor) -> None: ...

    def on_milestone(self, name: str, record: dict, w: Tensor) -> None: ...

    def on_checkpoint(self, step: int, file: FsPath) -> None: ...

    def on_end(self, path: Path) -> None: ...


class ProgressLog(Callback):
    """A log line every ``seconds``: step, rate, ETA to the step budget, latest progress."""

    def __init__(self, name: str, max_steps: int, seconds: float = 10.0):
        self.name, self.max_steps, self.seconds = name, max_steps, seconds
        self._t0 = self._last = time.perf_counter()
        self._first: int | None = None

    def on_step(self, record: dict, w: Tensor) -> None:
        now = time.perf_counter()
        if self._first is None:
            self._first = record["step"] - 1
        if now - self._last < self.seconds:
            return
        self._last = now
        rate = (record["step"] - self._first) / max(now - self._t0, 1e-9)
        eta_s = (self.max_steps - record["step"]) / max(rate, 1e-9)
        extra = " ".join(f"{k}={v:.4g}" for k, v in record.items()
                         if k not in ("step", "seconds", "evals") and isinstance(v, float))
        log.info("%s step %d/%d  %.2f steps/s  at most %.0fs left  %s", self.name,
                 record["step"], self.max_steps, rate, eta_s, extra)


class Timed(Callback):
    """Runs ``inner`` and adds up the seconds it takes (e.g. scoring, which is not a method's
    compute, or logging, whose share of a walk is measured)."""

    def __init__(self, inner: Callback):
        self.inner, self.seconds = inner, 0.0

    def _timed(self, name: str, *args) -> None:
        t0 = time.perf_counter()
        getattr(self.inner, name)(*args)
        self.seconds += time.perf_counter() - t0

    def on_start(self, path, w):
        self._timed("on_start", path, w)

    def on_step(self, record, w):
        self._timed("on_step", record, w)

    def on_milestone(self, name, record, w):
        self._timed("on_milestone", name, record, w)

    def on_checkpoint(self, step, file):
        self._timed("on_checkpoint", step, file)

    def on_end(self, path):
        self._timed("on_end", path)


def _finite(t: Tensor) -> bool:
    """No NaN or Inf in t: a sum is non-finite when any term is (and when finite terms overflow
    float range, also a fault), without an n-sized temporary."""
    return math.isfinite(float(t.sum()))


def traverse(model: nn.Module, objective: Objective, metric: FunctionalMetric, solver, *,
             eta: float, beta: float = 1.0, max_steps: int, checkpoint_every: int = 50,
             directory=None, callbacks: Sequence[Callback] = (), max_halvings: int = 6) -> Path:
    """Walk from the model's current weights; returns the :class:`Path` and leaves the model at
    its end point (at the last point reached when the walk raises). With ``directory``,
    checkpoints go there every ``checkpoint_every`` steps and a call that finds one resumes
    from the newest intact checkpoint.

    While the walk runs, the model's parameters are views of the current point w (so the
    weights are held once, not twice) and follow it step by step; a callback may read them or
    copy w into them, but must not write anything else there. On return they have memory of
    their own again."""
    directory = FsPath(directory) if directory is not None else None
    w = metric.space.get(model)
    path = Path(directory=directory)
    ckpt = load_latest_checkpoint(directory, w.device) if directory is not None else None
    if ckpt is not None:
        w, eta = ckpt.weights.to(w.dtype), ckpt.eta
        objective.load_state_dict(ckpt.objective)
        metric.load_state_dict(ckpt.metric)
        path.records, path.milestones = ckpt.records, ckpt.milestones
        log.info("resuming from step %d", ckpt.step)
    step = path.records[-1]["step"] if path.records else 0
    evals0 = path.records[-1]["evals"] if path.records else 0
    seconds0 = path.records[-1]["seconds"] if path.records else 0.0
    counted0 = metric.evals + objective.grad_evals
    t0 = time.perf_counter()

    def checkpoint() -> None:
        if directory is None:
            return
        file = save_checkpoint(directory, Checkpoint(step, eta, w, objective.state_dict(),
                                                     metric.state_dict(), path.records,
                                                     path.milestones))
        for cb in callbacks:
            cb.on_checkpoint(step, file)

    def reach(names: list[str]) -> None:
        for name in names:
            record = {"step": step, **objective.progress(w)}
            path.milestones[name] = record
            if directory is not None:
                save_milestone(directory, name, w)
            for cb in callbacks:
                cb.on_milestone(name, record, w)

    def solve() -> tuple[Tensor, Tensor, Tensor, int]:
        """theta at w, w + theta and theta^T g theta; a function so that this step's
        linearisation and vectors are freed before the next step builds its own."""
        nonlocal eta
        mask = objective.subspace()
        local = metric.at(w).restrict(mask)
        v = objective.direction(w, local)
        v = v if mask is None else v * mask
        if not _finite(v):
            raise NumericalFault(f"the objective's direction is not finite at step {step + 1}; "
                                 f"checkpoints up to step {step} are kept")
        halvings = 0
        while True:
            result = solver(local, v, eta, beta)
            theta = objective.constrain(result.theta)
            moved = w + theta
            if _finite(moved):  # w is finite, so theta is when w + theta is
                break
            halvings += 1
            if halvings > max_halvings:
                raise NumericalFault(f"non-finite step at step {step + 1} after {max_halvings} "
                                     f"halvings of eta (now {eta:g}); checkpoints are kept")
            eta /= 2
            log.warning("non-finite step at step %d: eta halved to %g", step + 1, eta)
        quad = result.quad if theta is result.theta else None
        del v, result  # not needed past the solve: free before measuring theta^T g theta
        if quad is None:
            quad = local.recorded_quadratic(theta)
        return theta, moved, quad, halvings

    try:
        metric.space.bind(model, w)
        for cb in callbacks:
            cb.on_start(path, w)
        while step < max_steps and not objective.done(w):
            theta, moved, quad, halvings = solve()
            w, reached = objective.after_step(moved)
            metric.space.bind(model, w)
            del moved
            step += 1
            record = {"step": step, "step_norm": float(theta.norm()),
                      "functional_step": math.sqrt(max(float(quad), 0.0)), "eta": eta,
                      "eta_halvings": halvings,
                      "evals": evals0 + metric.evals + objective.grad_evals - counted0,
                      "seconds": seconds0 + time.perf_counter() - t0, **objective.progress(w)}
            del theta
            path.records.append(record)
            for cb in callbacks:
                cb.on_step(record, w)
            reach(reached)
            if step % checkpoint_every == 0:
                checkpoint()

        if step % checkpoint_every:
            checkpoint()
        w, reached = objective.finish(w)
        reach(reached)
    finally:
        metric.space.bind(model, w, copy=True)  # memory of their own again, at the last point
    path.weights = w
    if directory is not None:
        path.save()
    for cb in callbacks:
        cb.on_end(path)
    return path


def walk(model: nn.Module, objective: Objective, metric: FunctionalMetric, settings, *,
         max_steps: int | None = None, solver=None, directory=None,
         callbacks: Sequence[Callback] = (), name: str | None = None) -> Path:
    """:func:`traverse` with the solver, eta, beta, step budget and checkpoint interval of
    ``settings`` (a :class:`~geodesic.core.settings.GeodesicSettings`); ``max_steps`` and
    ``solver`` replace the settings' own, ``name`` adds a periodic progress line."""
    steps = settings.max_steps if max_steps is None else max_steps
    progress = [ProgressLog(name, steps)] if name else []
    return traverse(model, objective, metric, solver or build_solver(settings),
                    eta=settings.eta, beta=settings.beta, max_steps=steps,
                    checkpoint_every=settings.checkpoint_every, directory=directory,
                    callbacks=[*callbacks, *progress])
