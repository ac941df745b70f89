"""The figures the stages hand to MLflow and DVC: per-method headline figures and histories,
and the compact metrics files that keep `dvc metrics show` narrow."""
import pytest

from geodesic.headline import compact, continual_headline, sparsify_headline

SPARSIFY = {"dense": {"test_acc": 0.97},
            "methods": {m: {"0.5": {"test_acc": a, "sparsity": 0.5, "grad_evals": 10.0},
                            "0.9": {"test_acc": b, "sparsity": 0.9001, "grad_evals": 30.0}}
                        for m, a, b in (("geodesic", 0.96, 0.95), ("geodesic_task", 0.96, 0.99),
                                        ("imp", 0.97, 0.93), ("magnitude", 0.9, 0.5))}}


def test_sparsify_figures_and_accuracy_against_sparsity_lines():
    figures, histories = sparsify_headline(SPARSIFY)
    assert figures["geodesic.test_acc.0.9"] == 0.95 and figures["imp.grad_evals"] == 30.0
    assert figures["dense.test_acc"] == 0.97
    assert histories["imp.test_acc"] == [(500, 0.97), (900, 0.93)]


def test_continual_accuracy_over_the_tasks_seen_so_far():
    entry = {"acc": 0.7, "forgetting": 0.2, "grad_evals": 9,
             "matrix": [[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.9]]}
    figures, histories = continual_headline({"scenarios": {"class-il": {"methods": {
        "ewc": entry}}}})
    assert figures["class-il.ewc.acc"] == 0.7
    assert histories["class-il.ewc.acc_seen"] == [(0, 0.9), (1, 0.7), (2, pytest.approx(0.7))]


def test_the_compact_file_compares_the_geodesic_with_the_best_baseline_only():
    # geodesic_task is ours, not a baseline: the best baseline is imp's 0.93
    assert compact("sparsify", SPARSIFY) == {"geodesic": 0.95, "best_baseline": 0.93,
                                             "margin": pytest.approx(0.02)}
    connect = {"methods": {"geodesic": {"min_acc": 0.9}, "bezier": {"min_acc": 0.92},
                           "linear": {"min_acc": 0.5}}}
    assert compact("connect", connect)["margin"] == pytest.approx(-0.02)
    assert compact("train", {"test_acc_mean": 0.9, "test_acc_min": 0.8, "seeds": {}}) == {
        "test_acc_mean": 0.9, "test_acc_min": 0.8}
