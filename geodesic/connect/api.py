"""``connect_networks``: application (iii) between any two networks of one architecture."""
from __future__ import annotations

from torch import nn

from geodesic.common.data import examples_from
from geodesic.connect.objective import Connect, connect_objective
from geodesic.connect.settings import ConnectSettings
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import Path
from geodesic.core.settings import parse_section
from geodesic.core.space import ParameterSpace
from geodesic.core.traverse import walk

METRIC_INPUTS = 4096


def connect_networks(model: nn.Module, target: nn.Module, data, directory=None,
                     **settings) -> Path:
    """Walk ``model`` in place from its weights w1 to those of ``target`` (w2).

    v(w) = (w2 - w) - alpha grad D2(w), D2 the output distance to w2 (or, with ``anchor_target:
    interpolated``, to the interpolation of w1's and w2's outputs) on inputs of ``data`` (a
    DataLoader, a tensor of inputs or an ``(x, y)`` pair; no labels are read), each step the
    shortest in the functional metric g; within ``eps ||w1 - w2||`` of w2 a straight segment
    joins it. ``settings`` are keys of the ``connect`` section of params.yaml (``eta``,
    ``anchor``, ``max_steps``, ...), checked before any compute. Returns the path, whose
    ``records`` hold each step's distance to w2."""
    s: ConnectSettings = parse_section(ConnectSettings, settings, "connect")
    inputs = examples_from(data, METRIC_INPUTS, labels=False).x
    space = ParameterSpace(model)
    w1, w2 = space.get(model), ParameterSpace(target).get(target).to(space.get(model).device)
    metric = FunctionalMetric(model, inputs.to(w1.device), s.output, s.metric_batch,
                              seed=s.seed, reference=w2, **s.metric_options())
    objective = connect_objective(Connect(w1, w2, s.eps, s.constant_pull), metric, w1, s.anchor,
                                  s.anchor_target)
    return walk(model, objective, metric, s, directory=directory, name="connect_networks")
