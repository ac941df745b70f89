"""Stage ``sparsify`` end to end on test-written MNIST (MLP) and CIFAR-10 (VGG11) files, switched
by params alone: prepare -> train -> sparsify with tiny limits, then the outputs and MLflow runs."""
import json

import numpy as np
import pytest
import torch
import yaml

from geodesic.core.io import load_tensors
from geodesic.params import load_params
from geodesic.sparsify.settings import BUDGETED, SPARSIFY_METHODS
from stages.prepare import prepare
from stages.sparsify import sparsify_stage
from stages.train import train_stage
from tests.helpers.raw_files import write_cifar10, write_noise_mnist

TINY = {"levels": [0.5, 0.9], "steps_per_level": 3, "settle_steps": 1, "metric_batch": 8,
        "cg_iters": 2, "eta": 0.05, "eval_every": 1, "checkpoint_every": 2, "finetune_batch": 8,
        "distill_batch": 8, "imp_batch": 8, "imp_rewind_epochs": 1}


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def run_pipeline(data, model, sparsify):
    params = {"data": {"root": "raw", "val_fraction": 0.25, **data}, "model": model,
              "train": {"seeds": [0, 1], "epochs": 1, "batch_size": 8},
              "sparsify": {**TINY, **sparsify}}
    with open("params.yaml", "w") as fh:
        yaml.safe_dump(params, fh)
    params = load_params("params.yaml")
    for stage in (prepare, train_stage, sparsify_stage):
        stage(params)
    return params, json.loads(open("metrics/sparsify.json").read())


def check_outputs(params, metrics, count):
    s = params.sparsify
    assert 0 <= metrics["dense"]["test_acc"] <= 1
    assert list(metrics["methods"]) == list(SPARSIFY_METHODS)
    geodesic = metrics["methods"]["geodesic"]
    for method, rows in metrics["methods"].items():
        assert list(rows) == ["0.5", "0.9"]
        for level, row in rows.items():
            assert set(row) == {"test_acc", "val_acc", "val_loss", "sparsity", "grad_evals",
                                "seconds"}
            assert abs(row["sparsity"] * count - float(level) * count) <= 1, (method, level)
            factor = s.imp_long_factor if method == "imp_long" else 1.0
            if method in BUDGETED:
                assert row["grad_evals"] <= factor * geodesic[level]["grad_evals"] + 1e-9
    assert geodesic["0.9"]["grad_evals"] > geodesic["0.5"]["grad_evals"] > 0
    header = open("plots/sparsify.csv").readline().strip().split(",")
    assert header == ["sparsity", *SPARSIFY_METHODS]
    assert open("plots/sparsify.png", "rb").read(4) == b"\x89PNG"
    state, meta = load_tensors("outputs/sparsify/geodesic.safetensors")
    assert meta["level"] == "0.9"
    assert (s.steps_per_level + s.settle_steps) * len(s.levels) >= json.load(
        open("paths/sparsify/geodesic/records.json"))[-1]["step"]


def check_mlflow(tmp_path):
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sparsify").experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "sparsify"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1
    assert sorted(r.data.tags["method"] for r in children) == sorted(SPARSIFY_METHODS)
    geo = next(r for r in children if r.data.tags["method"] == "geodesic")
    steps = [m.step for m in client.get_metric_history(geo.info.run_id, "step_norm")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    assert "test_acc/0.9" in geo.data.metrics
    folders = [a.path for a in client.list_artifacts(geo.info.run_id, "checkpoints")]
    assert "checkpoints/step-000002" in folders
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "sparsify.png" in artifacts
    # the stage's own run compares the methods: a figure per method and level, one
    # accuracy-against-sparsity line per method (step = sparsity in per mille)
    experiment = client.get_experiment_by_name("sparsify")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = parents[0]
    assert parent.info.run_name == "sparsify"  # params written by hand: no preset to name
    table = json.loads(open("metrics/sparsify.json").read())
    for method in SPARSIFY_METHODS:
        for level in ("0.5", "0.9"):
            assert parent.data.metrics[f"{method}.test_acc.{level}"] == pytest.approx(
                table["methods"][method][level]["test_acc"])
        assert parent.data.metrics[f"{method}.grad_evals"] == pytest.approx(
            table["methods"][method]["0.9"]["grad_evals"])
        version = client.get_model_version_by_alias(f"sparsify-{method}", "sparse-90")
        assert version.tags["params_hash"] == parent.data.tags["params_hash"]
        line = client.get_metric_history(parent.info.run_id, f"{method}.test_acc")
        assert sorted(m.step for m in line) == [
            round(1000 * table["methods"][method][lv]["sparsity"]) for lv in ("0.5", "0.9")]


def test_mnist_mlp_by_params_alone(project):
    write_noise_mnist(project / "raw", np.random.default_rng(0), (("train", 48), ("t10k", 20)))
    params, metrics = run_pipeline({"name": "mnist"}, {"name": "mlp", "widths": [16]}, {})
    check_outputs(params, metrics, 784 * 16 + 16 * 10)
    check_mlflow(project)
    records = json.load(open("paths/sparsify/geodesic/records.json"))
    sparsify_stage(params)  # same settings: the traversal resumes from its last checkpoint
    assert json.load(open("paths/sparsify/geodesic/records.json")) == records
    again = json.loads(open("metrics/sparsify.json").read())
    assert again["methods"]["geodesic"] == {
        k: {**v, "seconds": again["methods"]["geodesic"][k]["seconds"]}
        for k, v in metrics["methods"]["geodesic"].items()}
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    first, second = sorted(client.search_runs(
        [client.get_experiment_by_name("sparsify").experiment_id], "tags.stage = 'sparsify'"),
        key=lambda r: r.info.start_time)
    assert "resumed_from" not in first.data.tags
    assert second.data.tags["resumed_from"].startswith("checkpoints/sparsify/")
    assert second.data.metrics["geodesic.test_acc.0.9"] == first.data.metrics[
        "geodesic.test_acc.0.9"]  # the resumed run is as complete as the first


@pytest.mark.slow
def test_cifar10_vgg11_by_params_alone(project, monkeypatch):
    write_cifar10(project / "raw", np.random.default_rng(0), monkeypatch)
    params, metrics = run_pipeline(
        {"name": "cifar10", "train_limit": 24, "test_limit": 8}, {"name": "vgg11"},
        {"steps_per_level": 1, "metric_batch": 4, "cg_iters": 1, "finetune_batch": 4,
         "distill_batch": 4, "imp_batch": 4})
    convs = 3 * 3 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
    check_outputs(params, metrics, convs + 512 * 10)
    check_mlflow(project)
