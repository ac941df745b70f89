"""Across machines, on one: a real ``prefect server start`` on 127.0.0.1 (a free port), a
process work pool, deployments that pull the project from git (``geodesic deploy``), and a
``prefect worker`` that runs a one-point sweep end to end into a shared MLflow store."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.test_pipelines_flows import GIT_IDENTITY, copy_project

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


@pytest.mark.slow
def test_a_worker_runs_a_sweep_point_deployed_from_git(tmp_path):
    import httpx
    origin = copy_project(tmp_path / "origin", {"train.epochs": 1, "train.seeds": [0]})
    port, store = free_port(), tmp_path / "shared" / "mlflow.db"
    store.parent.mkdir()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "GEODESIC_",
                                                                     "MLFLOW_"))}
    env.update(GIT_IDENTITY, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]))
    logs = tmp_path / "logs"
    logs.mkdir()
    started = []

    def start(name, *args):
        with open(logs / f"{name}.log", "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=logs, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    def run(*args):
        done = subprocess.run([sys.executable, "-m", *args], cwd=origin, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def healthy():
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        server = start("server", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                       str(port))
        wait_until(lambda: healthy() or server.poll() is not None, 240, "server healthy")
        assert server.poll() is None, (logs / "server.log").read_text()
        run("prefect", "work-pool", "create", "geodesic-test", "--type", "process")
        run("pipelines", "-C", str(origin), "deploy", "--pool", "geodesic-test",
            "--source", origin.as_uri(), "--ref", "main", "--name", "t", "--cron", "none",
            "-S", "train.epochs=1", "--env", f"MLFLOW_TRACKING_URI=sqlite:///{store}")
        out = run("prefect", "deployment", "run", "sweep/t-sweep")
        flow_run = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
        start("worker", "prefect", "worker", "start", "--pool", "geodesic-test")

        def finished():
            state = httpx.get(f"{api}/flow_runs/{flow_run}", timeout=10).json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                              "CANCELLED") else None
        state = wait_until(finished, 600, "flow run finished", every=3)
        assert state["type"] == "COMPLETED", (logs / "worker.log").read_text()[-4000:]
    finally:
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

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
