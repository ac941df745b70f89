"""Connect: the baseline curves, the path metrics and BatchNorm recalibration (the objective's
walk: test_connect_objective.py)."""
import copy

import pytest
import torch

from geodesic.common.evaluate import (BatchNormRefresh, accuracy, path_metrics,
                                      recalibrate_batchnorm, score_weights)
from geodesic.common.models import build_model
from geodesic.connect.curves import (CURVES, BezierTraining, Line, Plane, QuadraticBezier,
                                     fit_bezier, garipov_lr)
from geodesic.connect.run import BASELINES, GEODESICS, TARGETS, endpoints, run_curve, run_geodesic
from geodesic.connect.settings import CURVE_NAMES, GEODESIC_NAMES
from geodesic.core.metric import FunctionalMetric
from geodesic.core.settings import ParamsError
from geodesic.core.space import ParameterSpace
from geodesic.params import parse_params
from tests.helpers.connect import settings


pytestmark = pytest.mark.usefixtures("one_thread")


def test_permuted_twins_compute_the_same_function(digits, trained):
    net, twin = trained
    assert torch.allclose(net(digits.test.x), twin(digits.test.x), atol=1e-5)


@pytest.mark.parametrize("pull", [0.0, 3.0])
def test_geodesic_keeps_accuracy_where_the_line_between_permuted_twins_drops(digits, trained,
                                                                             pull):
    net, twin = trained
    ends = endpoints(net, twin, digits, 0, 256)
    base = accuracy(net, digits.test)[0]
    line = run_curve("linear", ends, settings())
    geodesic = run_geodesic(ends, settings(anchor=pull))
    assert line.metrics["min_acc"] < base - 0.10  # the averaged hidden units lose the function
    assert geodesic.metrics["min_acc"] >= base - 0.02
    assert geodesic.metrics["end_distance"] <= 0.01
    assert geodesic.metrics["barrier"] < 0.5 * line.metrics["barrier"]


def test_bezier_training_removes_most_of_the_line_barrier(digits, trained):
    net, twin = trained
    ends = endpoints(net, twin, digits, 0, 256)
    line = run_curve("linear", ends, settings())
    bezier = run_curve("bezier", ends, settings(bezier_steps=300))
    base = accuracy(net, digits.test)[0]
    assert bezier.metrics["grad_evals"] == 300
    assert line.metrics["min_acc"] < base - 0.10
    assert bezier.metrics["min_acc"] > base - 0.03
    assert bezier.metrics["barrier"] < 0.5 * line.metrics["barrier"]
    assert torch.equal(bezier.curve.point(0.0), ends.w1)
    assert torch.equal(bezier.curve.point(1.0), ends.w2)


def test_straight_line_metrics_equal_direct_evaluation(digits, trained):
    net, _ = trained
    torch.manual_seed(1)
    other = build_model("mlp", digits.in_shape, 10, (32,))
    ends = endpoints(net, other, digits, 0, 64)
    result = run_curve("linear", ends, settings(points=6))
    space = ParameterSpace(net)
    w1, w2 = space.get(net), space.get(other)
    accs, losses = [], []
    for t in torch.linspace(0, 1, 6).tolist():
        probe = copy.deepcopy(net)
        space.set(probe, (1 - t) * w1 + t * w2)
        acc, loss = accuracy(probe, digits.test)
        accs.append(acc)
        losses.append(loss)
    assert [p["test_acc"] for p in result.points] == pytest.approx(accs, abs=1e-12)
    assert [p["test_loss"] for p in result.points] == pytest.approx(losses, rel=1e-6)
    m = result.metrics
    assert m["min_acc"] == min(accs) and m["end_acc"] == accs[-1]
    assert m["barrier"] == pytest.approx(max(losses) - 0.5 * (losses[0] + losses[-1]), rel=1e-6)
    trapezoid = sum(0.5 * (a + b) for a, b in zip(accs, accs[1:])) / 5
    assert m["mean_acc"] == pytest.approx(trapezoid, rel=1e-6)
    assert m["length"] == pytest.approx(float((w2 - w1).norm()), rel=1e-6)
    assert [p["position"] for p in result.points] == pytest.approx(
        [t * float((w2 - w1).norm()) for t in torch.linspace(0, 1, 6).tolist()], rel=1e-5)


