"""Per-seed metrics files summarised over seeds: the figures, the table and the plot."""
import pytest

from geodesic.core.settings import ParamsError
from pipelines.results import check_request, preset_overrides, seed_point
from pipelines.results_table import markdown, summarise, write_results


def connect_metrics(shift: float) -> dict:
    row = {"min_acc": 0.9 + shift, "mean_acc": 0.95, "barrier": 0.1, "val_min_acc": 0.91,
           "grad_evals": 500, "seconds": 2.0 + shift, "length": 3.0}
    return {"endpoints": {"w1_test_acc": 0.97, "w2_test_acc": 0.96 + shift},
            "methods": {"geodesic": row, "linear": {**row, "grad_evals": 0}}}


def test_mean_and_sample_std_over_seeds(tmp_path):
    doc = summarise("connect", "mnist_real_mlp", {0: connect_metrics(0.0),
                                                  1: connect_metrics(0.02),
                                                  2: connect_metrics(0.04)})
    entry = doc["summary"]["geodesic"]["min_acc"]
    assert entry["values"] == pytest.approx([0.9, 0.92, 0.94])
    assert entry["mean"] == pytest.approx(0.92) and entry["std"] == pytest.approx(0.02)
    assert doc["summary"]["endpoints"]["min_acc"]["values"] == pytest.approx([0.96, 0.97, 0.97])
    assert "length" not in doc["summary"]["geodesic"]
    table = markdown(doc)
    assert "| geodesic | 92.0 ± 2.0 | 95.0 ± 0.0 |" in table
    files = write_results(tmp_path, doc)
    assert [f.name for f in files] == ["connect.json", "connect.md", "connect.png"]


def test_sparsify_rows_are_method_at_level():
    row = {"test_acc": 0.9, "val_acc": 0.91, "grad_evals": 10, "seconds": 1.0, "sparsity": 0.9}
    metrics = {"dense": {"test_acc": 0.95, "val_acc": 0.96},
               "methods": {"geodesic": {"0.9": row, "0.98": row}}}
    doc = summarise("sparsify", "p", {0: metrics, 1: metrics})
    assert list(doc["summary"]) == ["dense", "geodesic@0.9", "geodesic@0.98"]
    assert doc["summary"]["geodesic@0.98"]["test_acc"]["std"] == 0.0


def test_hybrid_rows_are_the_base_and_method_at_level(tmp_path):
    row = {"acc": 0.9, "old_acc": 0.95, "new_acc": 0.7, "val_acc": 0.91, "grad_evals": 10,
           "seconds": 1.0, "sparsity": 0.9, "task_accs": [0.9] * 5}
    metrics = {"base": {**row, "acc": 0.8, "new_acc": 0.0, "grad_evals": 0},
               "methods": {"geodesic": {"0.8": row, "0.9": {**row, "acc": 0.92}}}}
    doc = summarise("hybrid", "p", {0: metrics, 1: metrics})
    assert list(doc["summary"]) == ["base", "geodesic@0.8", "geodesic@0.9"]
    assert doc["summary"]["geodesic@0.9"]["acc"]["mean"] == pytest.approx(0.92)
    assert "task_accs" not in doc["summary"]["geodesic@0.9"]
    assert "| geodesic@0.9 | 92.0 ± 0.0 | 95.0 ± 0.0 | 70.0 ± 0.0 |" in markdown(doc)
    assert write_results(tmp_path, doc)[-1].stat().st_size > 0


def test_seed_points_and_bad_requests():
    assert seed_point("connect", 2) == {"connect.seeds": [4, 5], "connect.seed": 2}
    assert seed_point("hybrid", 2) == {"hybrid.seed": 2}
    assert preset_overrides(["data=mnist_real", "model=mlp"]) == {"data": "mnist_real",
                                                                  "model": "mlp"}
    for bad in (["data"], ["data="], ["sparsify.eta=1"]):
        with pytest.raises(ParamsError):
            preset_overrides(bad)
    for app, seeds in (("prune", 3), ("sparsify", 1)):
        with pytest.raises(ParamsError):
            check_request(app, seeds)
