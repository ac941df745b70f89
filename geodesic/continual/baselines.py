"""Continual-learning baselines: one training template, methods as plugins, chosen by name.

``Template(plugins, settings, method).learn(model, t, tasks, memory, ...)`` learns task t by SGD:

    repeat:  x, y = the task's next minibatch           (TaskBatches: the geodesic's order)
             loss = CE(mask_t(f(x)), y) + sum_p p.penalty(ctx, x, y, f(x))
             backward; p.after_backward; optimizer step; p.after_step
             every ``stop.every`` evaluations: validation loss of task t -> EarlyStop
    until the per-task budget of evaluations is spent or early stopping; then p.after_task.

Evaluations are counted as the geodesic counts them: one per forward+backward pass over a
minibatch (the task batch; replay's memory batch; LwF's teacher forward; EWC's Fisher batches,
which come after the task and on top of its budget). A step is not started when it would take the
task past the budget (judged by the previous step's cost).

``BASELINES`` maps the names of ``params.yaml`` to the plugin lists (see
:mod:`geodesic.continual.plugins` for the equations).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from geodesic.continual.plugins import EWC, SI, DarkReplay, LwF, Plugin, Replay
from geodesic.continual.protocol import EarlyStop, Memory, TaskBatches, task_loss, task_scores
from geodesic.continual.settings import ContinualSettings
from geodesic.continual.tasks import Task
from geodesic.core.path import StateCheckpoints, load_states
from geodesic.core.registry import Registry
from geodesic.core.space import ParameterSpace


BASELINES: Registry[Callable[[ContinualSettings], list[Plugin]]] = Registry("continual baseline")
BASELINES.register("finetune")(lambda s: [])
BASELINES.register("ewc")(lambda s: [EWC(s.ewc_lambda, s.ewc_mode, s.ewc_gamma,
                                         s.fisher_samples)])
BASELINES.register("si")(lambda s: [SI(s.si_c, s.si_xi)])
BASELINES.register("lwf")(lambda s: [LwF(s.lwf_alpha, s.lwf_temperature)])
BASELINES.register("replay")(lambda s: [Replay(s.replay_batch, s.seed)])
BASELINES.register("derpp")(lambda s: [DarkReplay(s.replay_batch, s.derpp_alpha, s.derpp_beta,
                                                  s.seed)])


@dataclass
class Context:
    """What the plugins see while task ``t`` is learned."""

    model: nn.Module
    t: int
    task: Task
    mask: Tensor
    old_groups: list[Tensor]  # per earlier task: its outputs among the classes seen so far
    memory: Memory
    batch_size: int
    device: torch.device
    evals: int = 0


def old_output_groups(tasks: Sequence[Task], masks: Sequence[Tensor], t: int) -> list[Tensor]:
    """The distinct masks mask_j & seen (j < t), seen = the classes of tasks 0..t-1."""
    if t == 0:
        return []
    seen = torch.isin(torch.arange(len(masks[0])),
                      torch.tensor([c for task in tasks[:t] for c in task.classes]))
    groups: list[Tensor] = []
    for j in range(t):
        group = masks[j] & seen
        if not any(torch.equal(group, g) for g in groups):
            groups.append(group)
    return groups


class Template:
    """SGD on one task at a time, with plugins; the same for every baseline. The first task is
    learned at ``settings.lr`` by every method alike (nothing is kept yet), the later ones at
    the method's own ``<method>_lr``; minibatch, budget, stop rule and momentum are the
    settings' (a :class:`~geodesic.continual.settings.ContinualSettings`)."""

    def __init__(self, plugins: list[Plugin], settings: ContinualSettings,
                 method: str = "finetune"):
        self.plugins, self.settings = plugins, settings
        self.later_lr = getattr(settings, f"{method}_lr", settings.lr)

    def learn(self, model: nn.Module, t: int, tasks: Sequence[Task], masks: Sequence[Tensor],
              memory: Memory, seed: int, callbacks=(), directory=None) -> tuple[int, int]:
        """Learn task ``t`` in place; returns (evaluations spent, steps taken).

        With ``directory``, the task's state (network with its buffers, optimizer, minibatch
        order, stop rule, counters and every plugin's state) is saved there every
        ``checkpoint_every`` steps and when the task ends (that last one is passed to the
        callbacks' ``on_checkpoint``); a call that finds a checkpoint continues from it as if
        never stopped, and one that finds the task finished restores its end state at once."""
        device = next(model.parameters()).device
        s = self.settings
        ctx = Context(model, t, tasks[t], masks[t], old_output_groups(tasks, masks, t), memory,
                      s.batch_size, device)
        batches = TaskBatches(tasks[t].train, s.batch_size, seed)
        stop = EarlyStop(s.stop_every, s.patience)
        opt = torch.optim.SGD(model.parameters(), lr=self.later_lr if t > 0 else s.lr,
                              momentum=s.momentum)
        space = ParameterSpace(model)
        checkpoints = StateCheckpoints(directory, s.checkpoint_every, device=device)
        for p in self.plugins:
            p.before_task(ctx)
        step, last_cost, elapsed = 0, 0, 0.0
        state = checkpoints.latest()
        if state is not None:
            load_states(state, model=model, optimizer=opt, batches=batches, stop=stop)
            for p, plugin_state in zip(self.plugins, state["plugins"]):
                p.load_state_dict(ctx, plugin_state)
            step, last_cost, ctx.evals = state["step"], state["last_cost"], state["evals"]
            if state["finished"]:
                return ctx.evals, step
            elapsed = state["seconds"]
        t0 = time.perf_counter() - elapsed

        def snapshot(finished: bool) -> dict:
            return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "batches": batches.state_dict(),
                    "stop": stop.state_dict(), "plugins": [p.state_dict() for p in self.plugins],
                    "step": step, "last_cost": last_cost, "evals": ctx.evals,
                    "seconds": time.perf_counter() - t0, "finished": finished}

        while ctx.evals < s.budget and ctx.evals + last_cost <= s.budget:
            before = ctx.evals
            model.train()
            x, y = (v.to(device) for v in batches.next())
            z = model(x)
            loss = task_loss(z, y, ctx.mask)
            ctx.evals += 1
            total = loss + sum(p.penalty(ctx, x, y, z) for p in self.plugins)
            opt.zero_grad(set_to_none=True)
            total.backward()
            for p in self.plugins:
                p.after_backward(ctx)
            opt.step()
            for p in self.plugins:
                p.after_step(ctx)
            step, last_cost = step + 1, ctx.evals - before
            record = {"step": step, "loss": float(loss.detach()),
                      "total_loss": float(total.detach()), "evals": ctx.evals,
                      "seconds": time.perf_counter() - t0}
            stopped = False
            if len(tasks[t].val) and stop.due(ctx.evals):
                record["val_loss"] = task_scores(model, tasks[t].val, ctx.mask)[1]
                stopped = stop.update(ctx.evals, record["val_loss"])
            w = space.get(model) if callbacks else None
            for cb in callbacks:
                cb.on_step(record, w)
            if stopped:
                break
            if checkpoints.due(step):
                checkpoints.save(step, snapshot(False))
        for p in self.plugins:
            p.after_task(ctx)
        file = checkpoints.save(step, snapshot(True), final=True)
        if file is not None:
            for cb in callbacks:
                cb.on_checkpoint(step, file)
        return ctx.evals, step
