"""Where MLflow records go: the project's SQLite store, a tracking server (checked before any
run starts) or the offline store when it does not answer; experiments with their artifact
folders; the git commit and parameter hash runs are tagged with."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from geodesic.errors import TrackingUnavailable
from geodesic.tracking.relocate import ARTIFACT_DIR, relocate

DEFAULT_DB = "mlflow.db"
INTENDED_TAG = "intended_tracking_uri"  # on offline runs: the server they were meant for
_settings = None  # the ``tracking`` section in force in this process (see configure)
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
