"""Flow ``sweep``: a grid or list of parameter overrides, each point its own DVC experiment.

Each point runs as ``dvc exp run --temp -n <sweep>-p<i> -S key=value ...``: a temporary copy of
the workspace, so points never share outputs, and upstream stages whose inputs did not change
come from DVC's run cache instead of running again. ``dvc exp show`` lists the points with their
parameters and metrics. In MLflow (experiment ``pipeline``) the sweep has one run, each point a
run nested in it with the overrides as parameters, and the stage runs of the point nest under the
point (``GEODESIC_PARENT_RUN_ID``) with the tags ``sweep_id``, ``sweep_point`` and
``overrides``. The flow ends with the comparison table as a Prefect markdown artifact
(``sweep-<id>``) and, in the sweep's MLflow run, ``comparison.md``, ``comparison.csv`` and
``comparison.png``. A point that fails is recorded with its error and the others still run; the
flow then raises :class:`SweepFailed` naming the failed points.

Points of sweeps running at the same time on one machine do not collide: DVC runs ``--temp``
experiments side by side, each in its own copy whose outputs and ``checkpoints/`` (ignored by
git, so never copied in) are its own, and the MLflow store they share is opened safely
(:func:`geodesic.tracking.open_store`).
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from geodesic import tracking
from geodesic.params import load_params
from pipelines import report
from pipelines.overrides import Point, check_sweep_id, describe, expand, new_sweep_id
from pipelines.project import CommandFailed, Project, SweepFailed, flat_documents
from pipelines.reproduce import RETRY_DELAY_SECONDS, retry_transient

@task(name="point", task_run_name="{name}", retries=1, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_transient, cache_policy=NONE)
def run_point(project: str, name: str, point: Point, env: dict[str, str],
              force: bool = False) -> dict:
    """One point as DVC experiment ``name``; returns its flattened metrics."""
    proj = Project(project)
    proj.exp_run(name, point, env=env, log=get_run_logger().info, force=force)
    return flat_documents(proj.experiment_metrics(name))


def _flow_run_name() -> str:
    return f"sweep-{flow_run.parameters.get('sweep_id') or 'unnamed'}"


@flow(name="sweep", description="Run parameter overrides as DVC experiments and compare them.",
      flow_run_name=_flow_run_name)
def sweep(overrides: list[str] | None = None, points: list[dict] | None = None,
          project: str = ".", sweep_id: str | None = None, metrics: list[str] | None = None,
          plot_metric: str | None = None, force: bool = False) -> dict:
    """``overrides``: specs like ``"sparsify.solver=[cg,qp,penalty]"`` (their grid);
    ``points``: explicit points ``{"train.lr": 0.1}``; ``metrics``: the table's metric columns
    (default: the metrics that vary); ``plot_metric``: the one plotted; ``force``: rerun every
    stage of every point (by default stages whose inputs match an earlier run, in the
    workspace or another point, are restored from DVC's run cache: they add no stage run to the
    point's MLflow tree, and the point run still holds the metrics).

    Returns ``{"sweep_id", "run_id", "rows": [{point, experiment, overrides, metrics, error}],
    "table": markdown}``."""
    proj = Project(project)
    todo = expand(overrides, points, proj.root / "params.yaml")
    sweep_id = check_sweep_id(sweep_id or new_sweep_id())
    tags = {"flow": "sweep", "sweep_id": sweep_id, "prefect_flow_run_id": str(flow_run.id or "")}
    params = {"overrides": "; ".join(overrides or []), "points": len(todo), "force": force}
    rows = []
    tracking.configure(load_params(proj.root / "params.yaml").tracking)
    with tracking.pipeline_run(f"sweep-{sweep_id}", proj.root, params, tags) as parent:
        start = time.perf_counter()
        for i, point in enumerate(todo):
            get_run_logger().info("sweep %s: point %d/%d (%s)%s", sweep_id, i + 1, len(todo),
                                  describe(point), _eta(start, i, len(todo)))
            rows.append(_run(proj, sweep_id, i, point, force))
        table = report.markdown(rows, f"Sweep {sweep_id}", metrics)
        create_markdown_artifact(table, key=f"sweep-{sweep_id}",
                                 description=f"{len(rows)} points of sweep {sweep_id}")
        tracking.log_text(table, "comparison.md")
        tracking.log_text(report.to_csv(rows), "comparison.csv")
        tracking.log_figure(report.figure(rows, plot_metric), "comparison.png")
    failed = [row for row in rows if row["error"]]
    if failed:
        raise SweepFailed("; ".join(f"{row['experiment']}: {row['error']}" for row in failed))
    return {"sweep_id": sweep_id, "run_id": parent.info.run_id, "rows": rows, "table": table}


def _eta(start: float, done: int, total: int) -> str:
    if done == 0:
        return ""
    per_point = (time.perf_counter() - start) / done
    return f", {per_point:.0f} s a point, about {per_point * (total - done):.0f} s left"


def _run(proj: Project, sweep_id: str, index: int, point: Point, force: bool) -> dict:
    name = f"{sweep_id}-p{index}"
    tags = {"sweep_id": sweep_id, "sweep_point": index, "overrides": describe(point),
            "dvc_exp_name": name}
    row = {"point": index, "experiment": name, "overrides": point, "metrics": {}, "error": None}
    try:
        with tracking.pipeline_run(name, proj.root, params=point, tags=tags) as run:
            env = tracking.child_env(run.info.run_id, tags)
            row["metrics"] = run_point(str(proj.root), name, point, env, force)
            tracking.log_metrics(row["metrics"])
    except CommandFailed as exc:
        row["error"] = exc.cause
    return row
