"""Upload the runs of the offline store to a tracking store (``geodesic sync``); with
:mod:`geodesic.tracking`, the only module that imports mlflow.

Runs recorded offline (see :mod:`geodesic.tracking`) are copied one at a time, parents before
children, to the store at ``target``: the experiment (found by name, else created), the run with
its name, start and end time and status, its params and tags, every metric's whole history
(value, step, timestamp; ``log_batch`` in chunks of at most 1000), and its artifacts. A child's
``mlflow.parentRunId`` is remapped to its parent's new id; a parent that is not in the offline
store (a pipeline run made on the server) keeps its id.

Idempotent and resumable: every copy carries the tag ``offline_run_id``, and once a copy is
complete its offline run gets the tag ``synced_run_id`` (the copy's id); later syncs pass such
runs over. A copy left half-made by an interrupted sync (a remote run with the tag whose offline
run is not marked) is deleted and made again, so no run is ever there twice.

Not copied, and reported: runs still RUNNING (a stage in progress, or one that was killed;
``include_running`` uploads them as they are), runs whose parent was not uploaded, and the model
registry (registered model versions and logged models of the uploaded runs: the weights are
also among the runs' artifacts).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from geodesic.tracking import ARTIFACT_DIR, experiment_id, project_root

OFFLINE_TAG = "offline_run_id"  # on a copy: the offline run it was made from
SYNCED_TAG = "synced_run_id"  # on an offline run: its complete copy
PARENT_TAG = "mlflow.parentRunId"
METRICS_PER_BATCH = 1000  # MLflow's limits per log_batch request
PARAMS_PER_BATCH = 100


@dataclass
class SyncReport:
    target: str
    uploaded: dict[str, str] = field(default_factory=dict)  # offline run id -> copy's id
    already: int = 0  # runs uploaded by earlier syncs
    skipped: dict[str, str] = field(default_factory=dict)  # offline run id -> why
    not_copied: list[str] = field(default_factory=list)  # model registry entries

    def summary(self) -> str:
        text = (f"sync to {self.target}: {len(self.uploaded)} runs uploaded, {self.already} "
                f"uploaded before, {len(self.skipped)} skipped")
        if self.not_copied:
            text += (f"; not copied (the model registry is not synced, the weights are run "
                     f"artifacts): {', '.join(self.not_copied)}")
        return text


def _paged(search, *args, **kwargs) -> list:
    items, token = [], None
    while True:
        page = search(*args, page_token=token, **kwargs)
        items += page
        token = page.token
        if not token:
            return items


def _parents_first(runs: list) -> list:
    """``runs`` ordered by nesting depth within ``runs``, then by start time."""
    by_id = {r.info.run_id: r for r in runs}

    def depth(run) -> int:
        seen = {run.info.run_id}
        parent = run.data.tags.get(PARENT_TAG)
        while parent in by_id and parent not in seen:
            seen.add(parent)
            parent = by_id[parent].data.tags.get(PARENT_TAG)
        return len(seen) - 1

    return sorted(runs, key=lambda r: (depth(r), r.info.start_time or 0))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _copy_run(src: MlflowClient, dst: MlflowClient, run, experiment: str,
              parent: str | None) -> tuple[str, int, int]:
    """Copy ``run`` into ``experiment`` of ``dst`` under ``parent``; returns (the copy's id,
    metric values, artifact files)."""
    offline_id = run.info.run_id
    for stale in dst.search_runs([experiment], f"tags.{OFFLINE_TAG} = '{offline_id}'"):
        dst.delete_run(stale.info.run_id)  # half-made by an interrupted sync
    tags = {OFFLINE_TAG: offline_id, **({PARENT_TAG: parent} if parent else {})}
    copy = dst.create_run(experiment, start_time=run.info.start_time, tags=tags,
                          run_name=run.info.run_name).info.run_id
    params = [Param(k, v) for k, v in run.data.params.items()]
    for chunk in _chunks(params, PARAMS_PER_BATCH):
        dst.log_batch(copy, params=chunk)
    other = [RunTag(k, v) for k, v in run.data.tags.items() if k != PARENT_TAG]
    for chunk in _chunks(other, PARAMS_PER_BATCH):
        dst.log_batch(copy, tags=chunk)
    metrics = []
    for key in sorted(run.data.metrics):
        metrics += src.get_metric_history(offline_id, key)
    for chunk in _chunks(metrics, METRICS_PER_BATCH):
        dst.log_batch(copy, metrics=chunk)
    files = _copy_artifacts(src, dst, offline_id, copy)
    if run.info.status != "RUNNING":
        dst.set_terminated(copy, run.info.status, run.info.end_time)
    return copy, len(metrics), files


def _copy_artifacts(src: MlflowClient, dst: MlflowClient, run_id: str, copy: str) -> int:
    if not src.list_artifacts(run_id):
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        local = src.download_artifacts(run_id, "", tmp)
        dst.log_artifacts(copy, local)
        return sum(1 for p in Path(local).rglob("*") if p.is_file())


def _registry_entries(src: MlflowClient, experiments: list[str], runs: set[str]) -> list[str]:
    """The registered model versions and logged models made by ``runs``."""
    versions = [f"{v.name} version {v.version}" for v in src.search_model_versions()
                if v.run_id in runs]
    logged = [f"logged model {m.model_id}" for m in _paged(src.search_logged_models, experiments)
              if m.source_run_id in runs]
    return sorted(versions) + sorted(logged)


def sync(source: str, target: str, root: Path | None = None, include_running: bool = False,
         log: Callable[[str], None] = print) -> SyncReport:
    """Upload the runs of the store at ``source`` not uploaded yet to the store at ``target``;
    ``log`` receives a progress line per run. A local (SQLite) target keeps the artifacts of
    the experiments it creates under ``<project root>/mlartifacts``."""
    src, dst = MlflowClient(source), MlflowClient(target)
    names = {e.experiment_id: e.name for e in _paged(src.search_experiments)}
    runs = _parents_first(_paged(src.search_runs, list(names), max_results=1000))
    copies = {r.info.run_id: r.data.tags[SYNCED_TAG] for r in runs if SYNCED_TAG in r.data.tags}
    report = SyncReport(target, already=len(copies))
    offline = {r.info.run_id for r in runs}
    todo = [r for r in runs if r.info.run_id not in copies]
    for i, run in enumerate(todo, 1):
        run_id, parent = run.info.run_id, run.data.tags.get(PARENT_TAG)
        label = f"[{i}/{len(todo)}] {names[run.info.experiment_id]}/{run.info.run_name} {run_id}"
        if run.info.status == "RUNNING" and not include_running:
            report.skipped[run_id] = ("still RUNNING (a stage in progress, or killed): "
                                      "--include-running uploads it as it is")
        elif parent in offline and parent not in copies:
            report.skipped[run_id] = f"its parent run {parent} is not uploaded"
        if run_id in report.skipped:
            log(f"{label}: skipped, {report.skipped[run_id]}")
            continue
        experiment = experiment_id(names[run.info.experiment_id],
                                   project_root(root) / ARTIFACT_DIR, dst)
        copy, values, files = _copy_run(src, dst, run, experiment, copies.get(parent, parent))
        src.set_tag(run_id, SYNCED_TAG, copy)
        copies[run_id] = report.uploaded[run_id] = copy
        log(f"{label} -> {copy}: {len(run.data.params)} params, {values} metric values, "
            f"{files} artifact files")
    report.not_copied = _registry_entries(src, list(names), set(report.uploaded))
    return report
