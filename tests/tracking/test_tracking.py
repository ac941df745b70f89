"""MLflow as the record: run nesting and tags, per-step histories and checkpoints from the
traversal callback, and base networks in the model registry (a real SQLite store)."""
import json
import time
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from geodesic import tracking
from geodesic.common.models import build_model
from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import TowardTarget
from geodesic.core.traverse import traverse
from tests.conftest import tiny_mlp


class Marked(TowardTarget):
    """Reaches a milestone whose name MLflow would reject in a metric key, at step 5."""

    steps = 0

    def after_step(self, w):
        self.steps += 1
        return w, ["sparsity@0.5"] if self.steps == 5 else []


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.delenv("GEODESIC_TAGS", raising=False)
        mp.delenv("GEODESIC_PARENT_RUN_ID", raising=False)
        yield root, MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def test_runs_nest_pipeline_stage_method_with_tags(store, monkeypatch):
    root, client = store
    with tracking.pipeline_run("reproduce", root, tags={"flow": "reproduce"}) as pipeline:
        env = tracking.child_env(pipeline.info.run_id, {"sweep_id": "s1"})
    monkeypatch.setenv("GEODESIC_PARENT_RUN_ID", env["GEODESIC_PARENT_RUN_ID"])
    monkeypatch.setenv("GEODESIC_TAGS", env["GEODESIC_TAGS"])
    monkeypatch.setenv("DVC_EXP_NAME", "s1-p0")
    with tracking.stage_run("demo", {"demo": {"lr": 0.1}}) as stage:
        with tracking.method_run("seed0", {"seed": 0}) as method:
            pass
    stage, method = client.get_run(stage.info.run_id), client.get_run(method.info.run_id)
    pipeline = client.get_run(pipeline.info.run_id)
    assert client.get_experiment(pipeline.info.experiment_id).name == "pipeline"
    assert client.get_experiment(stage.info.experiment_id).name == "demo"
    assert method.info.experiment_id == stage.info.experiment_id  # not "Default"
    assert stage.data.tags["mlflow.parentRunId"] == pipeline.info.run_id
    assert method.data.tags["mlflow.parentRunId"] == stage.info.run_id
    assert stage.data.tags["stage"] == "demo"
    assert stage.data.tags["params_hash"] == tracking.params_hash({"demo": {"lr": 0.1}})
    assert len(stage.data.tags["git_commit"]) in (40, len("unknown"))
    for run in (stage, method):
        assert run.data.tags["sweep_id"] == "s1" and run.data.tags["dvc_exp_name"] == "s1-p0"
    assert stage.data.params == {"demo.lr": "0.1"} and method.data.params == {"seed": "0"}
    assert json.loads(env["GEODESIC_TAGS"]) == {"sweep_id": "s1"}


def test_traversal_callback_logs_every_step_and_every_checkpoint(store, tmp_path,
                                                                  one_thread_per_test):
    root, client = store
    model = tiny_mlp(0)
    metric = FunctionalMetric(model, torch.randn(20, 6, generator=torch.Generator()
                                                 .manual_seed(1)))
    w0 = metric.space.get(model)
    objective = Marked(w0 + 1.0, tol=1e-9)
    with tracking.stage_run("demo", {}):
        with tracking.method_run("cg") as run:
            callback = tracking.MLflowCallback(flush_every=3)
            path = traverse(model, objective, metric, ConjugateGradient(iters=4), eta=0.05,
                            max_steps=23, checkpoint_every=10, directory=tmp_path / "path",
                            callbacks=[callback])
    history = client.get_metric_history(run.info.run_id, "distance")
    assert [m.step for m in history] == list(range(1, 24))
    assert [m.value for m in history] == pytest.approx([r["distance"] for r in path.records])
    folders = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert folders == ["checkpoints/step-000010", "checkpoints/step-000020",
                       "checkpoints/step-000023"]
    [milestone] = client.get_metric_history(run.info.run_id, "distance/sparsity_0.5")
    assert milestone.step == 5 and milestone.value == pytest.approx(path.records[4]["distance"])
    files = [a.path for a in client.list_artifacts(run.info.run_id, folders[0])]
    assert files == ["checkpoints/step-000010/step-000010.safetensors",
                     "checkpoints/step-000010/step-000010.safetensors.sha256"]


