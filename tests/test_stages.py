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


TIMING = ("seconds", "wall_seconds", "cpu_seconds")


def strip_timing(obj):
    """A metrics document without its wall-clock and CPU times (the one thing a rerun changes)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    return obj


def kill_when(proc: subprocess.Popen, ready, jitter: float, timeout: float = 600) -> None:
    """SIGKILL ``proc`` at a random moment: a uniform 0..``jitter`` seconds after ``ready()``
    first holds (polled every 20 ms); the process must still be running then."""
    import random
    import signal
    import time

    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the stage ended before the moment to kill it came"
        assert time.time() < deadline, "the moment to kill the stage never came"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, jitter))
    assert proc.poll() is None, "the stage ended before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def kill_and_rerun(stage: str, cwd: Path, env: dict, ready, jitter: float, metrics: str,
                   killed=lambda: None) -> subprocess.CompletedProcess:
    """Start ``python -m stages.<stage>`` in ``cwd``, SIGKILL it (:func:`kill_when`) before it
    wrote ``metrics``, call ``killed()`` (checks of what the kill left), run the stage again to
    the end; returns the rerun."""
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, ready, jitter)
    assert not (cwd / metrics).exists()
    killed()
    result = run_stage(stage, cwd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def copy_inputs(source: Path, dest: Path, items=("params.yaml", "data", "models")) -> Path:
    """The stage inputs ``items`` of the project at ``source`` copied to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in items:
        if (source / item).exists():
            (shutil.copytree if (source / item).is_dir() else shutil.copy)(source / item,
                                                                          dest / item)
    return dest


def test_train_stage_killed_with_sigkill_resumes_to_the_same_metrics(project, tmp_path_factory):
    cwd, env = project
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params["train"]["epochs"] = 8
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage("prepare", cwd, env).returncode == 0
    reference = copy_inputs(cwd, tmp_path_factory.mktemp("reference"))
    assert run_stage("train", reference, env).returncode == 0

    result = kill_and_rerun(
        "train", cwd, env, lambda: bool(list(cwd.glob("checkpoints/train/*/seed0/train-state.pt"))),
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
    monkeypatch.setattr(common, "code_hash", lambda: "an edited geodesic/train.py")
    assert folder() != here
    with pytest.raises(FileNotFoundError, match="seed1: an input of the stage is missing"):
        common.checkpoint_dir("train", params, ("train",), (Path("seed1"),))
