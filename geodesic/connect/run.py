"""The connect application: paths from w1 to w2 (the geodesic and the baseline curves), each
scored the same way.

Every path is evaluated at points ordered from w1 to w2, each a dict with ``position`` (its
Euclidean arc length from w1), ``test_acc``/``test_loss`` and ``val_acc``/``val_loss``, with
BatchNorm statistics recomputed from training inputs at every point. The geodesic is scored at
w1, every ``eval_every`` steps, where it arrives within eps of w2, and at w2 after the final
straight segment; a curve at ``points`` parameters t evenly spaced in [0, 1]. Compute is counted
in gradient evaluations (``evals``): metric-vector products, pullbacks and SGD steps alike.

The geodesic's direction is v = (w2 - w) - alpha grad D2(w) with alpha = ``anchor``:
:class:`Connect` composed with alpha :class:`Anchor`, the metric's reference network being w2,
so D2 = 1/2 E||f(x; w) - f(x; w2)||^2 on the metric batch (no labels); with ``anchor_target:
interpolated`` D2 measures the distance to (1 - t) f(x; w1) + t f(x; w2) at the walk's progress
t instead (:class:`InterpolatedAnchor`). alpha = 0 is the plain paper form v = w2 - w.

Every method walks to one of two targets that compute the same function: w2 itself, or pi(w2),
w2 with its hidden units permuted to match w1 (:func:`geodesic.connect.alignment.weight_matching`,
max_pi <w1, pi(w2)>). The ``aligned`` methods (``aligned``, ``bezier_aligned``,
``geodesic_aligned``) are the others with w2 replaced by pi(w2); their seconds include the
matching's. Lengths are reported relative to both chords, ||w1 - target|| and ||w1 - w2||.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from geodesic.common.data import Dataset
from geodesic.common.evaluate import (AccuracyCallback, BatchNormRefresh, path_metrics,
                                      recalibrate_batchnorm, score_curve, score_weights)
from geodesic.connect.alignment import Alignment, weight_matching
from geodesic.connect.curves import CURVES, BezierTraining, Plane
from geodesic.connect.objective import Connect, connect_objective
from geodesic.core.io import load_tensors
from geodesic.core.metric import FunctionalMetric
from geodesic.core.path import StateCheckpoints, checkpoint_files, checkpoint_step
from geodesic.core.registry import Registry
from geodesic.core.space import ParameterSpace
from geodesic.core.traverse import Callback, Timed, walk


@dataclass
class Endpoints:
    """What every method shares: the two networks and the inputs used for scoring."""

    model: nn.Module  # the architecture, holding w1; only ever copied
    space: ParameterSpace
    w1: Tensor
    w2: Tensor
    data: Dataset
    train_inputs: Tensor  # on the device: the metric's pool
    bn_inputs: Tensor  # BatchNorm statistics are recomputed from these at every point
    metric_inputs: Tensor  # fixed batch for the functional speed of the curves
    align_seed: int = 0  # seed of the weight matching's order of groups
    alignment: Alignment | None = None  # set when w2 is pi(w2)
    network_w2: Tensor | None = None  # w2 as trained (None: w2 is it)
    _aligned: "Endpoints | None" = field(default=None, repr=False)

    def splits(self) -> dict:
        return {"test": self.data.test, "val": self.data.val}

    def aligned(self) -> "Endpoints":
        """The same endpoints with w2 replaced by pi(w2); weight matching runs at the first
        call only."""
        if self._aligned is None:
            alignment = weight_matching(self.model, self.w1, self.w2, seed=self.align_seed)
            self._aligned = dataclasses.replace(self, w2=alignment.apply(self.w2),
                                                alignment=alignment, network_w2=self.w2)
        return self._aligned

    def trained_w2(self) -> Tensor:
        return self.w2 if self.network_w2 is None else self.network_w2

    def align_seconds(self) -> float:
        return 0.0 if self.alignment is None else self.alignment.seconds


# method name -> the endpoints it walks between (w1 to w2, or w1 to pi(w2))
TARGETS: Registry[Callable[[Endpoints], Endpoints]] = Registry("target")
TARGETS.register("w2")(lambda ends: ends)
TARGETS.register("aligned")(Endpoints.aligned)
BASELINES = {"linear": ("linear", "w2"), "bezier": ("bezier", "w2"),  # (a CURVES name, target)
             "aligned": ("linear", "aligned"), "bezier_aligned": ("bezier", "aligned")}
GEODESICS = {"geodesic": "w2", "geodesic_aligned": "aligned"}


@dataclass
class MethodResult:
    name: str
    points: list[dict]
    metrics: dict
    records: list[dict] = field(default_factory=list)
    plane: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, off-plane)
    curve: object | None = None  # the fitted curve (baselines)
    target: str = "w2"  # a TARGETS name: where the method ends


def endpoints(model1: nn.Module, model2: nn.Module, data: Dataset, bn_inputs: int,
              metric_batch: int, align_seed: int = 0) -> Endpoints:
    space = ParameterSpace(model1)
    w1 = space.get(model1)
    x = data.train.x.to(w1.device)
    return Endpoints(model1, space, w1, space.get(model2), data, x,
                     x if bn_inputs == 0 else x[:bn_inputs], x[:metric_batch], align_seed)


def alignment_figures(aligned: Endpoints) -> dict:
    """What weight matching found for aligned endpoints: ||w1 - w2||, ||w1 - pi(w2)||,
    <w1, pi(w2)> against <w1, w2>, its sweeps and seconds."""
    a = aligned.alignment
    return {"distance_w2": float((aligned.w1 - aligned.network_w2).norm()),
            "distance_aligned": float((aligned.w1 - aligned.w2).norm()),
            "align_objective": a.objective, "align_identity_objective": a.identity_objective,
            "align_sweeps": a.sweeps, "align_seconds": a.seconds}


def chords(ends: Endpoints, length: float) -> dict:
    """chord = ||w1 - target||; length_ratio = length / chord; length_ratio_w2 = length /
    ||w1 - w2|| (w2 as trained); align_seconds: the weight matching's wall-clock (0 toward w2)."""
    chord = float((ends.w1 - ends.w2).norm())
    chord_w2 = float((ends.w1 - ends.trained_w2()).norm())
    return {"chord": chord, "length_ratio": length / max(chord, 1e-30),
            "length_ratio_w2": length / max(chord_w2, 1e-30), "align_seconds": ends.align_seconds()}


