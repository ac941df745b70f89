"""Across machines, on one: a real ``prefect server start`` on 127.0.0.1 (a free port), a
process work pool, deployments that pull the project from git (``geodesic deploy``), and a
``prefect worker`` that runs a one-point sweep end to end into a shared MLflow store."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.servers import free_port
from tests.helpers.projects import GIT_IDENTITY, TINY, copy_project

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


class Services:
    """A Prefect server on 127.0.0.1, the processes started against it, their logs."""

    def __init__(self, tmp: Path, origin: Path):
        self.origin, self.logs, self.started = origin, tmp / "logs", []
        self.logs.mkdir()
        self.api = f"http://127.0.0.1:{free_port()}/api"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "GEODESIC_", "MLFLOW_"))}
        env.update(GIT_IDENTITY, PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=self.api,
                   PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]))
        self.env = env

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=self.origin,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def run(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", *args], cwd=self.origin, env=self.env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def healthy(self) -> bool:
        import httpx
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def trigger(self, deployment: str) -> str:
        out = self.run("prefect", "deployment", "run", deployment)
        return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)

    def wait_finished(self, flow_run: str, log: str) -> None:
        import httpx

        def finished():
            state = httpx.get(f"{self.api}/flow_runs/{flow_run}", timeout=10).json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                              "CANCELLED") else None
        state = wait_until(finished, 600, "flow run finished", every=3)
        assert state["type"] == "COMPLETED", (self.logs / log).read_text()[-4000:]

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("services")
    origin = copy_project(tmp / "origin", {**TINY, "train.epochs": 1})
    services = Services(tmp, origin)
    try:
        server = services.start("server", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", services.api.split(":")[-1].split("/")[0])
        wait_until(lambda: services.healthy() or server.poll() is not None, 240, "server up")
        assert server.poll() is None, (services.logs / "server.log").read_text()
        yield services
    finally:
        services.stop()


@pytest.mark.slow
def test_a_worker_runs_a_sweep_point_deployed_from_git(services, tmp_path):
    store = tmp_path / "mlflow.db"
    services.run("prefect", "work-pool", "create", "geodesic-test", "--type", "process")
    services.run("pipelines", "deploy", "--pool", "geodesic-test", "--source",
                 services.origin.as_uri(), "--ref", "main", "--name", "t", "--cron", "none",
                 "-S", "train.epochs=1", "--env", f"MLFLOW_TRACKING_URI=sqlite:///{store}")
    flow_run = services.trigger("sweep/t-sweep")
    services.start("worker", "prefect", "worker", "start", "--pool", "geodesic-test")
    services.wait_finished(flow_run, "worker.log")

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.sweep_id LIKE '%'")
    [sweep] = [r for r in runs if r.info.run_name.startswith("sweep-")]
    assert sweep.data.tags["prefect_flow_run_id"] == flow_run
    stages = {r.data.tags.get("stage") for r in runs}
    assert {"prepare", "train"} <= stages  # the clone had no outputs: both ran on the worker
    [point] = [r for r in runs if r.info.run_name == f"{sweep.data.tags['sweep_id']}-p0"]
    assert point.data.params == {"train.epochs": "1"}
    assert point.data.metrics["train.test_acc_mean"] > 0.5
    assert not (services.origin / "models").exists()  # the worker ran in its own clone


@pytest.mark.slow
def test_serve_runs_a_triggered_reproduce_in_the_project(services):
    services.start("serve", "pipelines", "serve", "--cron", "none")
    wait_until(lambda: "geodesic-reproduce" in services.run("prefect", "deployment", "ls"),
               120, "deployments served")
    flow_run = services.trigger("reproduce/geodesic-reproduce")
    services.wait_finished(flow_run, "serve.log")
    assert (services.origin / "models" / "seed0.safetensors").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{services.origin / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("pipeline").experiment_id])
    assert run.data.tags["prefect_flow_run_id"] == flow_run
