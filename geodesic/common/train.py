"""Base-network training: minibatch SGD (with momentum) or Adam on cross-entropy.

``train`` is deterministic on the CPU for a given seed: the initialisation, the minibatch order
and everything else draw from generators seeded here. With a ``directory`` it checkpoints the
model, optimizer, schedule and generator after every epoch (safetensors with a sha256
sidecar, the format of every resumable loop here) and a rerun continues from the
newest intact checkpoint, ending with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from geodesic.common.data import Dataset, batches
from geodesic.common.evaluate import accuracy
from geodesic.common.settings import TrainSettings
from geodesic.core.path import StateCheckpoints, load_states

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    val_acc: float
    seconds: float
    history: list[dict] = field(default_factory=list)  # one record per epoch


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd")


def train(model: nn.Module, data: Dataset, cfg: TrainSettings, seed: int = 0, *, device="cpu",
          directory=None, on_epoch: Callable[[dict, nn.Module], None] | None = None
          ) -> TrainResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs, minibatch order seeded by ``seed``;
    returns test/val scores and history.

    ``on_epoch(record, model)`` is called after each epoch with {epoch, train_loss, val_acc,
    val_loss, seconds}."""
    model.to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                         cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    start, elapsed = 0, 0.0
    checkpoints = StateCheckpoints(directory, every=1, keep=1)
    state = checkpoints.latest()
    if state is not None:
        load_states(state, model=model, optimizer=opt, scheduler=sched)
        gen.set_state(state["generator"])
        history, start = state["history"], len(state["history"])
        elapsed = history[-1]["seconds"] if history else 0.0
        log.info("resuming training at epoch %d", start + 1)
    t0 = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in batches(data.train, cfg.batch_size, gen):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {float(loss.detach())} in epoch {epoch + 1}: training diverged "
                    f"(lower train.lr?); the checkpoint of epoch {epoch} is kept")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(y), count + len(y)
        sched.step()
        val_acc, val_loss = accuracy(model, data.val)
        record = {"epoch": epoch + 1, "train_loss": total / count, "val_acc": val_acc,
                  "val_loss": val_loss, "seconds": elapsed + time.perf_counter() - t0}
        history.append(record)
        log.info("epoch %d/%d  train_loss %.4f  val_acc %.4f  %.1fs", epoch + 1, cfg.epochs,
                 record["train_loss"], val_acc, record["seconds"])
        checkpoints.save(epoch + 1, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(),
                                     "generator": gen.get_state(), "history": history},
                         final=epoch + 1 == cfg.epochs)
        if on_epoch is not None:
            on_epoch(record, model)
    test_acc, test_loss = accuracy(model, data.test)
    val_acc = history[-1]["val_acc"] if history else accuracy(model, data.val)[0]
    seconds = history[-1]["seconds"] if history else 0.0
    return TrainResult(test_acc, test_loss, val_acc, seconds, history)
