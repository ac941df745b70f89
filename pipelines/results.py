"""``geodesic results <application>``: an application's table over seeds on one preset.

Seed i runs as DVC experiment ``results-<preset>-<application>-s<i>``: ``dvc exp run --temp
<application>`` (that stage and the stages it depends on) with the preset's group overrides,
``train.seeds`` = 0..2N-1 and the seed's own point: ``sparsify.seed = i``; ``continual.seed =
i``; ``connect.seeds = [2i, 2i+1]`` with ``connect.seed = i``, so the connect table uses N
independent pairs of base networks. The metrics files of every seed are collected into
``results/<preset>/<application>.json`` (per seed, and mean ± sample standard deviation per
method), a Markdown table and a PNG.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from geodesic import tracking
from geodesic.core.settings import ParamsError
from geodesic.params import load_params
from geodesic.tuning import APPLICATIONS
from pipelines.project import Project
from pipelines.results_table import summarise, write_results


def seed_point(application: str, i: int) -> dict:
    return {"sparsify": {"sparsify.seed": i}, "continual": {"continual.seed": i},
            "connect": {"connect.seeds": [2 * i, 2 * i + 1], "connect.seed": i},
            "hybrid": {"hybrid.seed": i}}[application]


def check_request(application: str, seeds: int) -> None:
    if application not in APPLICATIONS:
        raise ParamsError("application", application, f"one of {', '.join(APPLICATIONS)}")
    if seeds < 2:
        raise ParamsError("--seeds", seeds, ">= 2 (a standard deviation needs two)")


def preset_overrides(groups: list[str]) -> dict[str, str]:
    """``["data=mnist_real", "model=mlp"]`` -> ``{"data": "mnist_real", "model": "mlp"}``."""
    out = {}
    for item in groups:
        key, sep, value = item.partition("=")
        if not sep or not value or "." in key:
            raise ParamsError("--preset", item, "a config group choice GROUP=NAME, e.g. "
                              "data=mnist_real")
        out[key] = value
    return out


@flow(name="results", description="An application's table over seeds on a preset, each seed "
      "a DVC experiment.")
def results(project: str = ".", application: str = "sparsify", seeds: int = 3,
            preset: list[str] | None = None) -> dict:
    check_request(application, seeds)
    groups = preset_overrides(preset or [])
    proj, logger = Project(project), get_run_logger()
    params = load_params(proj.root / "params.yaml")
    name = "_".join(groups.get(g, getattr(params.preset, g)) for g in ("data", "model"))
    per_seed = {}
    tracking.configure(params.tracking)
    with tracking.pipeline_run(f"results-{name}-{application}", proj.root,
                               params={"application": application, "seeds": seeds, **groups},
                               tags={"flow": "results"}) as run:
        for i in range(seeds):
            exp = f"results-{name}-{application}-s{i}".replace("_", "-")
            point = {**groups, "train.seeds": list(range(2 * seeds)),
                     **seed_point(application, i)}
            logger.info("seed %d/%d: dvc exp run %s", i + 1, seeds, point)
            env = tracking.child_env(run.info.run_id, {"results": exp})
            proj.exp_run(exp, point, env=env, log=logger.info, targets=(application,))
            per_seed[i] = proj.experiment_metrics(exp)[f"metrics/{application}.json"]
        doc = summarise(application, name, per_seed)
        files = write_results(Path(proj.root) / "results" / name, doc)
        for file in files:
            tracking.log_artifact(file, "results")
    return doc
