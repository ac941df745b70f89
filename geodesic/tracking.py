"""MLflow as the record of every run: the only module of the library that imports mlflow.

Layout (DESIGN.md section 5): tracking URI from ``MLFLOW_TRACKING_URI``, by default
``sqlite:///<project root>/mlflow.db`` with artifacts under ``<project root>/mlartifacts``. One
experiment per application; one run per stage execution, tagged with the stage, the git commit
and the hash of the parameters; one nested run per method (traversal, baseline, seed); per-step
metrics with ``step=``; every path checkpoint an artifact under ``checkpoints/step-XXXXXX``.

Sweeps and flows pass context through the environment: ``GEODESIC_PARENT_RUN_ID`` nests the
stage run under a pipeline run; ``GEODESIC_TAGS`` (JSON object) adds tags to every run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from geodesic.settings import flatten
from geodesic.traverse import Callback

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def project_root(start: Path | None = None) -> Path:
    """The repository root, also from inside a ``dvc exp run --temp`` copy (.dvc/tmp/exps/...),
    so temporary experiments log to the same store as the workspace."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DEFAULT_DB}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, cwd=project_root())
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def experiment_id(name: str) -> str:
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (project_root() / ARTIFACT_DIR / name).as_uri()
    uri = tracking_uri()
    kwargs = {"artifact_location": location} if uri.startswith("sqlite:") else {}
    return client.create_experiment(name, **kwargs)


def extra_tags() -> dict[str, str]:
    return {k: str(v) for k, v in json.loads(os.environ.get("GEODESIC_TAGS", "{}")).items()}


@contextmanager
def stage_run(stage: str, params: dict, experiment: str | None = None):
    """One MLflow run for one stage execution; yields the active run."""
    mlflow.set_tracking_uri(tracking_uri())
    exp = experiment_id(experiment or stage)
    mlflow.set_experiment(experiment_id=exp)  # nested method runs land in the same experiment
    tags = {"stage": stage, "git_commit": git_commit(), "params_hash": params_hash(params),
            **extra_tags()}
    parent = os.environ.get("GEODESIC_PARENT_RUN_ID")
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=exp, run_name=stage, tags=tags) as run:
        flat = flatten(params)
        for start in range(0, len(flat), 90):
            mlflow.log_params(dict(list(flat.items())[start:start + 90]))
        yield run


@contextmanager
def method_run(name: str, params: dict | None = None):
    """A run nested in the active stage run, for one method, seed or traversal."""
    tags = {"method": name, **extra_tags()}
    with mlflow.start_run(run_name=name, nested=True, tags=tags) as run:
        if params:
            mlflow.log_params(flatten(params))
        yield run


def log_metrics(metrics: dict, step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)


def log_artifact(path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


class MLflowCallback(Callback):
    """Logs every numeric entry of every step record (batched through ``log_batch``), the
    milestones (as ``<key>/<milestone>``, characters MLflow rejects replaced by ``_``), and
    each saved checkpoint as an artifact under ``checkpoints/step-XXXXXX``."""

    def __init__(self, run_id: str | None = None, flush_every: int = 100, prefix: str = ""):
        self.run_id = run_id or mlflow.active_run().info.run_id
        self.client = MlflowClient()
        self.flush_every, self.prefix = flush_every, prefix
        self.buffer: list[Metric] = []

    def _add(self, record: dict, step: int, suffix: str = "") -> None:
        now = int(time.time() * 1000)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.buffer.append(Metric(f"{self.prefix}{key}{suffix}", float(value), now, step))

    def flush(self) -> None:
        for start in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[start:start + 1000])
        self.buffer = []

    def on_step(self, record: dict, w) -> None:
        self._add(record, record["step"])
        if len(self.buffer) >= self.flush_every * 8:
            self.flush()

    def on_milestone(self, name: str, record: dict, w) -> None:
        self._add(record, record["step"], suffix="/" + re.sub(r"[^\w\-. :/]", "_", name))

    def on_checkpoint(self, step: int, file: Path) -> None:
        self.flush()
        for part in (file, Path(f"{file}.sha256")):
            self.client.log_artifact(self.run_id, str(part), f"checkpoints/step-{step:06d}")

    def on_end(self, path) -> None:
        self.flush()
