"""The aligned methods: the straight line, Bezier and geodesic to pi(w2), w2 with its hidden
units permuted to match w1 (weight matching), and their own hyperparameters."""
import pytest
import torch

from geodesic.common.evaluate import accuracy
from geodesic.common.models import build_model
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train
from geodesic.connect.run import endpoints, run_curve, run_geodesic
from tests.helpers.connect import settings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_aligned_line_between_permuted_twins_is_the_network_itself(digits, trained):
    """Weight matching undoes the twin's permutation: pi(w2) = w1, the chord is 0 and every
    point of the aligned line is the network, where the plain line loses the function."""
    net, twin = trained
    ends = endpoints(net, twin, digits, 0, 256)
    base = accuracy(net, digits.test)[0]
    aligned = run_curve("aligned", ends, settings(points=5))
    line = run_curve("linear", ends, settings(points=5))
    assert torch.equal(ends.aligned().w2, ends.w1)
    assert ends.aligned().alignment.objective == pytest.approx(float(ends.w1.double().norm()) ** 2)
    assert [p["test_acc"] for p in aligned.points] == [base] * 5
    assert aligned.metrics["chord"] == 0.0 and aligned.metrics["length"] == 0.0
    assert aligned.metrics["align_seconds"] > 0 and aligned.metrics["grad_evals"] == 0
    assert line.metrics["min_acc"] < base - 0.10 and line.metrics["align_seconds"] == 0.0


@pytest.fixture(scope="module")
def two_networks(digits, trained):
    """The trained 64-32-10 MLP and an independently trained one (another seed)."""
    torch.manual_seed(1)
    other = build_model("mlp", digits.in_shape, 10, (32,))
    train(other, digits, TrainSettings(epochs=15, lr=0.05), seed=1)
    return trained[0], other


def test_aligned_methods_end_at_pi_w2_which_computes_w2s_function(digits, two_networks):
    net, other = two_networks
    ends = endpoints(net, other, digits, 0, 256)
    w2_acc = accuracy(other, digits.test)[0]
    aligned_ends = ends.aligned()
    assert aligned_ends is ends.aligned()  # matched once
    line = run_curve("linear", ends, settings())
    aligned = run_curve("aligned", ends, settings())
    geodesic = run_geodesic(ends, settings(max_steps=400), name="geodesic_aligned")
    distance, distance_aligned = float((ends.w1 - ends.w2).norm()), float(
        (ends.w1 - aligned_ends.w2).norm())
    assert distance_aligned < 0.9 * distance
    for result in (aligned, geodesic):
        assert result.target == "aligned" and result.points[-1]["test_acc"] == w2_acc
        assert result.metrics["chord"] == pytest.approx(distance_aligned, rel=1e-6)
        assert result.metrics["length_ratio_w2"] == pytest.approx(
            result.metrics["length"] / distance, rel=1e-6)
    assert aligned.metrics["length"] == pytest.approx(distance_aligned, rel=1e-5)
    assert aligned.metrics["length_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert line.metrics["length_ratio"] == line.metrics["length_ratio_w2"] == pytest.approx(1.0)
    assert aligned.metrics["min_acc"] >= line.metrics["min_acc"]
    assert aligned.metrics["barrier"] < line.metrics["barrier"]
    assert geodesic.metrics["end_distance"] <= 0.01 and geodesic.name == "geodesic_aligned"
    assert geodesic.metrics["length_ratio"] >= 1.0


def test_aligned_methods_run_with_their_own_values_where_set():
    from geodesic.connect.settings import ConnectSettings
    from geodesic.core.settings import ParamsError, parse_section
    shared = parse_section(ConnectSettings, {"eta": 0.5, "anchor": 2.0, "bezier_lr": 0.1})
    assert shared.for_method("geodesic_aligned") is shared  # nothing of its own: the shared
    own = parse_section(ConnectSettings, {"eta": 0.5, "anchor": 2.0, "aligned_eta": 1.5,
                                          "aligned_cg_iters": 4, "bezier_aligned_lr": 0.01,
                                          "aligned_constant_pull": True})
    aligned = own.for_method("geodesic_aligned")
    assert (aligned.eta, aligned.anchor, aligned.cg_iters) == (1.5, 2.0, 4)
    assert aligned.constant_pull and not own.constant_pull
    assert own.for_method("bezier_aligned").bezier_lr == 0.01
    assert own.for_method("geodesic") is own and own.for_method("bezier") is own
    with pytest.raises(ParamsError, match="connect.aligned_eta = 0.0 .*> 0.0"):
        parse_section(ConnectSettings, {"aligned_eta": 0.0}, "connect")
    with pytest.raises(ParamsError, match="connect.aligned_constant_pull = 1 .*type bool"):
        parse_section(ConnectSettings, {"aligned_constant_pull": 1}, "connect")