def score_point(ends: Endpoints, w: Tensor) -> dict:
    point = {}
    for name, split in ends.splits().items():
        point[f"{name}_acc"], point[f"{name}_loss"] = score_weights(
            ends.model, ends.space, w, split, ends.bn_inputs)
    return point



class PlaneTrace(Callback):
    """Coordinates of every step's weights on a :class:`Plane`."""

    def __init__(self, plane: Plane):
        self.plane, self.coords = plane, []

    def on_step(self, record, w):
        self.coords.append(self.plane.coordinates(w))


def run_geodesic(ends: Endpoints, s, directory=None, plane: Plane | None = None,
                 callbacks: tuple[Callback, ...] = (), name: str = "geodesic") -> MethodResult:
    """Traverse from w1 toward w2 (``geodesic``) or pi(w2) (``geodesic_aligned``) with the
    settings ``s`` (a ConnectSettings, with the method's own values); ``plane`` traces the steps'
    coordinates on it."""
    s = s.for_method(name)
    target = GEODESICS[name]
    ends = TARGETS.get(target)(ends)
    model = copy.deepcopy(ends.model)
    metric = FunctionalMetric(model, ends.train_inputs, output=s.output,
                              batch_size=s.metric_batch, seed=s.seed, reference=ends.w2,
                              **s.metric_options())
    connect = Connect(ends.w1, ends.w2, s.eps, s.constant_pull)
    objective = connect_objective(connect, metric, ends.w1, s.anchor, s.anchor_target)
    scoring = [Timed(AccuracyCallback(model, ends.space, split, s.eval_every, key=name,
                                      recalibrate=ends.bn_inputs))
               for name, split in ends.splits().items()]
    scoring.append(Timed(BatchNormRefresh(model, ends.space, ends.bn_inputs, s.eval_every)))
    trace = PlaneTrace(plane) if plane is not None else Callback()
    path = walk(model, objective, metric, s, directory=directory, name=name,
                callbacks=[*scoring, trace, *callbacks])
    points = _geodesic_points(ends, path, connect)
    join = ends.w2 - connect.end if "joined" in path.milestones else None
    functional = path.functional_length + (_functional(ends, ends.w2, join, s.output)
                                           if join is not None else 0.0)
    metrics = path_metrics(points, points[-1]["position"], functional)
    last = path.records[-1] if path.records else {"evals": 0, "seconds": 0.0,
                                                  "distance_rel": 1.0}
    metrics.update(end_distance=last["distance_rel"], grad_evals=last["evals"],
                   seconds=last["seconds"] - sum(c.seconds for c in scoring) +
                   ends.align_seconds(), steps=len(path.records), **_validation(points),
                   **chords(ends, metrics["length"]))
    coords = [plane.coordinates(ends.w1)] + trace.coords if plane is not None else []
    if plane is not None and join is not None:
        coords.append(plane.coordinates(ends.w2))
    return MethodResult(name, points, metrics, path.records, coords, target=target)


def _geodesic_points(ends: Endpoints, path, connect: Connect) -> list[dict]:
    points = [{"step": 0, "position": 0.0, **score_point(ends, ends.w1)}]
    position, scored = 0.0, set()
    for record in path.records:
        position += record["step_norm"]
        if "test_acc" in record:
            points.append({"step": record["step"], "position": position,
                           **_scores(record)})
            scored.add(record["step"])
    for name in ("arrived", "stopped", "joined"):
        record = path.milestones.get(name)
        if record is None or (name != "joined" and record["step"] in scored):
            continue
        extra = float((ends.w2 - connect.end).norm()) if name == "joined" else 0.0
        points.append({"step": record["step"], "position": position + extra,
                       **_scores(record)})
    return points


