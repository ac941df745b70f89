"""The connect stage end to end: prepare, train and connect from params alone, on digits and
on CIFAR-10 with VGG16 (test-written files in torchvision's layout)."""
import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from geodesic.params import load_params
from tests.helpers.raw_files import write_cifar10

METHODS = {"geodesic", "geodesic_aligned", "linear", "bezier", "aligned", "bezier_aligned"}
KEYS = {"min_acc", "mean_acc", "barrier", "length", "functional_length", "end_distance",
        "grad_evals", "seconds", "chord", "length_ratio", "length_ratio_w2", "align_seconds"}


pytestmark = pytest.mark.usefixtures("one_thread")


def run_pipeline(tmp_path, monkeypatch, params: dict):
    from stages.connect import connect_stage
    from stages.prepare import prepare
    from stages.train import train_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    loaded = load_params("params.yaml")
    for stage in (prepare, train_stage, connect_stage):
        stage(loaded)
    return json.loads((tmp_path / "metrics" / "connect.json").read_text())


def check_outputs(tmp_path, metrics):
    assert set(metrics["endpoints"]) >= {"w1_test_acc", "w2_test_acc"}
    assert set(metrics["methods"]) == METHODS
    for values in metrics["methods"].values():
        assert KEYS <= set(values)
    assert metrics["methods"]["linear"]["grad_evals"] == 0
    ends, methods = metrics["endpoints"], metrics["methods"]
    assert ends["distance_aligned"] < ends["distance_w2"]
    assert ends["align_objective"] > ends["align_identity_objective"]
    for name in ("aligned", "bezier_aligned"):  # pi(w2) computes w2's function
        assert methods[name]["end_acc"] == ends["w2_test_acc"]
    for name in ("aligned", "bezier_aligned", "geodesic_aligned"):
        assert methods[name]["chord"] == pytest.approx(ends["distance_aligned"], rel=1e-5)
        assert methods[name]["align_seconds"] == ends["align_seconds"] > 0
    assert methods["aligned"]["grad_evals"] == 0
    assert methods["bezier_aligned"]["grad_evals"] == methods["bezier"]["grad_evals"]
    assert methods["linear"]["chord"] == pytest.approx(ends["distance_w2"], rel=1e-5)
    perms = load_file(tmp_path / "paths" / "connect" / "alignment.safetensors")
    assert all(torch.equal(p.sort().values, torch.arange(len(p))) for p in perms.values())
    with open(tmp_path / "plots" / "connect.csv") as fh:
        table = list(csv.DictReader(fh))
    for method in METHODS:
        positions = [float(r["position"]) for r in table if r["method"] == method]
        assert positions[0] == 0.0 and positions[-1] == pytest.approx(1.0)
        assert positions == sorted(positions)
    for name in ("paths.png", "plane.png"):
        assert (tmp_path / "plots" / "connect" / name).read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient()
    parent = client.search_runs([client.get_experiment_by_name("connect").experiment_id],
                                "tags.stage = 'connect'")[0]
    experiments = [e.experiment_id for e in client.search_experiments()]
    children = client.search_runs(experiments,
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {r.data.tags["method"] for r in children} == METHODS
    for method in METHODS:  # each path's midpoint network is registered
        version = client.get_model_version_by_alias(f"connect-{method}", "midpoint")
        assert version.tags["params_hash"] == parent.data.tags["params_hash"]
    for method in METHODS:  # the stage's own run compares the methods
        for quantity in ("min_acc", "barrier", "grad_evals"):
            assert parent.data.metrics[f"{method}.{quantity}"] == pytest.approx(
                metrics["methods"][method][quantity])
    geodesic = next(r for r in children if r.data.tags["method"] == "geodesic")
    history = client.get_metric_history(geodesic.info.run_id, "step_norm")
    assert len(history) == metrics["methods"]["geodesic"]["steps"]
    artifacts = {a.path for a in client.list_artifacts(geodesic.info.run_id, "checkpoints")}
    assert artifacts
    assert (tmp_path / "paths" / "connect" / "geodesic_aligned" / "final.safetensors").exists()


def test_the_stage_on_digits_writes_every_output(tmp_path, monkeypatch):
    params = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "widths": [16]},
        "train": {"seeds": [0, 1], "epochs": 3},
        "connect": {"eta": 1.0, "max_steps": 8, "cg_iters": 3, "eval_every": 2,
                    "checkpoint_every": 4, "anchor": 3.0, "bezier_steps": 10,
                    "points": 5, "plane_grid": 3},
    }
    metrics = run_pipeline(tmp_path, monkeypatch, params)
    check_outputs(tmp_path, metrics)


class NaNOnce:
    """A solver whose ``at``-th step comes out NaN once, as a numerical blow-up would."""

    def __init__(self, solver, at: int):
        self.solver, self.at, self.calls = solver, at, 0

    def __call__(self, local, v, eta, beta=1.0):
        self.calls += 1
        step = self.solver(local, v, eta, beta)
        if self.calls == self.at:
            return dataclasses.replace(step, theta=torch.full_like(step.theta, float("nan")))
        return step


def test_a_nan_step_inside_the_stage_halves_eta_and_its_run_logs_it(tmp_path, monkeypatch):
    """Step 3 of the geodesic is NaN: the traversal halves eta, retries, finishes its steps,
    and the method's MLflow run holds ``eta_halvings`` and ``eta`` at every step."""
    import geodesic.core.traverse
    build_solver = geodesic.core.traverse.build_solver
    monkeypatch.setattr(geodesic.core.traverse, "build_solver",
                        lambda settings: NaNOnce(build_solver(settings), at=3))
    params = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "widths": [16]},
        "train": {"seeds": [0, 1], "epochs": 1},
        "connect": {"eta": 0.5, "max_steps": 6, "cg_iters": 3, "eval_every": 3,
                    "checkpoint_every": 3, "baselines": [], "geodesics": ["geodesic"],
                    "plane_grid": 0},
    }
    metrics = run_pipeline(tmp_path, monkeypatch, params)
    assert metrics["methods"]["geodesic"]["steps"] == 6
    client = MlflowClient()
    [geodesic] = client.search_runs([client.get_experiment_by_name("connect").experiment_id],
                                    "tags.method = 'geodesic'")
    halvings = client.get_metric_history(geodesic.info.run_id, "eta_halvings")
    assert [(m.step, m.value) for m in halvings] == [(1, 0), (2, 0), (3, 1), (4, 0), (5, 0),
                                                     (6, 0)]
    eta = client.get_metric_history(geodesic.info.run_id, "eta")
    assert [m.value for m in eta] == [0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert all(math.isfinite(m.value) for m in client.get_metric_history(
        geodesic.info.run_id, "step_norm"))


@pytest.mark.slow
def test_the_stage_runs_cifar10_with_vgg16_by_params_alone(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "raw", np.random.default_rng(0), monkeypatch)
    params = {
        "data": {"name": "cifar10", "root": str(tmp_path / "raw"), "val_fraction": 0.2},
        "model": {"name": "vgg16"},
        "train": {"seeds": [0, 1], "epochs": 1, "batch_size": 32, "lr": 0.01},
        "connect": {"eta": 0.5, "max_steps": 2, "cg_iters": 2, "metric_batch": 8,
                    "eval_every": 1, "bezier_steps": 2, "bezier_batch": 8, "points": 3,
                    "bn_inputs": 16, "plane_grid": 2},
    }
    metrics = run_pipeline(tmp_path, monkeypatch, params)
    check_outputs(tmp_path, metrics)
    assert metrics["methods"]["bezier"]["grad_evals"] == 2
