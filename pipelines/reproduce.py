"""Flow ``reproduce``: the DVC pipeline as Prefect tasks, one per stage, in DVC's order.

Whatever stages ``dvc.yaml`` holds are read from DVC itself (``Project.stages``); each task runs
``dvc repro --single-item <stage>``, so DVC still decides whether a stage is up to date and
``dvc.lock`` records every run, exactly as a plain ``dvc repro``. A stage that fails makes its
task and the flow raise :class:`~pipelines.project.CommandFailed` with the stage's own error
message; only transient failures (a held DVC lock, a busy database, a dropped connection) are
retried. The flow opens a pipeline run in MLflow (experiment ``pipeline``) under which every
stage run nests, logs the DVC metrics there, and returns them.
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from geodesic import tracking
from geodesic.params import load_params
from pipelines.project import CommandFailed, Project

STAGE_RETRIES = 2
RETRY_DELAY_SECONDS = 10


def retry_transient(task, task_run, state) -> bool:
    """Retry policy: only failures that :class:`CommandFailed` recognises as transient."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, CommandFailed) and exc.transient


@task(name="stage", task_run_name="{stage}", retries=STAGE_RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=retry_transient,
      cache_policy=NONE)
def run_stage(project: str, stage: str, force: bool = False,
              env: dict[str, str] | None = None) -> dict:
    """One DVC stage; its output streams into the task's log."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    ran = Project(project).repro_stage(stage, force=force, env=env, log=logger.info)
    seconds = time.perf_counter() - t0
    logger.info("stage %s %s in %.1fs", stage, "ran" if ran else "was up to date", seconds)
    return {"stage": stage, "ran": ran, "seconds": seconds}


@flow(name="reproduce", description="Reproduce the DVC pipeline stage by stage; returns the "
      "DVC metrics.")
def reproduce(project: str = ".", stages: list[str] | None = None,
              force: bool = False) -> dict:
    """Run ``stages`` (default: all) and everything upstream of them, in DVC's order.

    Returns ``{"run_id": MLflow pipeline run, "stages": [{stage, ran, seconds}],
    "metrics": {"<file stem>.<key>": value}}``."""
    proj = Project(project)
    order = proj.stages(stages)
    tags = {"flow": "reproduce", "prefect_flow_run_id": str(flow_run.id or "")}
    params = {"stages": ",".join(order), "force": force}
    tracking.configure(load_params(proj.root / "params.yaml").tracking)
    with tracking.pipeline_run("reproduce", proj.root, params=params, tags=tags) as run:
        env = tracking.child_env(run.info.run_id, {"pipeline_run_id": run.info.run_id})
        results = [run_stage(str(proj.root), stage, force, env) for stage in order]
        metrics = proj.metrics()
        tracking.log_metrics(metrics)
        tracking.log_metrics({f"seconds.{r['stage']}": r["seconds"] for r in results})
    return {"run_id": run.info.run_id, "stages": results, "metrics": metrics}
