"""The orchestration figures, measured on this machine (run after ``dvc repro``):

    python -m pipelines.bench noop       wall-clock of a no-op ``dvc repro`` (everything up to date)
    python -m pipelines.bench overhead   ``geodesic repro`` (Prefect flow) against ``dvc repro``
    python -m pipelines.bench logging    share of a digits traversal's time spent in MLflow logging

Each prints one JSON line. ``overhead`` starts its own ``prefect server`` on 127.0.0.1 (so server
start-up is reported apart from the per-run cost) and alternates the two commands ``--repeat``
times; with ``--force`` every stage reruns in both. ``logging`` walks from base network
``models/seed0`` toward ``models/seed1`` with the ``cg`` solver and the usual callbacks
(held-out accuracy every ``eval_every`` steps, checkpoints, MLflow), into a throw-away store,
and times the MLflow callback separately.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.servers import free_port, wait_healthy


def _timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def noop(repeat: int) -> dict:
    cmd = [sys.executable, "-m", "dvc", "repro"]
    _timed(cmd)  # bring everything up to date (and warm the caches) first
    times = [_timed(cmd) for _ in range(repeat)]
    return {"figure": "no-op dvc repro", "median_s": statistics.median(times), "runs_s": times}


def overhead(repeat: int, force: bool) -> dict:
    port = free_port()
    home = tempfile.mkdtemp(prefix="prefect-bench-")
    env = dict(os.environ, PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api/health", server)
        startup = time.perf_counter() - t0
        flag = ["--force"] if force else []
        plain = [sys.executable, "-m", "dvc", "repro", *flag]
        flow = [sys.executable, "-m", "pipelines", "repro", *flag]
        _timed(plain, env)
        dvc_s, flow_s = [], []
        for _ in range(repeat):
            dvc_s.append(_timed(plain, env))
            flow_s.append(_timed(flow, env))
    finally:
        server.terminate()
        server.wait(timeout=60)
    d, f = statistics.median(dvc_s), statistics.median(flow_s)
    return {"figure": "Prefect reproduce flow vs dvc repro", "force": force,
            "dvc_repro_s": d, "flow_s": f, "overhead_s": f - d, "overhead_ratio": f / d,
            "server_startup_s": startup, "runs": {"dvc": dvc_s, "flow": flow_s}}



def logging_share(steps: int, solver: str | None) -> dict:
    import torch

    from geodesic import tracking
    from geodesic.common.evaluate import AccuracyCallback
    from geodesic.core.metric import FunctionalMetric
    from geodesic.core.objectives import TowardTarget
    from geodesic.params import load_params
    from geodesic.core.traverse import Timed, walk
    from stages.common import load_base_model, load_data

    params = load_params("params.yaml")
    s = params.connect
    if solver:
        s.solver = solver
    data = load_data()
    model, target = load_base_model(params, data, 0), load_base_model(params, data, 1)
    metric = FunctionalMetric(model, data.train.x, s.output, s.metric_batch, **s.metric_options())
    objective = TowardTarget(metric.space.get(target), tol=1e-3)
    work = Path(tempfile.mkdtemp(prefix="logging-share-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    with tracking.stage_run("bench", {"connect": vars(s)}, experiment="bench"):
        with tracking.method_run("cg"):
            mlflow_cb = Timed(tracking.MLflowCallback())
            accuracy = Timed(AccuracyCallback(model, metric.space, data.val, s.eval_every, "val"))
            torch.manual_seed(0)
            t0 = time.perf_counter()
            path = walk(model, objective, metric, s, max_steps=steps, directory=work / "path",
                        callbacks=[accuracy, mlflow_cb])
            total = time.perf_counter() - t0
    return {"figure": "MLflow logging share of a digits traversal", "steps": path.steps,
            "solver": s.solver, "cg_iters": s.cg_iters, "traversal_s": total,
            "mlflow_s": mlflow_cb.seconds, "mlflow_share": mlflow_cb.seconds / total,
            "accuracy_callback_s": accuracy.seconds,
            "metrics_logged": sum(len(r) - 1 for r in path.records),
            "checkpoints_logged": len(list((work / "path" / "checkpoints").glob("*.safetensors")))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["noop", "overhead", "logging"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--force", action="store_true", help="overhead: rerun every stage")
    parser.add_argument("--steps", type=int, default=200, help="logging: traversal steps")
    parser.add_argument("--solver", choices=["cg", "qp", "penalty"], help="logging: the step "
                        "solver (default: params.yaml connect.solver)")
    args = parser.parse_args(argv)
    if args.figure == "noop":
        result = noop(args.repeat)
    elif args.figure == "overhead":
        result = overhead(args.repeat, args.force)
    else:
        result = logging_share(args.steps, args.solver)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