def test_path_metrics_on_hand_made_points():
    points = [{"position": s, "test_acc": a, "test_loss": l}
              for s, a, l in [(0, 0.9, 0.2), (1, 0.5, 1.0), (3, 0.7, 0.4)]]
    m = path_metrics(points, length=3.0, functional_length=2.0)
    assert m["min_acc"] == 0.5 and m["end_acc"] == 0.7
    assert m["mean_acc"] == pytest.approx((0.5 * (0.9 + 0.5) + 2 * 0.5 * (0.5 + 0.7)) / 3)
    assert m["barrier"] == pytest.approx(1.0 - 0.3)


def _bn_pair():
    """Two CIFAR-style VGG11s with BatchNorm whose running statistics describe their own
    weights (as after training), and inputs labelled by the midpoint network with fresh
    statistics, so recalibrated scoring of the midpoint is exact."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_model("vgg11_bn", (3, 32, 32), 10)
        recalibrate_batchnorm(net, x)
        nets.append(net.eval())
    return nets, x


def test_batchnorm_recalibration_changes_an_interpolated_vgg_and_not_an_mlp(digits, trained):
    (a, b), x = _bn_pair()
    space = ParameterSpace(a)
    mid = 0.5 * (space.get(a) + space.get(b))
    probe = copy.deepcopy(a)
    space.set(probe, mid)
    recalibrate_batchnorm(probe, x)
    with torch.no_grad():
        labels = probe.eval()(x).argmax(-1)
    split = type(digits.test)(x, labels)
    fresh, _ = score_weights(a, space, mid, split, recalibrate=x)
    stale, _ = score_weights(a, space, mid, split)
    assert fresh == 1.0 and stale < 0.9

    net, twin = trained
    mlp_space = ParameterSpace(net)
    w = 0.5 * (mlp_space.get(net) + mlp_space.get(twin))
    assert score_weights(net, mlp_space, w, digits.test, recalibrate=digits.train.x) == \
        score_weights(net, mlp_space, w, digits.test)


def test_batchnorm_refresh_keeps_the_metric_statistics_at_the_current_point():
    (a, b), x = _bn_pair()
    space = ParameterSpace(a)
    w = 0.5 * (space.get(a) + space.get(b))
    metric = FunctionalMetric(a, x[:4])
    before = metric.buffers["features.1.running_mean"].clone()
    refresh = BatchNormRefresh(a, space, x, every=5)
    refresh.on_step({"step": 3}, w)
    assert torch.equal(metric.buffers["features.1.running_mean"], before)
    refresh.on_step({"step": 5}, w)
    expected = copy.deepcopy(a)
    space.set(expected, w)
    recalibrate_batchnorm(expected, x)
    assert torch.allclose(metric.buffers["features.1.running_mean"],
                          expected.features[1].running_mean)
    assert not torch.allclose(before, expected.features[1].running_mean)


def test_bezier_is_the_line_at_initialisation_and_fixes_the_end_points():
    w1, w2 = torch.randn(7), torch.randn(7)
    curve = QuadraticBezier.through_midpoint(w1, w2)
    line = Line(w1, w2)
    for t in (0.0, 0.3, 0.8, 1.0):
        assert torch.allclose(curve.point(t), line.point(t), atol=1e-6)
        assert torch.allclose(curve.tangent(t), line.tangent(t), atol=1e-6)
    bent = QuadraticBezier(w1, w2, torch.randn(7))
    h = 1e-3
    numeric = (bent.point(0.4 + h) - bent.point(0.4 - h)) / (2 * h)
    assert torch.allclose(bent.tangent(0.4), numeric, atol=1e-3)


def test_garipov_schedule():
    assert garipov_lr(1.0, 0.0) == garipov_lr(1.0, 0.5) == 1.0
    assert garipov_lr(1.0, 0.7) == pytest.approx(1 - 0.99 * 0.5)
    assert garipov_lr(1.0, 0.95) == pytest.approx(0.01)


def test_bezier_training_is_deterministic(digits, trained):
    net, twin = trained
    space = ParameterSpace(net)
    cfg = BezierTraining(steps=20, batch_size=32)
    first = fit_bezier(net, space, space.get(net), space.get(twin), digits.train, cfg)
    again = fit_bezier(net, space, space.get(net), space.get(twin), digits.train, cfg)
    assert torch.equal(first.curve.theta, again.curve.theta)
    assert not torch.equal(first.curve.theta, 0.5 * (space.get(net) + space.get(twin)))


def test_an_interrupted_bezier_training_resumes_to_the_uninterrupted_curve(digits, trained,
                                                                           tmp_path):
    from geodesic.core.path import StateCheckpoints
    net, twin = trained
    space = ParameterSpace(net)
    cfg = BezierTraining(steps=30, batch_size=32, log_every=5)

    def fit(directory=None, records=10 ** 9):
        seen = []

        def on_record(record):
            seen.append(record)
            if len(seen) > records:
                raise KeyboardInterrupt  # as a kill would stop it
        return fit_bezier(net, space, space.get(net), space.get(twin), digits.train, cfg,
                          on_record, StateCheckpoints(directory, 4)), seen

    def strip(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    full, _ = fit()
    for cut in ([2], [4], [1, 3]):  # after steps 10 / 20 (checkpoints at 8 / 20), twice
        folder = tmp_path / "-".join(map(str, cut))
        for records in cut:
            with pytest.raises(KeyboardInterrupt):
                fit(folder, records)
        resumed, logged = fit(folder)
        assert len(logged) < len(full.records)  # continued, not started afresh
        assert torch.equal(resumed.curve.theta, full.curve.theta), cut
        assert strip(resumed.records) == strip(full.records)
    finished, logged = fit(folder)  # a finished training is not trained again
    assert torch.equal(finished.curve.theta, full.curve.theta) and not logged


def test_plane_coordinates():
    w1, w2, p = torch.zeros(5), torch.tensor([4.0, 0, 0, 0, 0]), torch.tensor([1.0, 2, 0, 0, 0])
    plane = Plane.through(w1 + 1, w2 + 1, p + 1)
    assert plane.coordinates(w1 + 1) == pytest.approx((0, 0, 0))
    assert plane.coordinates(w2 + 1) == pytest.approx((4, 0, 0))
    assert plane.coordinates(p + 1) == pytest.approx((1, 2, 0))
    assert plane.coordinates(torch.tensor([2.0, -1, 3, 0, 0]) + 1) == pytest.approx((2, -1, 3))


def test_the_method_tables_hold_the_params_names():
    assert sorted(BASELINES) == sorted(CURVE_NAMES)
    assert sorted(GEODESICS) == sorted(GEODESIC_NAMES)
    assert {curve for curve, _ in BASELINES.values()} == set(CURVES.names())
    assert {t for _, t in BASELINES.values()} | set(GEODESICS.values()) == set(TARGETS.names())


@pytest.mark.parametrize("section, key", [
    ({"baselines": ["linear", "spline"]}, "connect.baselines"),
    ({"seeds": [0, 0]}, "connect.seeds"),
    ({"seeds": [0, 1, 2]}, "connect.seeds"),
    ({"eps": 0.0}, "connect.eps"),
    ({"anchor": -1.0}, "connect.anchor"),
    ({"geodesics": ["geodesic", "geodesic"]}, "connect.geodesics"),
    ({"geodesics": ["geodesic_plain"]}, "connect.geodesics"),
    ({"geodesics": [], "baselines": []}, "connect.geodesics"),
])
def test_bad_connect_params_name_the_key(section, key):
    with pytest.raises(ParamsError) as info:
        parse_params({"connect": section})
    assert info.value.key.startswith(key)
    if key == "connect.baselines":
        assert "linear, bezier" in str(info.value)


def test_the_midpoint_is_the_curve_at_one_half_or_the_middle_path_checkpoint(tmp_path):
    import torch as t

    from geodesic.connect.curves import Line
    from geodesic.connect.run import MethodResult, midpoint_weights
    from geodesic.core.path import Checkpoint, save_checkpoint
    line = MethodResult("linear", [], {"steps": 0}, curve=Line(t.zeros(3), t.full((3,), 2.0)))
    assert t.equal(midpoint_weights(line, tmp_path), t.ones(3))
    for step in (4, 8, 12):
        save_checkpoint(tmp_path, Checkpoint(step, 0.1, t.full((3,), float(step)), {}, {}, [],
                                             {}))
    walk = MethodResult("geodesic", [], {"steps": 15})
    assert t.equal(midpoint_weights(walk, tmp_path), t.full((3,), 8.0))  # 8 is nearest 7.5