def _validation(points: list[dict]) -> dict:
    """The figures hyperparameters are selected on (never the test split)."""
    val = path_metrics(points, 0.0, 0.0, key="val")
    return {"val_min_acc": val["min_acc"], "val_barrier": val["barrier"]}


def _scores(record: dict) -> dict:
    return {k: record[k] for k in ("test_acc", "test_loss", "val_acc", "val_loss")}


def _functional(ends: Endpoints, w: Tensor, theta: Tensor, output: str) -> float:
    probe = copy.deepcopy(ends.model)
    ends.space.set(probe, w)
    recalibrate_batchnorm(probe, ends.bn_inputs)
    local = FunctionalMetric(probe, ends.metric_inputs, output=output).at(w, ends.metric_inputs)
    return float(local.quadratic(theta).clamp_min(0).sqrt())


def run_curve(name: str, ends: Endpoints, s, on_record: Callable[[dict], None] | None = None,
              on_point: Callable[[int, dict], None] | None = None,
              directory=None) -> MethodResult:
    """Fit baseline ``name`` (a curve of :data:`BASELINES` toward its target) and score it at
    ``s.points`` parameters; with ``directory``, the fit checkpoints there every
    ``s.checkpoint_every`` steps and resumes. ``s`` is taken with the method's own values."""
    s = s.for_method(name)
    curve, target = BASELINES[name]
    ends = TARGETS.get(target)(ends)
    cfg = BezierTraining(steps=s.bezier_steps, batch_size=s.bezier_batch, lr=s.bezier_lr,
                         momentum=s.bezier_momentum, weight_decay=s.bezier_weight_decay,
                         seed=s.seed)
    model = copy.deepcopy(ends.model)
    checkpoints = StateCheckpoints(directory, s.checkpoint_every, device=ends.w1.device)
    fitted = CURVES.get(curve)(model, ends.space, ends.w1, ends.w2, ends.data.train, cfg,
                              on_record, checkpoints)
    ts = torch.linspace(0, 1, s.points).tolist()
    points, length, functional = score_curve(ends.model, ends.space, fitted.curve, ts,
                                             ends.splits(), ends.bn_inputs,
                                             ends.metric_inputs, s.output, on_point)
    metrics = path_metrics(points, length, functional)
    metrics.update(end_distance=0.0, grad_evals=fitted.evals,
                   seconds=fitted.seconds + ends.align_seconds(),
                   steps=len(fitted.records) and fitted.records[-1]["step"],
                   **_validation(points), **chords(ends, length))
    return MethodResult(name, points, metrics, fitted.records, curve=fitted.curve, target=target)


def midpoint_weights(result: MethodResult, directory, device="cpu") -> Tensor:
    """The weights halfway along a method's path: phi(1/2) of a curve; for a traversal, the
    path checkpoint (under ``directory``) whose step is nearest to half its steps."""
    if result.curve is not None:
        return result.curve.point(0.5).to(device)
    files = checkpoint_files(directory)
    if not files:
        raise FileNotFoundError(f"{directory}: no path checkpoints to take the midpoint from")
    half = result.metrics["steps"] / 2
    nearest = min(files, key=lambda f: abs(checkpoint_step(f) - half))
    return load_tensors(nearest, device)[0]["w"]


def trace_curve(result: MethodResult, plane: Plane, n: int = 101) -> None:
    """The curve's coordinates on ``plane`` at ``n`` evenly spaced parameters."""
    result.plane = [plane.coordinates(result.curve.point(t))
                    for t in torch.linspace(0, 1, n).tolist()]


def plane_landscape(ends: Endpoints, plane: Plane, traces: list[list[tuple]], grid: int,
                    margin: float = 0.2) -> dict:
    """Test accuracy and loss on a ``grid`` x ``grid`` lattice of the plane covering the traces
    with a ``margin`` (fraction of their extent) on every side; BatchNorm recomputed per point."""
    xs = [c[0] for trace in traces for c in trace]
    ys = [c[1] for trace in traces for c in trace]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
    gx = torch.linspace(min(xs) - margin * span, max(xs) + margin * span, grid).tolist()
    gy = torch.linspace(min(ys) - margin * span, max(ys) + margin * span, grid).tolist()
    acc = [[0.0] * grid for _ in range(grid)]
    loss = [[0.0] * grid for _ in range(grid)]
    for j, y in enumerate(gy):
        for i, x in enumerate(gx):
            acc[j][i], loss[j][i] = score_weights(ends.model, ends.space, plane.point(x, y),
                                                  ends.data.test, ends.bn_inputs)
    return {"x": gx, "y": gy, "test_acc": acc, "test_loss": loss}
