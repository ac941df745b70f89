"""The standard continual-learning methods as plugins of the baseline ``Template``
(:mod:`geodesic.continual.baselines`).

Each plugin may add a term to the loss (``penalty``) and observe the training through hooks; the
template never asks which method it runs. With w* a plugin's anchor (the weights at the end of
the previous task), every penalty is zero at its anchor:

    EWC     (lambda/2) sum_i A_i (w_i - m_i)^2 with F_k the diagonal empirical Fisher of task
            k at its end point w*_k, the mean over examples of (d log p(y|x; w*_k) / dw_i)^2:
            ``separate`` (Kirkpatrick et al. 2017): A = sum_k F_k, m = sum_k F_k w*_k / A, which
            is sum_k sum_i F_k,i (w_i - w*_k,i)^2 up to a constant (the same gradient) in one
            term; ``online`` (Schwarz et al. 2018): A <- gamma A + F_new, m = the latest w*
    SI      c sum_i Omega_i (w_i - w*_i)^2,  Omega_i += omega_i / (Delta_i^2 + xi),
            omega_i = sum over the task's steps of -g_i dw_i, Delta = w_end - w_start
            (Zenke et al. 2017)
    LwF     alpha T^2 sum_groups KL(softmax(z*/T) || softmax(z/T)) on the new task's inputs, z*
            the previous network's logits, one group per earlier task's outputs restricted to
            the classes seen so far (Li & Hoiem 2016)
    Replay  CE on a minibatch drawn from the memory, each example on its own task's outputs
    DER++   alpha ||f(x_m) - z_m||^2 / C + beta CE(f(x_m), y_m) on one memory minibatch, z_m the
            logits an example had when it entered the memory (the network at the end of its
            task), C the number of outputs (Buzzega et al. 2020; one memory batch for both
            terms, so a step costs what a replay step costs)
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from geodesic.continual.protocol import MemoryDraws, masked_logits, task_loss
from geodesic.core.space import eval_mode


class Plugin:
    """Hooks the template calls; ``penalty`` returns a loss term (0 for none); ``state_dict``
    is what a resumed task needs to continue exactly (``load_state_dict`` restores it, after
    ``before_task``)."""

    def before_task(self, ctx) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, ctx, state: dict) -> None: ...

    def penalty(self, ctx, x: Tensor, y: Tensor, z: Tensor) -> Tensor | float:
        return 0.0

    def after_backward(self, ctx) -> None: ...

    def after_step(self, ctx) -> None: ...

    def after_task(self, ctx) -> None: ...


def _params(model) -> dict[str, Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _quadratic(model, weights: dict[str, Tensor], anchor: dict[str, Tensor]) -> Tensor:
    """sum_i weights_i (w_i - anchor_i)^2 over the model's trainable parameters."""
    return sum(((p - anchor[n]) ** 2 * weights[n]).sum() for n, p in _params(model).items())


class EWC(Plugin):
    def __init__(self, strength: float, mode: str = "separate", gamma: float = 1.0,
                 samples: int = 256):
        self.strength, self.mode, self.gamma, self.samples = strength, mode, gamma, samples
        self.weights: dict[str, Tensor] | None = None  # A
        self.anchor: dict[str, Tensor] | None = None  # m

    def fisher(self, ctx) -> dict[str, Tensor]:
        model, split = ctx.model, ctx.task.train
        params = {n: p.detach() for n, p in _params(model).items()}
        buffers = dict(model.named_buffers())

        def log_likelihood(p, x, y):
            z = functional_call(model, {**p, **buffers}, (x.unsqueeze(0),))
            return -task_loss(z, y.unsqueeze(0), ctx.mask)

        per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        n = min(self.samples, len(split))
        was_training = model.training
        model.eval()
        for start in range(0, n, ctx.batch_size):
            x = split.x[start:min(start + ctx.batch_size, n)].to(ctx.device)
            y = split.y[start:min(start + ctx.batch_size, n)].to(ctx.device)
            for name, g in per_example(params, x, y).items():
                total[name] += (g ** 2).sum(0)
            ctx.evals += 1
        model.train(was_training)
        return {name: t / n for name, t in total.items()}

    def after_task(self, ctx) -> None:
        fisher = self.fisher(ctx)
        latest = {n: p.detach().clone() for n, p in _params(ctx.model).items()}
        if self.weights is None:
            self.weights, self.anchor = fisher, latest
        elif self.mode == "online":
            self.weights = {n: self.gamma * a + fisher[n] for n, a in self.weights.items()}
            self.anchor = latest
        else:
            total = {n: a + fisher[n] for n, a in self.weights.items()}
            self.anchor = {n: torch.where(total[n] > 0, (a * self.anchor[n] + fisher[n] *
                                                         latest[n]) / total[n], latest[n])
                           for n, a in self.weights.items()}
            self.weights = total

    def penalty(self, ctx, x, y, z):
        if self.weights is None:
            return 0.0
        return 0.5 * self.strength * _quadratic(ctx.model, self.weights, self.anchor)

    def state_dict(self) -> dict:
        return {"weights": self.weights, "anchor": self.anchor}

    def load_state_dict(self, ctx, state: dict) -> None:
        self.weights, self.anchor = state["weights"], state["anchor"]


