"""Stage ``continual`` end to end with tiny budgets: digits, and MNIST (split, permuted) and
CIFAR-100 (10-task split) from test-written files, switched by params alone."""
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from geodesic.continual.report import read_csv
from geodesic.core.io import read_json
from geodesic.core.settings import ParamsError
from geodesic.params import parse_params
from stages.continual import continual_stage
from stages.prepare import prepare
from tests.helpers.raw_files import write_cifar100, write_noise_mnist

METHODS = ["geodesic", "finetune", "ewc", "si", "lwf", "replay", "derpp"]
TINY = {"budget": 24, "batch_size": 16, "memory_per_class": 2, "cg_iters": 2, "stop_every": 8,
        "eval_every": 8, "checkpoint_every": 2, "fisher_samples": 16, "replay_batch": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def run_stage(tmp_path, monkeypatch, tracking_uri, data, continual, model=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    params = parse_params({"data": data, "model": model or {"name": "mlp", "widths": [16]},
                           "continual": {**TINY, **continual}})
    prepare(params)
    continual_stage(params)
    return read_json(tmp_path / "metrics" / "continual.json")


def check_document(doc, benchmark, n_tasks, scenarios=("task-il", "class-il"), methods=METHODS):
    assert (doc["benchmark"], doc["n_tasks"]) == (benchmark, n_tasks)
    assert list(doc["scenarios"]) == list(scenarios)
    for block in doc["scenarios"].values():
        assert list(block["methods"]) == list(methods)
        for entry in block["methods"].values():
            assert {"acc", "bwt", "forgetting", "matrix", "grad_evals", "seconds"} <= set(entry)
            assert len(entry["matrix"]) == n_tasks
            assert all(len(row) == n_tasks and all(0 <= a <= 1 for a in row)
                       for row in entry["matrix"])
            assert 0 < entry["grad_evals"] <= n_tasks * TINY["budget"] + 2 * 16 * n_tasks


def test_digits_stage_writes_metrics_plots_and_mlflow_runs(tmp_path, monkeypatch, tracking_uri):
    doc = run_stage(tmp_path, monkeypatch, tracking_uri, {"name": "digits"}, {})
    check_document(doc, "split", 5)
    rows = read_csv(tmp_path / "plots" / "continual_matrix.csv")
    assert len(rows) == 2 * len(METHODS) * 25
    assert {r["scenario"] for r in rows} == {"task-il", "class-il"}
    for scenario in ("task-il", "class-il"):
        assert (tmp_path / "plots" / "continual" / f"matrix_{scenario}.png").stat().st_size > 0
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("continual")
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("stage") == "continual"]
    assert len(parent) == 1
    children = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == {f"{s}/{m}" for s in ("task-il", "class-il") for m in METHODS}
    geodesic = children["class-il/geodesic"]
    assert geodesic.data.metrics["acc"] == pytest.approx(
        doc["scenarios"]["class-il"]["methods"]["geodesic"]["acc"])
    history = client.get_metric_history(geodesic.info.run_id, "functional_step")
    assert len(history) > 1 and len({m.step for m in history}) == len(history)
    checkpoints = [a.path for a in client.list_artifacts(geodesic.info.run_id, "checkpoints")]
    assert len(checkpoints) >= 4
    results = [a.path for a in client.list_artifacts(parent[0].info.run_id, "results")]
    assert "results/continual.json" in results
    figures = parent[0].data.metrics
    for scenario in ("task-il", "class-il"):  # each method's network after the last task
        version = client.get_model_version_by_alias("continual-geodesic", scenario)
        assert version.tags["params_hash"] == parent[0].data.tags["params_hash"]
    for scenario in ("task-il", "class-il"):
        for method in METHODS:
            entry = doc["scenarios"][scenario]["methods"][method]
            assert figures[f"{scenario}.{method}.acc"] == pytest.approx(entry["acc"])
            line = client.get_metric_history(parent[0].info.run_id,
                                              f"{scenario}.{method}.acc_seen")
            seen = sorted((m.step, m.value) for m in line)
            assert [t for t, _ in seen] == list(range(5))
            assert seen[-1][1] == pytest.approx(entry["acc"])  # all tasks seen: ACC
            assert seen[0][1] == pytest.approx(entry["matrix"][0][0])


def test_split_needs_a_divisor_of_the_classes(tmp_path, monkeypatch, tracking_uri):
    with pytest.raises(ParamsError, match="continual.n_tasks"):
        run_stage(tmp_path, monkeypatch, tracking_uri, {"name": "digits"}, {"n_tasks": 3})


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["split", "permuted"])
def test_mnist_by_params_alone(tmp_path, monkeypatch, offline, tracking_uri, benchmark):
    write_noise_mnist(tmp_path / "raw", np.random.default_rng(0))
    doc = run_stage(tmp_path, monkeypatch, tracking_uri,
                    {"name": "mnist", "root": str(tmp_path / "raw"), "val_fraction": 0.2},
                    {"benchmark": benchmark, "n_tasks": 5 if benchmark == "split" else 3})
    check_document(doc, benchmark, 5 if benchmark == "split" else 3)


@pytest.mark.slow
def test_cifar100_ten_task_split_by_params_alone(tmp_path, monkeypatch, offline, tracking_uri):
    write_cifar100(tmp_path / "raw", np.random.default_rng(0), monkeypatch)
    doc = run_stage(tmp_path, monkeypatch, tracking_uri,
                    {"name": "cifar100", "root": str(tmp_path / "raw"), "val_fraction": 0.2},
                    {"n_tasks": 10})
    check_document(doc, "split", 10)


@pytest.mark.slow
def test_cifar100_with_a_batchnorm_vgg(tmp_path, monkeypatch, offline, tracking_uri):
    """The geodesic and EWC (per-example Fisher) on VGG11-BN: conv nets and BatchNorm run."""
    write_cifar100(tmp_path / "raw", np.random.default_rng(0), monkeypatch)
    doc = run_stage(tmp_path, monkeypatch, tracking_uri,
                    {"name": "cifar100", "root": str(tmp_path / "raw"), "val_fraction": 0.2},
                    {"n_tasks": 10, "scenarios": ["class-il"], "baselines": ["ewc"],
                     "budget": 6, "batch_size": 8, "metric_batch": 8, "fisher_samples": 4,
                     "checkpoint_every": 100}, {"name": "vgg11_bn"})
    check_document(doc, "split", 10, ["class-il"], ["geodesic", "ewc"])
