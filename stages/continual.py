"""Stage ``continual``: the geodesic and the baselines over a task sequence, in each scenario.

    python -m stages.continual

Reads ``data/prepared`` and the sections ``model`` and ``continual`` of ``params.yaml``; writes
``metrics/continual.json`` (both scenarios), ``plots/continual_matrix.csv`` and
``plots/continual/matrix_<scenario>.png``, and the geodesic's paths under
``paths/continual/<scenario>/geodesic/task<t>`` (records, milestones, end points). Every method
checkpoints under ``checkpoints/continual/<hash of the parameters, the code and
data/prepared>/<scenario>/<method>/task<t>``,
outside DVC's outputs, so a killed stage resumes where it stopped (also under ``dvc repro``,
which deletes outputs before it runs a stage). MLflow: one run for the stage, one nested run per
scenario and method with per-step metrics and the checkpoints as artifacts.
"""
from __future__ import annotations

import logging

import torch

from geodesic import tracking
from geodesic.continual.report import heat_maps, matrix_rows, method_entry, write_csv
from geodesic.continual.run import BENCHMARKS, METHODS, run_sequence
from geodesic.core.settings import ParamsError
from geodesic.core.traverse import ProgressLog
from geodesic.params import Params
from stages.common import (DATASET, METRICS, PATHS, PLOTS, checkpoint_dir, main, params_dict,
                           publish, resumed_from, start, write_metrics)

log = logging.getLogger("stages.continual")


def run_method(params: Params, data, tasks, scenario: str, name: str, folder, device) -> dict:
    """One nested MLflow run: ``name`` over the task sequence in ``scenario``; its entry."""
    c = params.continual
    with tracking.method_run(f"{scenario}/{name}", {"scenario": scenario, "method": name}):
        torch.manual_seed(c.seed)
        model = params.model.build(data.in_shape, data.num_classes).to(device)
        callbacks = [tracking.MLflowCallback(),
                     ProgressLog(f"{scenario}/{name}", c.n_tasks * c.budget)]
        result = run_sequence(METHODS.get(name)(c), model, tasks, scenario, data.num_classes,
                              per_class=c.memory_per_class, seed=c.seed,
                              eval_every=c.eval_every, callbacks=callbacks,
                              directory=folder / scenario / name, name=f"{scenario}/{name}")
        entry = method_entry(result)
        tracking.log_metrics({"acc": entry["acc"], "bwt": entry["bwt"],
                              "forgetting": entry["forgetting"], "val_acc": entry["val_acc"],
                              "grad_evals": entry["grad_evals"],
                              "wall_seconds": entry["seconds"],
                              "cpu_seconds": entry["cpu_seconds"]})
        tracking.register_model(model, tasks[0].test.x[:8], f"continual-{name}", alias=scenario)
    log.info("%s %s: ACC %.4f BWT %+.4f forgetting %.4f, %d evaluations, %.1fs", scenario, name,
             entry["acc"], entry["bwt"], entry["forgetting"], entry["grad_evals"],
             entry["seconds"])
    return entry


def continual_stage(params: Params) -> None:
    c = params.continual
    device, data = start(c)
    try:
        tasks = BENCHMARKS.get(c.benchmark)(data, c.n_tasks, c.seed)
    except ValueError as exc:
        raise ParamsError("continual.n_tasks", c.n_tasks, str(exc)) from exc
    depends = params_dict(params, "data", "model", "continual")
    folder = checkpoint_dir("continual", params, ("data", "model", "continual"), (DATASET.parent,))
    doc = {"benchmark": c.benchmark, "n_tasks": c.n_tasks, "scenarios": {}}
    with tracking.stage_run("continual", depends, preset=params.preset.label,
                            resumed_from=resumed_from(folder)):
        for scenario in c.scenarios:
            doc["scenarios"][scenario] = {"methods": {
                name: run_method(params, data, tasks, scenario, name, folder, device)
                for name in [*c.geodesics, *c.baselines]}}
        publish(folder, PATHS / "continual")
        write_metrics("continual", doc)
        write_csv(matrix_rows(doc), PLOTS / "continual_matrix.csv")
        for file in [METRICS / "continual.json", PLOTS / "continual_matrix.csv",
                     *heat_maps(doc, PLOTS / "continual")]:
            tracking.log_artifact(file, "results")


if __name__ == "__main__":
    main(continual_stage)
