"""The first DVC stages end to end on the digits default, each run as its own process."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_stage(name, cwd, env):
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def project(tmp_path):
    """A copy of the stages' inputs in tmp_path with tiny training settings."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=2, seeds=[0, 1])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path, env


def test_prepare_then_train_write_outputs_and_mlflow_runs(project):
    cwd, env = project
    for stage in ("prepare", "train"):
        result = run_stage(stage, cwd, env)
        assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((cwd / "data/prepared/summary.json").read_text())
    assert summary["num_classes"] == 10 and summary["train"] + summary["val"] + summary["test"] == 1797
    metrics = json.loads((cwd / "metrics/train.json").read_text())
    assert set(metrics["seeds"]) == {"0", "1"}
    assert all(0.5 < r["test_acc"] <= 1.0 for r in metrics["seeds"].values())
    assert (cwd / "models/seed0.safetensors").exists() and (cwd / "models/seed1.safetensors").exists()

    import mlflow
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    stage_runs = [r for r in runs if r.data.tags.get("stage") == "train"]
    seed_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(stage_runs) == 1 and len(seed_runs) == 2
    assert stage_runs[0].data.params["train.epochs"] == "2"
    assert len(stage_runs[0].data.tags["params_hash"]) == 16
    history = client.get_metric_history(seed_runs[0].info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2]


def test_bad_params_exit_before_compute_with_the_key_named(project):
    cwd, env = project
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params["train"]["lr"] = -0.1
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage("train", cwd, env)
    assert result.returncode == 2
    assert "train.lr = -0.1" in result.stderr and "> 0.0" in result.stderr


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k != "seconds"}
    return obj


def test_train_stage_killed_with_sigkill_resumes_to_the_same_metrics(project, tmp_path_factory):
    import random
    import signal
    import time

    cwd, env = project
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params["train"]["epochs"] = 8
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage("prepare", cwd, env).returncode == 0
    reference = tmp_path_factory.mktemp("reference")
    for item in ("params.yaml", "data"):
        (shutil.copytree if (cwd / item).is_dir() else shutil.copy)(cwd / item, reference / item)
    assert run_stage("train", reference, env).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(cwd.glob("checkpoints/train/*/seed0/train-state.pt")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cwd / "metrics/train.json").exists()
    result = run_stage("train", cwd, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming training" in result.stderr
    resumed = json.loads((cwd / "metrics/train.json").read_text())
    uninterrupted = json.loads((reference / "metrics/train.json").read_text())
    assert strip_timing(resumed) == strip_timing(uninterrupted)

