"""Stage ``hybrid`` end to end on the digits default with tiny budgets: metrics, plots, paths and
MLflow runs."""
import csv

import pytest
from mlflow.tracking import MlflowClient

from geodesic.core.io import read_json
from geodesic.params import parse_params
from stages.hybrid import hybrid_stage
from stages.prepare import prepare

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"levels": [0.5, 0.8], "steps_per_level": 5, "settle_steps": 2, "cg_iters": 2,
        "metric_batch": 32, "memory_per_class": 3, "base_epochs": 2, "replay_batch": 8,
        "eval_every": 3, "checkpoint_every": 3}
METHODS = ["geodesic", "prune_finetune", "finetune_prune_finetune"]


def test_digits_stage_writes_metrics_plots_paths_and_mlflow_runs(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = parse_params({"model": {"name": "mlp", "widths": [16]}, "hybrid": TINY})
    prepare(params)
    hybrid_stage(params)

    doc = read_json(tmp_path / "metrics" / "hybrid.json")
    assert (doc["scenario"], doc["old_tasks"], doc["new_task"]) == ("class-il", [0, 1, 2, 3], 4)
    assert doc["base"]["old_acc"] > 0.5 and doc["base"]["sparsity"] == 0
    assert list(doc["methods"]) == METHODS
    for rows in doc["methods"].values():
        assert list(rows) == ["0.5", "0.8"]
        for level, row in rows.items():
            assert row["sparsity"] == pytest.approx(float(level), abs=1e-3)
            assert 0 <= row["old_acc"] <= 1 and 0 <= row["new_acc"] <= 1
    evals = {m: doc["methods"][m]["0.8"]["grad_evals"] for m in METHODS}
    assert all(evals["geodesic"] - 2 < e <= evals["geodesic"] for e in evals.values())
    headline = read_json(tmp_path / "metrics" / "hybrid_headline.json")
    assert headline["geodesic"] == doc["methods"]["geodesic"]["0.8"]["acc"]
    assert set(headline) == {"geodesic", "best_baseline", "margin"}

    with open(tmp_path / "plots" / "hybrid.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["sparsity"] for r in table] == ["0.5", "0.8"]
    assert float(table[1]["geodesic.new_acc"]) == pytest.approx(
        doc["methods"]["geodesic"]["0.8"]["new_acc"], abs=1e-6)
    assert (tmp_path / "plots" / "hybrid.png").stat().st_size > 0
    assert (tmp_path / "paths" / "hybrid" / "geodesic" / "records.json").exists()
    assert not (tmp_path / "paths" / "hybrid" / "geodesic" / "checkpoints").exists()

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("hybrid").experiment_id])
    parent = [r for r in runs if r.data.tags.get("stage") == "hybrid"]
    assert len(parent) == 1
    children = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == {"base", *METHODS}
    geodesic = children["geodesic"]
    assert geodesic.data.metrics["new_acc/0.8"] == pytest.approx(
        doc["methods"]["geodesic"]["0.8"]["new_acc"])
    assert len(client.get_metric_history(geodesic.info.run_id, "val4_acc")) >= 2
    assert client.list_artifacts(geodesic.info.run_id, "checkpoints")
    results = [a.path for a in client.list_artifacts(parent[0].info.run_id, "results")]
    assert {"results/hybrid.json", "results/hybrid.png", "results/hybrid.csv"} <= set(results)
    assert parent[0].data.metrics["geodesic.acc.0.8"] == pytest.approx(
        doc["methods"]["geodesic"]["0.8"]["acc"])
