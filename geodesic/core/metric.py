"""The functional metric on weight space, as matrix-free products.

For a network f(x; w) with outputs z in R^m and an output-space operator H(z) (symmetric,
positive semi-definite), the metric at w over a batch B of inputs is

    g(w) = (1/|B|) sum_{x in B} J_x^T H(z_x) J_x,        J_x = df(x; w)/dw,

so that theta^T g theta is, to first order, the mean squared change of the outputs caused by
the weight perturbation theta. Output kinds (``OUTPUT_KINDS``):

    logits  H = I                          change of raw logits (default)
    probs   H = S S,  S = diag(p) - p p^T  change of softmax probabilities (dp = S dz)
    fisher  H = S                          Fisher information metric, the second-order
                                           expansion of KL(p(w) || p(w + theta))

g is never formed. ``LocalMetric.mvp`` computes g theta = (1/|B|) J^T H (J theta) from one
linearisation of the network per point w (``FunctionalMetric.at``), reused by every product at
that point:

- fast path (:mod:`geodesic.core.fastmetric`), for chains of Linear / Conv / BatchNorm / pooling /
  point-wise layers (the MLPs and VGGs): one forward pass at w saves the activations; J theta is
  the per-layer forward tangent recursion over them (no primal recomputation) and J^T u is
  reverse mode through the retained graph of that pass;
- generic path, for any other module: J theta by ``torch.func.jvp`` (which recomputes the
  forward pass) and J^T u through a ``torch.func.vjp`` closure.

Both give the same numbers to rounding (tests/core/test_fast_paths.py); ``fast=False`` forces the
generic path. ``amp=True`` runs the forward passes and tangents under CUDA autocast (bfloat16
where supported, else float16) while z, the products and all solver state stay float32; on
the CPU it is ignored. (The generic path's ``torch.func.jvp`` stays in float32: forward-mode AD
does not compose with autocast.) ``compile=True`` compiles the fast path's tangent recursion
with ``torch.compile`` (inductor fuses its element-wise rules); off by default (bench/README.md
has the measurements).

``LocalMetric.restrict(m)`` confines the metric at w to the coordinate subspace
{theta : theta_i = 0 where m_i = 0} (m a 0/1 or bool tensor over w): products become P g P theta
and pullbacks P J^T u with P = diag(m), so every solver's step stays in the subspace exactly.

Models are always evaluated in eval mode here: BatchNorm uses its running statistics and no
buffer is updated, so the metric is a function of the weights alone.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp

from geodesic.core.fastmetric import ChainLinearization, compiled_tangent, trace_chain
from geodesic.core.outputs import OUTPUT_KINDS, output_distance_gradient
from geodesic.core.space import ParameterSpace, eval_mode

class FunctionalMetric:
    """g(w) over a pool of inputs; ``at(w)`` linearises the network at w.

    When the pool holds more than ``batch_size`` inputs, each call of ``at`` draws a fresh batch
    with the metric's own generator (its state is part of ``state_dict``, so a resumed traversal
    draws the same batches). ``reference`` weights w0 (default: the model's weights when the
    metric is built) fix the outputs z0 = f(x; w0) against which
    ``LocalMetric.distance_gradient`` measures the output distance; ``held`` (bool, one per pool
    row; default all) marks the rows whose outputs that distance counts: the others shape g (the
    steps measure their change) but nothing pulls them back. ``fast`` selects the
    per-layer products when the model is a supported chain (``self.chain`` is then not None);
    ``amp`` enables CUDA autocast for the forward passes (see the module docstring);
    ``compile`` runs the fast path's tangent recursion under ``torch.compile`` (compiled once
    for the metric at its first product; same numbers to rounding, tests/core/test_fast_paths.py).
    """

    def __init__(self, model: nn.Module, inputs: Tensor, output: str = "logits",
                 batch_size: int | None = None, reference: Tensor | None = None, seed: int = 0,
                 *, held: Tensor | None = None, fast: bool = True, amp: bool = False,
                 compile: bool = False):
        if held is not None and held.shape != (len(inputs),):
            raise ValueError(f"held has shape {tuple(held.shape)}: one flag per pool row "
                             f"({len(inputs)},)")
        self.model, self.inputs, self.output = model, inputs, output
        self.held = None if held is None or bool(held.all()) else held.to(inputs.device)
        self.operator = OUTPUT_KINDS.get(output)
        self.space = ParameterSpace(model)
        self.buffers = {n: b for n, b in model.named_buffers()}
        self.batch_size = min(batch_size or len(inputs), len(inputs))
        self.generator = torch.Generator().manual_seed(seed)
        self.reference = (self.space.get(model) if reference is None else reference).detach()
        self.evals = 0  # forward+backward-equivalent evaluations, the unit of compute
        # the per-layer products run the module itself: only when ``function`` is the module's
        overridden = type(self).function is not FunctionalMetric.function
        self.chain = trace_chain(model, self.space.names) if fast and not overridden else None
        self.amp = amp
        self.tangent = compiled_tangent(self.chain, self.space) \
            if compile and self.chain is not None else None

    def autocast(self):
        """A CUDA autocast factory when ``amp`` is on and the inputs live on a GPU, else None."""
        if not (self.amp and self.inputs.is_cuda):
            return None
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return partial(torch.autocast, device_type="cuda", dtype=dtype)

    def function(self, w: Tensor, x: Tensor) -> Tensor:
        """z = f(x; w) with the module's buffers, in eval mode."""
        with eval_mode(self.model):
            return functional_call(self.model, {**self.space.unflatten(w), **self.buffers}, (x,))

    def linearize(self, w: Tensor, x: Tensor) -> "ChainLinearization | GenericLinearization":
        """The network at w on x: an object with ``z``, ``jvp(theta)`` and ``vjp(u)``."""
        if self.chain is not None:
            frozen = {n: p.detach() for n, p in self.model.named_parameters()
                      if n not in set(self.space.names)}
            return ChainLinearization(self.chain, self.space, w, x, frozen, self.autocast(),
                                      self.tangent)
        return GenericLinearization(self, w, x)

    def draw(self) -> Tensor | None:
        """Row indices of a fresh batch of the pool, or None when the batch is the whole pool."""
        if self.batch_size == len(self.inputs):
            return None
        idx = torch.randperm(len(self.inputs), generator=self.generator)[: self.batch_size]
        return idx.to(self.inputs.device)

    def sample(self) -> Tensor:
        idx = self.draw()
        return self.inputs if idx is None else self.inputs[idx]

    def at(self, w: Tensor, x: Tensor | None = None) -> "LocalMetric":
        """The metric at w on x, or on a fresh batch of the pool (whose reference outputs then
        come from :meth:`reference_outputs` instead of a forward pass per step)."""
        if x is not None:
            return LocalMetric(self, w.detach(), x)
        idx = self.draw()
        rows = slice(None) if idx is None else idx
        return LocalMetric(self, w.detach(), self.inputs[rows], rows)

    def reference_outputs(self, rows: Tensor | slice = slice(None)) -> Tensor:
        """z0 = f(x; w0) for the given rows of the pool. The pool's outputs are computed once
        (in chunks of ``batch_size``) and again only when w0 or a buffer (BatchNorm statistics)
        has changed since."""
        key = (id(self.reference), self.reference._version,
               tuple(b._version for b in self.buffers.values()))
        if getattr(self, "_z0_key", None) != key:
            with torch.no_grad():
                self._z0 = torch.cat([self.function(self.reference, chunk)
                                      for chunk in self.inputs.split(self.batch_size)])
            self._z0_key = key
        return self._z0[rows]

    def dense(self, w: Tensor, x: Tensor | None = None) -> Tensor:
        """The n x n matrix g(w), from the full Jacobian: for tests on small models only."""
        x = self.inputs if x is None else x
        z = self.function(w, x)
        jac = jacrev(lambda v: self.function(v, x))(w)  # (B, m, n)
        h = torch.stack([self.operator(z, e.expand_as(z)) for e in torch.eye(z.shape[-1],
                         dtype=z.dtype, device=z.device)], dim=-1)  # (B, m, m): H_x columns
        return torch.einsum("bin,bij,bjk->nk", jac, h, jac) / x.shape[0]

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


