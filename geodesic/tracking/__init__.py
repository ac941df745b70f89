"""MLflow as the record of every run: the only module of the library that imports mlflow.

Layout (DESIGN.md section 5): tracking URI from ``MLFLOW_TRACKING_URI``, by default
``sqlite:///<project root>/mlflow.db`` with artifacts under ``<project root>/mlartifacts``. One
experiment per application (named after its stage; the flows' own runs go to ``pipeline``).
Runs nest pipeline -> stage -> method: a flow opens a pipeline run, each stage execution is one
run tagged with the stage, the git commit and the hash of its parameters, each method (training
seed, traversal, baseline) a run nested in it; per-step metrics with ``step=``, batched; every
path checkpoint an artifact under ``checkpoints/step-XXXXXX``; base networks registered in the
model registry (``register_model``).

Flows pass context to stage processes through the environment (``child_env``):
``GEODESIC_PARENT_RUN_ID`` nests the stage run under a pipeline run (which may live in another
experiment: the UI then links it as "Parent run"); ``GEODESIC_TAGS`` (JSON object) adds tags to
every run. Inside ``dvc exp run`` the experiment's name and baseline commit become tags too.

System metrics (CPU, memory, disk, network; GPU with ``pynvml``) are off by default; set
``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true`` (``geodesic repro --system-metrics``) and every
stage run samples them every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (default 10).

A tracking *server* that does not answer its ``/health`` stops a run before it starts
(:class:`TrackingUnavailable`), unless the ``tracking`` section of ``params.yaml`` says
``when_unreachable: offline``: the run and everything nested in it are then written to a local
store, ``sqlite:///<project root>/<offline_store>/mlflow.db`` with artifacts beside it under
``mlartifacts``, each run tagged ``intended_tracking_uri`` with the server it was meant for;
:mod:`geodesic.tracking.sync` (``geodesic sync``) uploads them later. The entry points hand that
section over with :func:`configure` (``stages.common.main``, the flows), so the stages' code and
DVC parameters do not mention it: switching it reruns nothing.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from geodesic.core.settings import flatten
from geodesic.errors import TrackingUnavailable
from geodesic.tracking.relocate import ARTIFACT_DIR
from geodesic.tracking.store import (  # the store's API is the package's too
    DEFAULT_DB, INTENDED_TAG, _open_store, check_reachable, configure, experiment_id, git_commit,
    offline_store, open_store, params_hash, project_root, sqlite_uri, tracking_uri)

PIPELINE_EXPERIMENT = "pipeline"
DVC_EXP_TAGS = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline"}


def extra_tags() -> dict[str, str]:
    tags = {k: str(v) for k, v in json.loads(os.environ.get("GEODESIC_TAGS", "{}")).items()}
    tags.update({tag: os.environ[var] for var, tag in DVC_EXP_TAGS.items() if os.environ.get(var)})
    return tags


def child_env(parent_run_id: str, tags: dict) -> dict[str, str]:
    """Environment entries that make stage processes nest their runs under ``parent_run_id``
    and carry ``tags`` (merged over the tags this process already passes on)."""
    merged = {**json.loads(os.environ.get("GEODESIC_TAGS", "{}")), **tags}
    return {"GEODESIC_PARENT_RUN_ID": parent_run_id,
            "GEODESIC_TAGS": json.dumps({k: str(v) for k, v in merged.items()})}


def _log_params(params: dict) -> None:
    flat = flatten(params)
    for start in range(0, len(flat), 90):
        mlflow.log_params(dict(list(flat.items())[start:start + 90]))


def _inherited(parent) -> dict[str, str]:
    """The tags a nested run takes from its parent: the intended server of an offline run."""
    return {k: v for k, v in parent.data.tags.items() if k == INTENDED_TAG}


def run_name(stage: str, preset: str, tags: dict[str, str]) -> str:
    """``<stage> <preset>`` and what distinguishes the run from its siblings: a sweep point's
    overrides, else the DVC experiment's name."""
    distinct = tags.get("overrides") or tags.get("dvc_exp_name")
    return " ".join(p for p in (stage, preset, f"[{distinct}]" if distinct else "") if p)


@contextmanager
def stage_run(stage: str, params: dict, experiment: str | None = None, preset: str = "",
              resumed_from: str = ""):
    """One MLflow run for one stage execution, named by :func:`run_name`; yields the active run.
    ``resumed_from``: the checkpoint folder an earlier, interrupted execution left (tag
    ``resumed_from``: its nested runs hold only what was computed after it). When the tracking
    server is down, raises :class:`TrackingUnavailable` at once or records offline
    (:func:`configure`)."""
    artifacts, store_tags = _open_store(None)
    exp = experiment_id(experiment or stage, artifacts)
    mlflow.set_experiment(experiment_id=exp)  # nested method runs land in the same experiment
    tags = {"stage": stage, "git_commit": git_commit(), "params_hash": params_hash(params),
            **extra_tags(), **store_tags}
    tags.update({k: v for k, v in (("preset", preset), ("resumed_from", resumed_from)) if v})
    parent = os.environ.get("GEODESIC_PARENT_RUN_ID")
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=exp, run_name=run_name(stage, preset, tags),
                          tags=tags) as run:
        _log_params(params)
        yield run


@contextmanager
def pipeline_run(name: str, root: Path, params: dict | None = None, tags: dict | None = None):
    """A flow's own run in the ``pipeline`` experiment of the project at ``root`` (nested in
    the active run, if any, and then in its store); stage runs attach to it through
    :func:`child_env`. A tracking server that is down is handled as in :func:`stage_run`."""
    parent = mlflow.active_run()
    if parent is None:
        artifacts, store_tags = _open_store(root)
    else:
        artifacts, store_tags = project_root(root) / ARTIFACT_DIR, _inherited(parent)
    exp = experiment_id(PIPELINE_EXPERIMENT, artifacts)
    tags = {"git_commit": git_commit(root), **extra_tags(), **(tags or {}), **store_tags}
    nested = parent is not None
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=tags, nested=nested) as run:
        if params:
            _log_params(params)
        yield run