class SI(Plugin):
    def __init__(self, strength: float, xi: float = 0.1):
        self.strength, self.xi = strength, xi
        self.importance: dict[str, Tensor] | None = None
        self.anchor: dict[str, Tensor] | None = None

    def before_task(self, ctx) -> None:
        self.start = {n: p.detach().clone() for n, p in _params(ctx.model).items()}
        self.omega = {n: torch.zeros_like(p) for n, p in self.start.items()}

    def after_backward(self, ctx) -> None:
        params = _params(ctx.model)
        self.before = {n: p.detach().clone() for n, p in params.items()}
        self.grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}

    def after_step(self, ctx) -> None:
        for n, p in _params(ctx.model).items():
            if n in self.grads:
                self.omega[n] -= self.grads[n] * (p.detach() - self.before[n])

    def after_task(self, ctx) -> None:
        params = _params(ctx.model)
        new = {n: self.omega[n] / ((p.detach() - self.start[n]) ** 2 + self.xi)
               for n, p in params.items()}
        self.importance = new if self.importance is None else {
            n: self.importance[n] + v for n, v in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in params.items()}

    def penalty(self, ctx, x, y, z):
        if self.importance is None:
            return 0.0
        return self.strength * _quadratic(ctx.model, self.importance, self.anchor)

    def state_dict(self) -> dict:  # between steps: before and grads are set anew each step
        return {"importance": self.importance, "anchor": self.anchor, "start": self.start,
                "omega": self.omega}

    def load_state_dict(self, ctx, state: dict) -> None:
        self.importance, self.anchor = state["importance"], state["anchor"]
        self.start, self.omega = state["start"], state["omega"]


class LwF(Plugin):
    def __init__(self, strength: float, temperature: float = 2.0):
        self.strength, self.temperature = strength, temperature
        self.teacher = None

    def after_task(self, ctx) -> None:
        self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)

    def penalty(self, ctx, x, y, z):
        if self.teacher is None or not ctx.old_groups:
            return 0.0
        with torch.no_grad():
            z_old = self.teacher(x)
        ctx.evals += 1
        t = self.temperature
        total = 0.0
        for group in ctx.old_groups:
            log_p = F.log_softmax(masked_logits(z, group) / t, -1)
            log_q = F.log_softmax(masked_logits(z_old, group) / t, -1)
            total = total + F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
        return self.strength * t * t * total

    def state_dict(self) -> dict:
        return {"teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, ctx, state: dict) -> None:
        self.teacher = None
        if state["teacher"] is not None:
            self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
            self.teacher.load_state_dict(state["teacher"])


class Replay(Plugin):
    def __init__(self, batch_size: int, seed: int = 0):
        self.draws = MemoryDraws(batch_size, seed)

    def memory_batch(self, ctx) -> tuple[Tensor, Tensor]:
        """A random minibatch of the memory (its indices) and the network's logits on it: one
        more evaluation."""
        memory = ctx.memory
        index = self.draws.next(len(memory))
        ctx.evals += 1
        return index, ctx.model(memory.x[index].to(ctx.device))

    def label_loss(self, ctx, index: Tensor, z_mem: Tensor) -> Tensor:
        memory = ctx.memory
        return F.cross_entropy(masked_logits(z_mem, memory.masks[index]),
                               memory.y[index].to(ctx.device))

    def penalty(self, ctx, x, y, z):
        if len(ctx.memory) == 0:
            return 0.0
        return self.label_loss(ctx, *self.memory_batch(ctx))

    def state_dict(self) -> dict:
        return self.draws.state_dict()

    def load_state_dict(self, ctx, state: dict) -> None:
        self.draws.load_state_dict(state)


class DarkReplay(Replay):
    """DER++: replay of the stored logits (dark knowledge) and labels of the memory."""

    def __init__(self, batch_size: int, alpha: float, beta: float, seed: int = 0):
        super().__init__(batch_size, seed)
        self.alpha, self.beta = alpha, beta
        self.logits: Tensor | None = None

    @torch.no_grad()
    def before_task(self, ctx) -> None:
        """Records the logits of the examples that entered the memory since the last task:
        the network now is the one at the end of their task."""
        memory, known = ctx.memory, 0 if self.logits is None else len(self.logits)
        if len(memory) > known:
            with eval_mode(ctx.model):
                new = ctx.model(memory.x[known:].to(ctx.device)).detach()
            self.logits = new if self.logits is None else torch.cat([self.logits, new])

    def penalty(self, ctx, x, y, z):
        if len(ctx.memory) == 0:
            return 0.0
        index, z_mem = self.memory_batch(ctx)
        dark = F.mse_loss(z_mem, self.logits[index.to(self.logits.device)])
        return self.alpha * dark + self.beta * self.label_loss(ctx, index, z_mem)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "logits": self.logits}

    def load_state_dict(self, ctx, state: dict) -> None:
        super().load_state_dict(ctx, state)
        self.logits = state["logits"]
