"""The tracking server may be down. Stages stop before compute (``tracking.when_unreachable:
fail``, the default) or record offline (``offline``); ``geodesic sync`` then uploads the offline
runs to a real ``mlflow server`` once it is back: every run, its nesting, params, tags, metric
histories and artifacts, once. An interrupted sync resumes without duplicates."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Metric, ViewType
from mlflow.tracking import MlflowClient

from geodesic.tracking import sync as tracking_sync
from geodesic.tracking.sync import sync
from pipelines.__main__ import main
from pipelines.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def run(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def make_project(folder: Path, tracking: dict | None) -> tuple[Path, dict, str]:
    """A copy of the stages' inputs with tiny training settings, whose MLFLOW_TRACKING_URI names
    a free port on 127.0.0.1 where no server listens (yet)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["widths"] = [16]
    params["train"].update(epochs=2, seeds=[0, 1])
    if tracking is None:
        del params["tracking"]
    else:
        params["tracking"] = tracking
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEODESIC_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=uri)
    return folder, env, uri


@pytest.mark.parametrize("tracking", [None, {"when_unreachable": "fail"}],
                         ids=["default", "fail"])
def test_an_unreachable_server_stops_the_stage_before_compute(tmp_path, tracking):
    cwd, env, uri = make_project(tmp_path, tracking)
    result = run(cwd, env, "stages.prepare")
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"MLflow tracking server {uri} does not answer" in result.stderr
    assert "unset MLFLOW_TRACKING_URI" in result.stderr
    assert "tracking.when_unreachable: offline" in result.stderr
    assert not (cwd / "data/prepared").exists() and not (cwd / "mlruns-offline").exists()


def all_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


def artifact_files(client: MlflowClient, run_id: str, folder: Path) -> dict[str, bytes]:
    if not client.list_artifacts(run_id):
        return {}
    local = Path(client.download_artifacts(run_id, "", str(folder)))
    return {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*")
            if p.is_file()}


def check_copy(offline: MlflowClient, remote: MlflowClient, run, copies: dict, tmp: Path):
    """The remote copy of offline ``run`` holds the same record, nesting remapped."""
    copy = remote.get_run(copies[run.info.run_id])
    assert remote.get_experiment(copy.info.experiment_id).name == offline.get_experiment(
        run.info.experiment_id).name
    assert (copy.info.run_name, copy.info.status, copy.info.start_time, copy.info.end_time) == (
        run.info.run_name, run.info.status, run.info.start_time, run.info.end_time)
    assert copy.data.params == run.data.params
    expected = {k: v for k, v in run.data.tags.items() if k != "synced_run_id"}
    expected["offline_run_id"] = run.info.run_id
    if "mlflow.parentRunId" in expected:
        expected["mlflow.parentRunId"] = copies[expected["mlflow.parentRunId"]]
    assert {k: v for k, v in copy.data.tags.items() if k in expected} == expected
    assert copy.data.metrics.keys() == run.data.metrics.keys()
    for key in run.data.metrics:
        history = [(m.step, m.value, m.timestamp) for m in offline.get_metric_history(
            run.info.run_id, key)]
        assert [(m.step, m.value, m.timestamp) for m in remote.get_metric_history(
            copy.info.run_id, key)] == history, key
    assert artifact_files(remote, copy.info.run_id, tmp / "remote" / copy.info.run_id) == \
        artifact_files(offline, run.info.run_id, tmp / "offline" / run.info.run_id)


def prepared_data(cwd: Path) -> None:
    """What the prepare stage writes (here without its MLflow run, to keep the test short)."""
    from geodesic.common.data import load_dataset, save_dataset
    from geodesic.params import load_params
    d = load_params(cwd / "params.yaml").data
    save_dataset(load_dataset(d.name, cwd / d.root, d.val_fraction, d.seed),
                 cwd / "data/prepared/dataset.safetensors")