@contextmanager
def method_run(name: str, params: dict | None = None):
    """A run nested in the active stage run, for one method, seed or traversal (offline, it
    carries its parent's ``intended_tracking_uri`` tag)."""
    parent = mlflow.active_run()
    tags = {"method": name, **extra_tags(), **(_inherited(parent) if parent else {})}
    experiment = parent.info.experiment_id if parent is not None else None
    with mlflow.start_run(run_name=name, nested=True, tags=tags,
                          experiment_id=experiment) as run:
        if params:
            mlflow.log_params(flatten(params))
        yield run


def log_metrics(metrics: dict, step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)


def log_headline(figures: dict[str, float], histories: dict[str, list[tuple[int, float]]]
                 ) -> None:
    """The figures of :mod:`geodesic.headline` in the active run: each figure its latest value,
    each history one metric with a value per step (the chart view draws it as a line)."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in figures.items()]
    batch += [Metric(k, float(v), now, step) for k, points in histories.items()
              for step, v in points]
    _log_batch(MlflowClient(), mlflow.active_run().info.run_id, batch)


def _log_batch(client: MlflowClient, run_id: str, metrics: list[Metric],
               synchronous: bool = True) -> list:
    """``metrics`` in requests of at most 1000 (MLflow's limit per batch); the pending
    operations when not ``synchronous``."""
    return [client.log_batch(run_id, metrics=metrics[start:start + 1000],
                             synchronous=synchronous) for start in range(0, len(metrics), 1000)]


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_artifact(path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)


def register_model(model, example, name: str, alias: str | None = None) -> str:
    """Log ``model`` in the active run with the signature of ``model(example)`` and register it
    as a new version of ``name``; ``alias`` (e.g. ``mlp-seed0``) then points at that version,
    which carries the stage run's ``stage``, ``preset``, ``params_hash`` and ``git_commit`` tags.
    Returns the version. Stored in torch.export's ``pt2`` format, so loading it
    (``mlflow.pytorch.load_model("models:/<name>@<alias>")``) runs no pickled code. Runs of a
    sweep (tag ``sweep_id``) register versions but leave the aliases where they are."""
    from importlib.metadata import version as installed

    import torch
    from mlflow.models import infer_signature

    model = model.to("cpu").eval()
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    info = mlflow.pytorch.log_model(model, name="mlflow_model", input_example=example.numpy(),
                                    signature=signature, serialization_format="pt2",
                                    pip_requirements=[f"torch=={installed('torch')}"],
                                    registered_model_name=name)
    version = str(info.registered_model_version)
    client = MlflowClient()
    run_tags = client.get_run(mlflow.active_run().info.run_id).data.tags
    if "stage" not in run_tags and "mlflow.parentRunId" in run_tags:  # a method run
        run_tags = client.get_run(run_tags["mlflow.parentRunId"]).data.tags
    inherited = {k: run_tags[k] for k in ("stage", "preset", "params_hash", "git_commit")
                 if k in run_tags}
    for key, value in {**inherited, **extra_tags()}.items():
        client.set_model_version_tag(name, version, key, value)
    if alias and "sweep_id" not in extra_tags():
        client.set_registered_model_alias(name, alias, version)
    return version


class MLflowCallback:
    """A traversal callback (the hooks of :class:`geodesic.core.traverse.Callback`; not derived from
    it, so that flows importing this module do not import torch) that logs every numeric entry
    of every step record, the milestones (as ``<key>/<milestone>``, characters MLflow rejects
    replaced by ``_``), and each saved checkpoint as an artifact under
    ``checkpoints/step-XXXXXX``. Records are buffered and sent with ``log_batch`` every
    ``flush_every`` steps, asynchronously (MLflow's background logging), so the loop does not
    wait for the store; ``on_end`` waits until everything is written."""

    def __init__(self, run_id: str | None = None, flush_every: int = 100, prefix: str = ""):
        self.run_id = run_id or mlflow.active_run().info.run_id
        self.client = MlflowClient()
        self.flush_every, self.prefix = flush_every, prefix
        self.buffer: list[Metric] = []
        self.pending: list = []
        self._steps = 0

    def _add(self, record: dict, step: int, suffix: str = "") -> None:
        now = int(time.time() * 1000)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.buffer.append(Metric(f"{self.prefix}{key}{suffix}", float(value), now, step))

    def flush(self) -> None:
        self.pending += _log_batch(self.client, self.run_id, self.buffer, synchronous=False)
        self.buffer = []

    def wait(self) -> None:
        for operation in self.pending:
            operation.wait()
        self.pending = []

    def on_start(self, path, w) -> None:
        pass

    def on_step(self, record: dict, w) -> None:
        self._add(record, record["step"])
        self._steps += 1
        if self._steps % self.flush_every == 0:
            self.flush()

    def on_milestone(self, name: str, record: dict, w) -> None:
        self._add(record, record["step"], suffix="/" + re.sub(r"[^\w\-. :/]", "_", name))

    def on_checkpoint(self, step: int, file: Path) -> None:
        self.flush()
        for part in (file, Path(f"{file}.sha256")):
            self.client.log_artifact(self.run_id, str(part), f"checkpoints/step-{step:06d}")

    def on_end(self, path) -> None:
        self.flush()
        self.wait()
