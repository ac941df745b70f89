"""``sparsify_network``: application (i) on any ``nn.Module`` and any data, in one call."""
from __future__ import annotations

from torch import nn

from geodesic.common.data import examples_from
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import Path
from geodesic.core.settings import parse_section
from geodesic.core.space import ParameterSpace
from geodesic.core.traverse import walk
from geodesic.sparsify.masks import MagnitudeProjection
from geodesic.sparsify.objective import Sparsify, build_sparsify_objective
from geodesic.sparsify.settings import SparsifySettings

SCHEDULE = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
METRIC_INPUTS = 4096


def sparsify_network(model: nn.Module, data, sparsity: float, directory=None,
                     **settings) -> Path:
    """Walk ``model`` in place to a ``sparsity``-sparse network that keeps its function.

    v(w) = P_p(w) - w - alpha grad D(w): toward the magnitude projection of the current point,
    pulled back to the starting function on inputs of ``data`` (a DataLoader, a tensor of
    inputs or an ``(x, y)`` pair; no labels are read), each step the shortest in the functional
    metric g. The levels below ``sparsity`` of (0.5, 0.8, 0.9, 0.95, 0.98, 0.99) are walked
    first. ``settings`` are keys of the ``sparsify`` section of params.yaml (e.g. ``eta``,
    ``anchor``, ``steps_per_level``), checked before any compute; ``directory`` keeps
    resumable checkpoints. Returns the path; the model holds its last, masked, weights."""
    levels = [p for p in SCHEDULE if p < sparsity] + [sparsity]
    s: SparsifySettings = parse_section(SparsifySettings, {"levels": levels, **settings},
                                        "sparsify")
    inputs = examples_from(data, METRIC_INPUTS, labels=False).x
    device = next(model.parameters()).device
    space = ParameterSpace(model)
    projection = MagnitudeProjection.build(model, space, s.include, s.exclude, s.ranking)
    metric = FunctionalMetric(model, inputs.to(device), s.output, s.metric_batch, seed=s.seed,
                              **s.metric_options())
    levels_walk = Sparsify(projection, s.levels, s.steps_per_level, s.level_tol, s.settle_steps,
                           s.target)
    return walk(model, build_sparsify_objective(levels_walk, s.anchor), metric, s,
                max_steps=s.step_budget, directory=directory, name="sparsify_network")