def test_stages_record_offline_then_sync_uploads_every_run_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "project").mkdir()
    cwd, env, uri = make_project(tmp_path / "project", {"when_unreachable": "offline"})
    store = cwd / "mlruns-offline"
    prepared_data(cwd)
    result = run(cwd, env, "stages.train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"MLflow tracking server {uri} does not answer: recording offline in {store}; "
            "upload with `geodesic sync`") in result.stderr
    assert (cwd / "models/seed1.safetensors").exists()
    offline = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = all_runs(offline)
    assert sorted(r.info.run_name for r in runs) == ["seed0", "seed1", "train digits_mlp cpu"]
    assert all(r.data.tags["intended_tracking_uri"] == uri for r in runs)
    assert (store / "mlartifacts" / "train").is_dir()

    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port",
         uri.rsplit(":", 1)[1], "--workers", "1"], cwd=tmp_path,
        env=dict(env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"{uri}/health", server, timeout=120)
        remote = MlflowClient(uri)
        remote.create_experiment("train")  # experiments are found by name, or created
        result = run(cwd, env, "pipelines", "sync")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert [line[:5] for line in lines[:3]] == ["[1/3]", "[2/3]", "[3/3]"], lines
        assert lines[-1].startswith(f"sync to {uri}: 3 runs uploaded, 0 uploaded before, "
                                    "0 skipped; not copied (the model registry is not synced")
        assert "base-digits version 1, base-digits version 2, logged model m-" in lines[-1]
        runs = all_runs(offline)
        copies = {r.info.run_id: r.data.tags["synced_run_id"] for r in runs}
        for offline_run in runs:
            check_copy(offline, remote, offline_run, copies, tmp_path)
        seeds = [remote.get_run(copies[r.info.run_id]) for r in runs if "seed" in r.info.run_name]
        train = next(r for r in runs if r.data.tags.get("stage") == "train")
        assert {s.data.tags["mlflow.parentRunId"] for s in seeds} == {copies[train.info.run_id]}
        assert [m.step for m in remote.get_metric_history(seeds[0].info.run_id,
                                                          "val_acc")] == [1, 2]

        for key, value in env.items():  # a second sync, in this process (quicker)
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        assert main(["-C", str(cwd), "sync"]) == 0
        assert capsys.readouterr().out == (f"sync to {uri}: 0 runs uploaded, 3 uploaded before, "
                                           "0 skipped\n")
        assert len(all_runs(remote)) == 3
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_an_interrupted_sync_resumes_without_duplicates(tmp_path, monkeypatch):
    """In process, between two SQLite stores: a copy that stopped half-way is made again;
    histories longer than one batch; a run still RUNNING waits for --include-running."""
    monkeypatch.chdir(tmp_path)
    source, target = f"sqlite:///{tmp_path / 'offline.db'}", f"sqlite:///{tmp_path / 'remote.db'}"
    src = MlflowClient(source)
    exp = src.create_experiment("demo", artifact_location=(tmp_path / "art").as_uri())
    parent = src.create_run(exp, run_name="stage").info.run_id
    child = src.create_run(exp, run_name="method",
                           tags={"mlflow.parentRunId": parent}).info.run_id
    history = [Metric("loss", 1.0 / (i + 1), 1000 + i, i) for i in range(2500)]
    for start in range(0, 2500, 1000):
        src.log_batch(child, metrics=history[start:start + 1000])
    (tmp_path / "note.txt").write_text("checkpoint")
    src.log_artifact(child, str(tmp_path / "note.txt"), "checkpoints")
    for run_id in (parent, child):
        src.set_terminated(run_id)
    killed = src.create_run(exp, run_name="killed").info.run_id  # left RUNNING

    copy_artifacts = tracking_sync._copy_artifacts

    def interrupted(source_client, target_client, run_id, copy):
        if run_id == child:
            raise KeyboardInterrupt
        return copy_artifacts(source_client, target_client, run_id, copy)

    monkeypatch.setattr(tracking_sync, "_copy_artifacts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sync(source, target, tmp_path, log=lambda line: None)
    monkeypatch.setattr(tracking_sync, "_copy_artifacts", copy_artifacts)
    sizes = []
    log_batch = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, metrics=(), **kw: (
        sizes.append(len(metrics)), log_batch(self, run_id, metrics=metrics, **kw))[1])

    report = sync(source, target, tmp_path, log=lambda line: None)
    assert (report.already, list(report.uploaded), list(report.skipped)) == (1, [child], [killed])
    assert max(sizes) == 1000 and sum(sizes) == 2500
    dst = MlflowClient(target)
    [remote_exp] = [e.experiment_id for e in dst.search_experiments() if e.name == "demo"]
    active = dst.search_runs([remote_exp])
    assert sorted(r.info.run_name for r in active) == ["method", "stage"]
    assert len(dst.search_runs([remote_exp], run_view_type=ViewType.DELETED_ONLY)) == 1
    method = next(r for r in active if r.info.run_name == "method")
    assert method.data.tags["mlflow.parentRunId"] == src.get_run(parent).data.tags[
        "synced_run_id"]
    assert [m.value for m in dst.get_metric_history(method.info.run_id, "loss")] == [
        m.value for m in history]
    assert [a.path for a in dst.list_artifacts(method.info.run_id, "checkpoints")] == [
        "checkpoints/note.txt"]

    report = sync(source, target, tmp_path, include_running=True, log=lambda line: None)
    assert list(report.uploaded) == [killed] and report.already == 2
    assert dst.get_run(report.uploaded[killed]).info.status == "RUNNING"
    assert sync(source, target, tmp_path, log=lambda line: None).uploaded == {}


def test_only_the_tracking_modules_import_mlflow():
    importers = {path.relative_to(ROOT).as_posix()
                 for folder in ("geodesic", "stages", "pipelines")
                 for path in (ROOT / folder).rglob("*.py")
                 if re.search(r"^\s*(import|from) mlflow\b", path.read_text(), re.M)}
    assert importers == {"geodesic/tracking/__init__.py", "geodesic/tracking/store.py",
                         "geodesic/tracking/sync.py"}
