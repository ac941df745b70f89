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

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from geodesic.core.settings import flatten
from geodesic.errors import TrackingUnavailable
from geodesic.tracking.relocate import ARTIFACT_DIR, relocate

DEFAULT_DB = "mlflow.db"
PIPELINE_EXPERIMENT = "pipeline"
INTENDED_TAG = "intended_tracking_uri"  # on offline runs: the server they were meant for
_settings = None  # the ``tracking`` section in force in this process (see configure)
DVC_EXP_TAGS = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline"}
# MLflow 3 opens an experiment in its model-training view (runs table, charts) with this kind,
# instead of guessing the GenAI view
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def project_root(start: Path | None = None) -> Path:
    """The repository root, also from inside a ``dvc exp run --temp`` copy (.dvc/tmp/exps/...),
    so temporary experiments log to the same store as the workspace."""
    here = Path(start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def sqlite_uri(folder: Path) -> str:
    """The URI of the local store kept in ``folder`` (its artifacts: ``folder/mlartifacts``)."""
    return f"sqlite:///{folder / DEFAULT_DB}"


def tracking_uri(root: Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(project_root(root))


def offline_store(settings, root: Path | None = None) -> Path:
    """The folder of the offline store named by ``settings`` (a
    :class:`geodesic.params.TrackingSettings`), relative to the project root."""
    folder = Path(settings.offline_store)
    return folder if folder.is_absolute() else project_root(root) / folder


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, cwd=project_root(root))
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def open_store(uri: str, artifacts: Path | None = None) -> None:
    """Open the tracking store at ``uri`` once, so that it exists. A SQLite store is opened
    under an exclusive lock on ``<database>.lock``: processes that open a new database at the
    same moment (two sweep points, two stages) would otherwise all run its schema migrations,
    and all but one fail. When ``artifacts`` lies beside the database (the project's own store,
    the offline store), a store copied or moved with its project is relocated first
    (:mod:`geodesic.tracking.relocate`); a store named elsewhere is left as it is."""
    if not uri.startswith("sqlite:///"):
        return
    import fcntl
    database = Path(uri[len("sqlite:///"):].split("?")[0])
    lock = Path(f"{database}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        beside = artifacts is not None and artifacts.resolve() == (
            database.resolve().parent / ARTIFACT_DIR)
        moved_from = relocate(database) if beside and database.exists() else None
        if moved_from is not None:
            print(f"MLflow store {database}: made in {moved_from}, artifact locations now "
                  f"under {database.parent}", file=sys.stderr, flush=True)
        MlflowClient(uri)  # creates the tables of a new database


def experiment_id(name: str, artifacts: Path, client: MlflowClient | None = None) -> str:
    """The id of experiment ``name`` in the store of ``client`` (default: the active store),
    created if missing (or looked up again when a concurrent run created it meanwhile). A
    local (SQLite) store keeps its artifacts under ``artifacts/<name>``; a server puts them
    where it is configured to."""
    client = client or MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is None:
        local = client.tracking_uri.startswith("sqlite:")
        kwargs = {"artifact_location": (artifacts / name).as_uri()} if local else {}
        try:
            return client.create_experiment(name, tags=EXPERIMENT_TAGS, **kwargs)
        except MlflowException:  # a concurrent run created it since we looked
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():  # a store made before the tag existed
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


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


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any compute, when a tracking *server* (http/https URI) does not answer
    its ``/health`` endpoint; MLflow's own client would retry for minutes, mid-stage."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.request
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except OSError as exc:
        raise TrackingUnavailable(f"MLflow tracking server {uri} does not answer ({exc})") from None


def configure(settings) -> None:
    """Make ``settings`` (a :class:`geodesic.params.TrackingSettings`, the ``tracking`` section
    of ``params.yaml``) decide what the stage and pipeline runs this process opens do when the
    tracking server does not answer. Without it they stop (:class:`TrackingUnavailable`)."""
    global _settings
    _settings = settings


def _open_store(root: Path | None) -> tuple[Path, dict[str, str]]:
    """Point MLflow at the tracking store and return (where a local store keeps artifacts, tags
    for the runs). A server that does not answer raises :class:`TrackingUnavailable`, or when
    :func:`configure` said ``when_unreachable: offline`` switches to the offline store (one line
    on stderr says so) and returns the tag naming the intended server."""
    uri = tracking_uri(root)
    try:
        check_reachable(uri)
    except TrackingUnavailable as exc:
        if _settings is None or _settings.when_unreachable != "offline":
            raise TrackingUnavailable(
                f"{exc}; start it, unset MLFLOW_TRACKING_URI to record in the local store "
                f"{sqlite_uri(project_root(root))}, or set tracking.when_unreachable: offline "
                f"in params.yaml to record offline and upload later with `geodesic sync`"
            ) from None
        folder = offline_store(_settings, root)
        folder.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(sqlite_uri(folder))
        open_store(sqlite_uri(folder), folder / ARTIFACT_DIR)
        print(f"MLflow tracking server {uri} does not answer: recording offline in {folder}; "
              f"upload with `geodesic sync` (python -m pipelines sync) once it is back",
              file=sys.stderr, flush=True)
        return folder / ARTIFACT_DIR, {INTENDED_TAG: uri}
    mlflow.set_tracking_uri(uri)
    open_store(uri, project_root(root) / ARTIFACT_DIR)
    return project_root(root) / ARTIFACT_DIR, {}


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
