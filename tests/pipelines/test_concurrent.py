"""Concurrent runs on one machine do not collide: processes opening one new MLflow store at the
same moment, and (slow) two sweeps whose points run at the same time on one project."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers.mlflow_runs import children
from tests.helpers.projects import GIT_IDENTITY, copy_project

ROOT = Path(__file__).resolve().parents[2]
AT_ONCE = """
import pathlib, sys, time
import mlflow
from geodesic import tracking
uri, me, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])

def together(phase):            # wait until every process is ready for this phase
    pathlib.Path(f"{me}.{phase}").touch()
    while not pathlib.Path(f"{go}.{phase}").exists():
        time.sleep(0.002)

together("store")
mlflow.set_tracking_uri(uri)
tracking.open_store(uri)
together("experiment")
print(tracking.experiment_id("race", pathlib.Path(me).parent / "mlartifacts"))
"""


def test_processes_opening_a_new_store_at_once_all_get_it_and_one_experiment(tmp_path):
    """Four processes open one new store at the same moment, then look up (and, finding none,
    create) one experiment at the same moment. Without the lock they all migrate the new
    database and most fail (``table runs already exists``); without the second look, those
    that lose the race to create the experiment fail."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    go, ready = tmp_path / "go", [tmp_path / f"ready{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE, uri, str(me), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in ready]
    deadline = time.time() + 300
    for phase in ("store", "experiment"):
        while not all(Path(f"{me}.{phase}").exists() for me in ready):
            assert time.time() < deadline, "the processes never got ready"
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.01)
        Path(f"{go}.{phase}").touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert [e.name for e in MlflowClient(uri).search_experiments()
            if e.name == "race"] == ["race"]


@pytest.fixture
def two_stage_project(tmp_path):
    """A tiny copy of this project whose pipeline is download -> prepare -> train (what a
    sweep point shares with another: the DVC cache and run cache, git, the MLflow store, the
    Prefect home), committed, with no MLflow store yet."""
    root = copy_project(tmp_path / "project")
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items()
                          if k in ("download", "prepare", "train")}
    pipeline.pop("plots", None)
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    env = dict(os.environ, **GIT_IDENTITY)
    subprocess.run(["git", "commit", "-qam", "download, prepare and train only"], cwd=root,
                   check=True, env=env)
    return root


@pytest.mark.slow
def test_two_sweeps_at_once_keep_their_points_apart(two_stage_project):
    """Two ``geodesic sweep`` processes started together (each its own temporary Prefect
    server on the project's Prefect home, one MLflow store, one DVC repository): both points
    complete, in their own DVC experiments, workspaces, checkpoint folders and MLflow runs."""
    root = two_stage_project
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "GEODESIC_TAGS", "GEODESIC_PARENT_RUN_ID",
                        "PREFECT_API_URL")}
    env.update(GIT_IDENTITY, PREFECT_HOME=str(root / ".prefect"), OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    rates = {"ca": 0.02, "cb": 0.1}
    logs = {sid: open(root.parent / f"{sid}.log", "w") for sid in rates}
    procs = {sid: subprocess.Popen([sys.executable, "-m", "pipelines", "-C", str(root), "sweep",
                                    "-S", f"train.lr={lr}", "--id", sid], cwd=root, env=env,
                                   stdout=logs[sid], stderr=subprocess.STDOUT)
             for sid, lr in rates.items()}
    seen: set[Path] = set()  # checkpoint folders of the train stage, inside each point's copy
    together = 0  # the most point workspaces (dvc exp run --temp copies) alive at one moment
    while any(p.poll() is None for p in procs.values()):
        together = max(together, len(list(root.glob(".dvc/tmp/exps/standalone/tmp*"))))
        seen |= {p.parents[1] for p in root.glob(
            ".dvc/tmp/exps/standalone/*/checkpoints/train/*/seed0/checkpoints/step-*.safetensors")}
        time.sleep(0.1)
    for sid, proc in procs.items():
        logs[sid].close()
        assert proc.returncode == 0, (root.parent / f"{sid}.log").read_text()[-4000:]
    assert together == 2  # the two points did run at the same time
    assert len(seen) == 2, seen  # two workspaces, each with its own checkpoint folder
    assert len({p.relative_to(root).parts[4] for p in seen}) == 2

    from pipelines.project import Project
    experiments = Project(root).experiments()
    points = {sid: experiments[f"{sid}-p0"] for sid in rates}
    for sid, lr in rates.items():
        assert points[sid]["params"]["train.lr"] == lr
        assert {"train.test_acc_mean", "train.seeds.0.test_acc",
                "train.seeds.1.test_acc"} <= set(points[sid]["metrics"])
    assert points["ca"]["metrics"] != points["cb"]["metrics"]
    assert points["ca"]["rev"] != points["cb"]["rev"]

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    pipeline = client.get_experiment_by_name("pipeline").experiment_id
    run_ids = set()
    for sid, lr in rates.items():
        [sweep_run] = client.search_runs([pipeline], f"tags.sweep_id = '{sid}' and "
                                                     "tags.flow = 'sweep'")
        [point] = children(client, sweep_run.info.run_id)
        assert point.info.run_name == f"{sid}-p0" and point.info.status == "FINISHED"
        assert point.data.tags["overrides"] == f"train.lr={lr}"
        assert point.data.metrics == pytest.approx(points[sid]["metrics"])
        stages = {r.data.tags["stage"]: r for r in children(client, point.info.run_id)}
        assert set(stages) == {"download", "prepare", "train"}
        assert stages["train"].data.params["train.lr"] == str(lr)
        seeds = children(client, stages["train"].info.run_id)
        tree = [sweep_run, point, *stages.values(), *seeds]
        assert len(seeds) == 2 and all(r.info.status == "FINISHED" for r in tree)
        assert all(r.data.tags["sweep_id"] == sid for r in tree)
        run_ids |= {r.info.run_id for r in tree}
    assert len(run_ids) == 2 * 7
    versions = client.search_model_versions("name = 'base-digits'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4]
    assert sorted(v.tags["overrides"] for v in versions) == sorted(
        [f"train.lr={lr}" for lr in rates.values()] * 2)
