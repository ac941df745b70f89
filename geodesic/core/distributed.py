"""Data-parallel traversal: one metric batch split over torch.distributed ranks.

With the global metric batch B split into shards B_1 ... B_N, one per rank r,

    g(w) theta = (1/|B|) sum_r J_{B_r}^T H J_{B_r} theta,       |B| = sum_r |B_r|,

so each rank computes J theta on its own shard (no communication: rows of J are per input), and
every reduction over the batch is an all-reduce (sum) followed by the global 1/|B|:

    pullback(u)       (1/|B|) sum_r J_{B_r}^T u_r           (hence mvp and distance_gradient)
    quadratic(theta)  (1/|B|) sum_r sum_{x in B_r} (J_x theta)^T H (J_x theta)

(the quadratic over the global batch's first k inputs takes each rank's rows among them).

Every rank receives the same reduced vector, so the solvers, objectives and the loop
(:func:`geodesic.core.traverse.traverse`) run unchanged and identically on every rank: the path is the
one-process path on the global batch, up to the order of floating-point summation.

Sampling. By default every rank holds the same pool of inputs and the same seed; ``at`` draws the
global batch exactly as :class:`~geodesic.core.metric.FunctionalMetric` would and each rank keeps its
contiguous slice (``torch.tensor_split``), so resumed and re-launched traversals draw the same
batches on any number of ranks. With ``sharded=True`` the inputs given are this rank's own part
of the pool (for pools too large to replicate); ``batch_size`` is then per rank and each rank
samples its own part.

Objective gradients computed outside the metric (e.g. a task loss on each rank's share of the
task batch) are combined with :func:`average`, the count-weighted mean over ranks.

Launch, one machine with 2 processes (gloo on CPU, NCCL on GPU, one GPU per process)::

    torchrun --standalone --nproc_per_node=2 my_traversal.py

Several machines: run the same command on every node, with the rendezvous on one of them::

    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
             --rdzv-endpoint=node0.example.org:29400 --rdzv-id=geodesic-42 my_traversal.py

where ``my_traversal.py`` does::

    from geodesic.core.distributed import DistributedMetric, process_group
    with process_group() as (rank, world):        # reads torchrun's environment
        metric = DistributedMetric(model, pool)   # same model weights and pool on every rank
        path = traverse(model, objective, metric, solver, eta=..., max_steps=...,
                        directory=f"runs/x/rank{rank}",   # or only on rank 0 (no resume elsewhere)
                        callbacks=callbacks if rank == 0 else [])

Every rank ends with the same weights; let rank 0 log and save.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from geodesic.core.metric import FunctionalMetric, LocalMetric


@contextmanager
def process_group(backend: str | None = None) -> Iterator[tuple[int, int]]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...) for the block, yielding (rank, world size); NCCL when CUDA is present, gloo
    otherwise. On CUDA each process takes the GPU ``LOCAL_RANK``. On leaving, every rank waits for
    the others and the group is destroyed: a rank that exits while another still uses the group
    aborts it ("terminate called without an active exception"). Inside a group joined elsewhere,
    it yields that group's rank and size and leaves the group alone."""
    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    try:
        yield dist.get_rank(), dist.get_world_size()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def all_sum(tensor: Tensor, group=None) -> Tensor:
    """sum over ranks of ``tensor`` (in place on the given tensor, which is returned)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def average(tensor: Tensor, count: int, group=None) -> Tensor:
    """sum_r count_r tensor_r / sum_r count_r: the mean over the union of the ranks' batches of a
    per-rank mean (e.g. a loss gradient averaged over count_r local examples)."""
    total = torch.tensor([float(count)], dtype=tensor.dtype, device=tensor.device)
    weighted = all_sum(tensor * count, group)
    return weighted / all_sum(total, group)


class DistributedMetric(FunctionalMetric):
    """:class:`~geodesic.core.metric.FunctionalMetric` whose products average over all ranks' shards.

    Same arguments, plus ``group`` (default: the world) and ``sharded`` (see the module
    docstring). Requires an initialised process group.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, output: str = "logits",
                 batch_size: int | None = None, reference: Tensor | None = None, seed: int = 0,
                 *, group=None, sharded: bool = False, **options):
        super().__init__(model, inputs, output, batch_size, reference, seed, **options)
        self.group, self.sharded = group, sharded
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)

    def at(self, w: Tensor, x: Tensor | None = None) -> "DistributedLocalMetric":
        """The metric at w on the global batch x (default: a fresh sample); this rank computes on
        its shard. With ``sharded=True``, x (or the sample) is already this rank's shard."""
        rows = None
        if x is None:
            idx = self.draw()
            rows = torch.arange(len(self.inputs), device=self.inputs.device) if idx is None else idx
            x = self.inputs[rows]
        if self.sharded:  # the global batch is the ranks' shards in rank order
            sizes = torch.zeros(self.world, dtype=torch.long, device=x.device)
            sizes[self.rank] = len(x)
            sizes = all_sum(sizes, self.group).tolist()
            return DistributedLocalMetric(self, w.detach(), x, sum(sizes), rows,
                                          sum(sizes[:self.rank]))
        if len(x) < self.world:
            raise ValueError(f"a metric batch of {len(x)} inputs cannot be split over "
                             f"{self.world} ranks")
        part = torch.tensor_split(torch.arange(len(x), device=x.device), self.world)[self.rank]
        return DistributedLocalMetric(self, w.detach(), x[part], len(x),
                                      None if rows is None else rows[part],
                                      self.rank * (len(x) // self.world)
                                      + min(self.rank, len(x) % self.world))  # part's first row


class DistributedLocalMetric(LocalMetric):
    """:class:`~geodesic.core.metric.LocalMetric` on this rank's shard x of a global batch of
    ``total`` inputs whose first row is the global batch's row ``offset``: ``reduce``
    all-reduces, ``batch`` is the global size. ``jvp`` and ``z`` are this rank's rows only."""

    def __init__(self, metric: DistributedMetric, w: Tensor, x: Tensor, total: int,
                 rows: Tensor | None = None, offset: int = 0):
        self.total, self.offset = total, offset
        super().__init__(metric, w, x, rows)

    @property
    def batch(self) -> int:
        return self.total

    def reduce(self, total: Tensor) -> Tensor:
        return all_sum(total, self.metric.group)

    def shard_rows(self, rows: int) -> int:
        return max(0, min(rows - self.offset, len(self.x)))
