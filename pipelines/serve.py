"""Deployments of the two flows: served from this machine, or pulled from git by workers.

``serve`` (one machine): ``reproduce`` on demand and ``sweep`` on a cron schedule, both run by
this process (``prefect.serve``) against the Prefect API in ``PREFECT_API_URL``.

``deploy`` (many machines): deployments in a process work pool whose flow runs clone the project
from git (``flow.from_source``); any ``prefect worker start --pool <pool>`` on any machine with
the environment installed picks them up, runs them in the clone, and reports back to the server.

The schedule and the sweep's grid come from the flags, else from an optional ``sweep`` section
of ``params.yaml`` (``cron``, ``overrides``, ``metrics``), else from the defaults below;
``cron="none"`` deploys the sweep without a schedule.
"""
from __future__ import annotations

from pathlib import Path

from geodesic.settings import ParamsError, load_yaml

DEFAULT_CRON = "0 3 * * *"
DEFAULT_OVERRIDES = ["train.seeds=[[0,1],[2,3]]"]
ENTRYPOINTS = {"reproduce": "pipelines/flows.py:reproduce", "sweep": "pipelines/flows.py:sweep"}


def schedule(project: str | Path, cron: str | None = None,
             overrides: list[str] | None = None) -> tuple[str, list[str], list[str] | None]:
    """(cron, overrides, metrics): flags first, then ``params.yaml``'s ``sweep`` section."""
    section = load_yaml(Path(project) / "params.yaml").get("sweep") or {}
    if not isinstance(section, dict):
        raise ParamsError("sweep", section, "a mapping with keys cron, overrides, metrics")
    unknown = set(section) - {"cron", "overrides", "metrics"}
    if unknown:
        raise ParamsError(f"sweep.{sorted(unknown)[0]}", section[sorted(unknown)[0]],
                          "a known key of sweep: cron, overrides, metrics")
    return (cron or section.get("cron") or DEFAULT_CRON,
            list(overrides or section.get("overrides") or DEFAULT_OVERRIDES),
            section.get("metrics"))


def serve(project: str = ".", cron: str | None = None, overrides: list[str] | None = None,
          limit: int | None = None) -> None:
    """Serve both flows from this process until interrupted."""
    from prefect import serve as prefect_serve

    from pipelines.flows import reproduce, sweep

    root = str(Path(project).resolve())
    cron, overrides, metrics = schedule(root, cron, overrides)
    prefect_serve(
        reproduce.to_deployment(name="geodesic-reproduce", parameters={"project": root}),
        sweep.to_deployment(name="geodesic-sweep", cron=None if cron == "none" else cron,
                            parameters={"project": root, "overrides": overrides,
                                        "metrics": metrics}),
        limit=limit)


def deploy(source: str, pool: str, ref: str | None = None, cron: str | None = None,
           overrides: list[str] | None = None, env: dict[str, str] | None = None,
           project: str = ".", name: str = "geodesic") -> dict[str, str]:
    """Register ``<name>-reproduce`` and ``<name>-sweep`` (on ``cron``) in work pool ``pool``,
    pulling ``source`` (a git URL) at ``ref``; ``env`` reaches the flow runs (e.g.
    ``MLFLOW_TRACKING_URI`` of a shared tracking server). Returns {flow: deployment id}."""
    from prefect import flow
    from prefect.runner.storage import GitRepository

    cron, overrides, metrics = schedule(project, cron, overrides)
    repo = GitRepository(url=source, branch=ref)
    variables = {"env": dict(env or {})}
    parameters = {"reproduce": {}, "sweep": {"overrides": overrides, "metrics": metrics}}
    ids = {}
    for flow_name, entrypoint in ENTRYPOINTS.items():
        remote = flow.from_source(source=repo, entrypoint=entrypoint)
        ids[flow_name] = str(remote.deploy(
            name=f"{name}-{flow_name}", work_pool_name=pool, job_variables=variables,
            parameters=parameters[flow_name], print_next_steps=False,
            cron=cron if flow_name == "sweep" and cron != "none" else None))
    return ids