def test_base_network_is_registered_with_signature_and_alias(store, monkeypatch):
    root, client = store
    model = build_model("mlp", (1, 8, 8), 10, [16])
    x = torch.randn(5, 1, 8, 8)
    with tracking.stage_run("train", {}):
        with tracking.method_run("seed0"):
            version = tracking.register_model(model, x[:3], "base-test", alias="mlp-seed0")
        monkeypatch.setenv("GEODESIC_TAGS", json.dumps({"sweep_id": "s9"}))
        with tracking.method_run("seed0-sweep"):
            swept = tracking.register_model(model, x[:3], "base-test", alias="mlp-seed0")
    assert str(client.get_model_version_by_alias("base-test", "mlp-seed0").version) == version
    assert client.get_model_version("base-test", swept).tags["sweep_id"] == "s9"
    loaded = mlflow.pytorch.load_model("models:/base-test@mlp-seed0")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))  # batch size differs from the example's
    info = mlflow.models.get_model_info("models:/base-test@mlp-seed0")
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]
    assert list(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 10]
    files = {p.relative_to(local).as_posix() for local in
             [Path(mlflow.artifacts.download_artifacts("models:/base-test@mlp-seed0"))]
             for p in local.rglob("*") if p.is_file()}
    assert "data/model.pt2" in files and not any(f.endswith((".pth", ".pkl")) for f in files)


def test_system_metrics_option_samples_the_stage_run(store, monkeypatch):
    root, client = store
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with tracking.stage_run("demo", {}) as run:
        time.sleep(1.5)
    logged = client.get_run(run.info.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in logged
    assert "system/system_memory_usage_megabytes" in logged


def test_stage_runs_are_named_by_stage_preset_and_what_sets_them_apart():
    assert tracking.run_name("sparsify", "mnist_real_mlp cpu", {}) == "sparsify mnist_real_mlp cpu"
    assert tracking.run_name("connect", "digits_mlp cpu", {
        "overrides": "connect.eta=0.5", "dvc_exp_name": "s-p0"}) == (
        "connect digits_mlp cpu [connect.eta=0.5]")
    assert tracking.run_name("train", "", {"dvc_exp_name": "exp-1"}) == "train [exp-1]"


def test_a_copied_project_reads_its_old_runs_and_writes_new_artifacts_into_the_copy(
        tmp_path, monkeypatch):
    import shutil
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GEODESIC_PARENT_RUN_ID", raising=False)
    monkeypatch.setattr(tracking, "git_commit", lambda root=None: "unknown")
    first, copy = tmp_path / "project", tmp_path / "moved" / "project"
    first.mkdir()
    monkeypatch.chdir(first)
    with tracking.stage_run("sparsify", {"a": 1}) as run:
        tracking.log_text("before the move", "note.txt")
    old_run = run.info.run_id
    mlflow.set_tracking_uri(None)
    shutil.copytree(first, copy)
    shutil.rmtree(first)  # nothing may still point at the old folder
    monkeypatch.chdir(copy)
    with tracking.stage_run("sparsify", {"a": 2}) as run:
        tracking.log_text("after the move", "note.txt")
    client = MlflowClient(tracking.sqlite_uri(copy))
    for run_id, text in ((old_run, "before the move"), (run.info.run_id, "after the move")):
        artifact_uri = client.get_run(run_id).info.artifact_uri
        assert artifact_uri.startswith(f"file://{copy}/mlartifacts/sparsify/")
        assert Path(client.download_artifacts(run_id, "note.txt", str(tmp_path))).read_text() \
            == text
    assert not first.exists()


def test_a_store_named_outside_the_project_is_never_relocated(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "git_commit", lambda root=None: "unknown")
    monkeypatch.delenv("GEODESIC_PARENT_RUN_ID", raising=False)
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.sqlite_uri(shared))
    for _ in range(2):  # the second open must not move the artifacts to shared/mlartifacts
        with tracking.stage_run("train", {"a": 1}) as run:
            tracking.log_text("x", "note.txt")
        assert run.info.artifact_uri.startswith(f"file://{project}/mlartifacts/train/")
    mlflow.set_tracking_uri(None)
