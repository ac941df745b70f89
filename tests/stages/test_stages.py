"""The first DVC stages end to end on the digits default, each run as its own process."""
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.helpers.stage_processes import copy_inputs, kill_and_rerun, run_stage, strip_timing

ROOT = Path(__file__).resolve().parents[2]


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


def test_train_stage_killed_with_sigkill_resumes_to_the_same_metrics(project, tmp_path_factory):
    cwd, env = project
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params["train"]["epochs"] = 8
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage("prepare", cwd, env).returncode == 0
    reference = copy_inputs(cwd, tmp_path_factory.mktemp("reference"))
    assert run_stage("train", reference, env).returncode == 0

    result = kill_and_rerun(
        "train", cwd, env, lambda: bool(list(cwd.glob("checkpoints/train/*/seed0/checkpoints/step-*.safetensors"))),
        jitter=1.0, metrics="metrics/train.json")
    assert "resuming training" in result.stderr
    resumed = json.loads((cwd / "metrics/train.json").read_text())
    uninterrupted = json.loads((reference / "metrics/train.json").read_text())
    assert strip_timing(resumed) == strip_timing(uninterrupted)


def test_checkpoints_of_other_code_parameters_or_data_are_not_resumed(monkeypatch, tmp_path):
    """The checkpoint folder is named by the stage's parameters, the code and the content of
    its data inputs: a rerun after any of them changed starts afresh instead of finishing what
    other code or other data began."""
    import dataclasses

    from geodesic.params import load_params
    from stages import common
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "dataset").write_bytes(b"data")
    (tmp_path / "seed0").write_bytes(b"weights")
    inputs = (Path("prepared"), Path("seed0"))
    params = load_params(ROOT / "params.yaml")

    def folder(p=params):
        return common.checkpoint_dir("train", p, ("model", "train"), inputs)

    here = folder()
    assert here == folder() and here.parent == Path("checkpoints/train")
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, lr=0.07))
    assert folder(other) != here
    (tmp_path / "prepared" / "dataset").write_bytes(b"other data")
    assert folder() != here
    (tmp_path / "prepared" / "dataset").write_bytes(b"data")
    (tmp_path / "prepared" / "summary").write_bytes(b"")  # a file more
    assert folder() != here
    (tmp_path / "prepared" / "summary").unlink()
    (tmp_path / "seed0").write_bytes(b"retrained")
    assert folder() != here
    (tmp_path / "seed0").write_bytes(b"weights")
    assert folder() == here
    monkeypatch.setattr(common, "code_hash", lambda: "an edited geodesic/common/train.py")
    assert folder() != here
    with pytest.raises(FileNotFoundError, match="seed1: an input of the stage is missing"):
        common.checkpoint_dir("train", params, ("train",), (Path("seed1"),))