class GenericLinearization:
    """Any module: J theta by ``torch.func.jvp`` (recomputing the forward pass), J^T u through
    one ``torch.func.vjp`` closure built here and reused."""

    def __init__(self, metric: FunctionalMetric, w: Tensor, x: Tensor):
        self.autocast = metric.autocast()
        self.metric, self.x = metric, x
        with self._autocast():
            z, self._pullback = vjp(lambda v: metric.function(v, x), w)
        self.w, self.out_dtype = w, z.dtype
        self.z = z.detach().to(w.dtype)

    def _autocast(self):
        return self.autocast() if self.autocast is not None else nullcontext()

    def jvp(self, theta: Tensor, rows: int | None = None) -> Tensor:
        """J theta on the first ``rows`` inputs (all when None), recomputing their forward pass;
        in full precision even under amp: forward-mode AD does not compose with autocast."""
        x = self.x[:rows]  # all of them when rows is None
        return jvp(lambda v: self.metric.function(v, x), (self.w,), (theta,))[1].to(self.z.dtype)

    def vjp(self, u: Tensor) -> Tensor:
        return self._pullback(u.to(self.out_dtype))[0]


class LocalMetric:
    """The metric linearised at one point w on one batch x: every product reuses one
    linearisation (saved activations and the retained graph, or one vjp closure).

    ``batch`` is the number of inputs the metric averages over and ``reduce`` sums a
    per-batch quantity over it; on one process that is x itself (the identity), and
    :class:`geodesic.core.distributed.DistributedMetric` overrides both to all-reduce across ranks.
    """

    mask: Tensor | None = None  # see ``restrict``

    def __init__(self, metric: FunctionalMetric, w: Tensor, x: Tensor,
                 rows: Tensor | slice | None = None):
        self.metric, self.w, self.x, self.rows = metric, w, x, rows  # rows: x = pool[rows]
        self.linear = metric.linearize(w, x)
        self.z = self.linear.z
        metric.evals += 1

    def restrict(self, mask: Tensor | None) -> "LocalMetric":
        """Confine every later product to the subspace where ``mask`` (0/1 over w) is 1:
        J -> J P, so g -> P g P and J^T u -> P J^T u. None: no restriction."""
        self.mask = mask
        return self

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def reduce(self, total: Tensor) -> Tensor:
        """Sum of a batch-summed quantity over every shard of the batch (here: one shard)."""
        return total

    def jvp(self, theta: Tensor, rows: int | None = None) -> Tensor:
        """J theta (J P theta when restricted): the first-order change of the outputs, (B, m);
        with ``rows``, of this shard's first ``rows`` inputs only, (rows, m)."""
        return self.linear.jvp(theta if self.mask is None else theta * self.mask, rows)

    def shard_rows(self, rows: int) -> int:
        """How many of this shard's inputs are among the first ``rows`` inputs of the batch."""
        return min(rows, len(self.x))

    def pullback(self, u: Tensor) -> Tensor:
        """(1/|B|) J^T u for an output-space vector u of shape (B, m); the 1/|B| is applied to
        the small u rather than the n-vector. P J^T u when restricted."""
        grad = self.reduce(self.linear.vjp(u / self.batch))
        return grad if self.mask is None else grad * self.mask

    def output_inner(self, a: Tensor, b: Tensor) -> Tensor:
        """<a, b> = (1/|B|) sum over the batch of a_x . b_x for output-space tensors (B, m)."""
        return self.reduce((a * b).sum()) / self.batch

    def output_operator(self, u: Tensor) -> Tensor:
        """H u, row by row: the output-space operator of the metric at z."""
        return self.metric.operator(self.z, u)

    def gram(self, u: Tensor) -> Tensor:
        """J (J^T u / |B|) = J pullback(u): one product, in output space (B, m)."""
        self.metric.evals += 1
        return self.jvp(self.pullback(u))

    def mvp(self, theta: Tensor) -> Tensor:
        """g theta = (1/|B|) J^T H (J theta): one metric-vector product, as a new tensor (the
        solvers update it in place)."""
        self.metric.evals += 1
        return self.pullback(self.output_operator(self.jvp(theta)))

    def quadratic(self, theta: Tensor, rows: int | None = None) -> Tensor:
        """theta^T g theta = (1/|B|) sum_x (J_x theta)^T H (J_x theta), from one jvp.

        With ``rows`` < |B|: the same mean over the first ``rows`` inputs of the batch only, an
        unbiased estimate of it when the batch is a random draw, at about rows / |B| of the
        cost (the jvp runs on those inputs alone)."""
        self.metric.evals += 1
        if rows is None or rows >= self.batch:
            u = self.jvp(theta)
            return self.output_inner(u, self.output_operator(u))
        k = self.shard_rows(rows)
        u = self.jvp(theta, k) if k else self.z[:0]
        return self.reduce((u * self.metric.operator(self.z[:k], u)).sum()) / rows

    def recorded_quadratic(self, theta: Tensor, rows: int | None = None) -> Tensor:
        """``quadratic`` measured for a step's record: not counted in ``evals`` (it is not part
        of the step's computation)."""
        evals = self.metric.evals
        quad = self.quadratic(theta, rows)
        self.metric.evals = evals
        return quad

    def reference_outputs(self, metric: FunctionalMetric | None = None) -> Tensor:
        """z0 = f(x; w0) on this batch, w0 the reference of ``metric`` (default: this point's
        metric; another metric must draw from the same pool), without gradient."""
        metric = self.metric if metric is None else metric
        if self.rows is not None:
            return metric.reference_outputs(self.rows)
        with torch.no_grad():
            return metric.function(metric.reference, self.x)

    def distance_gradient(self, z0: Tensor | None = None) -> Tensor:
        """grad_w D(w), D = (1/|B|) sum_{x in B} h_x d(f(x; w), z0_x): the mean output distance
        to ``z0`` (default: the reference's outputs f(x; w0)) over the batch, h_x = 0 on the
        pool rows the metric does not hold (``FunctionalMetric(held=...)``) and 1 elsewhere."""
        z0 = self.reference_outputs() if z0 is None else z0
        self.metric.evals += 1
        u = output_distance_gradient(self.metric.output, self.z, z0)
        if self.metric.held is not None and self.rows is not None:
            u = u * self.metric.held[self.rows].unsqueeze(-1).to(u.dtype)
        return self.pullback(u)


def functional_length(local: LocalMetric, theta: Tensor) -> float:
    """sqrt(theta^T g(w) theta): the length of a step measured by the change of function."""
    return float(local.quadratic(theta).clamp_min(0).sqrt())
