"""Deployments of the two flows: served from this machine, or pulled from git by workers.

``serve`` (one machine): ``reproduce`` on demand and ``sweep`` on a cron schedule, both run by
this process (``prefect.serve``) against the Prefect API in ``PREFECT_API_URL``.

``deploy`` (many machines): deployments in a process work pool whose flow runs clone the project
from git (``flow.from_source``); any ``prefect worker start --pool <pool>`` on any machine with
the environment installed picks them up, runs them in the clone, and reports back to the server.

The schedule and the sweep's grid come from the flags, else from the ``sweep`` section of
``params.yaml`` (:class:`geodesic.params.SweepSettings`: ``cron``, ``overrides``, ``metrics``,
with its defaults); ``cron="none"`` deploys the sweep without a schedule. Flags are checked as
that section is, before anything is served or registered.
"""
from __future__ import annotations

from pathlib import Path

from geodesic.core.settings import load_yaml
from geodesic.params import parse_params

ENTRYPOINTS = {"reproduce": "pipelines/flows.py:reproduce", "sweep": "pipelines/flows.py:sweep"}


def schedule(project: str | Path, cron: str | None = None,
             overrides: list[str] | None = None) -> tuple[str, list[str], list[str] | None]:
    """(cron, overrides, metrics): flags first, then ``params.yaml``'s ``sweep`` section; a bad
    value of either raises :class:`~geodesic.core.settings.ParamsError`."""
    data = load_yaml(Path(project) / "params.yaml")
    flags = {key: value for key, value in (("cron", cron), ("overrides", overrides)) if value}
    section = data.get("sweep") or {}
    if flags and isinstance(section, dict):  # anything else: the parser names the problem
        data["sweep"] = {**section, **flags}
    sweep = parse_params(data).sweep
    return sweep.cron, list(sweep.overrides), list(sweep.metrics) or None


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
