"""Stage ``hybrid``: from a network trained on the first tasks of a class split, reach sparse
networks that have also learned the last task and kept the earlier ones, by each method of
``hybrid.methods`` (the geodesic first: its evaluations up to each level are the baselines'
budget there).

    python -m stages.hybrid

Reads ``data/prepared`` and the sections ``model``, ``train`` (the base network's optimizer) and
``hybrid`` of ``params.yaml``. Writes ``metrics/hybrid.json`` ({"scenario", "old_tasks",
"new_task", "base": scores, "methods": {method: {level: scores}}}, scores = per-task test and
validation accuracy, old/new/all means, sparsity, cumulative evaluations and seconds),
``plots/hybrid.csv`` and ``plots/hybrid.png`` (accuracy on the earlier tasks, the new task and
all tasks against sparsity), and the geodesic's path under ``paths/hybrid/geodesic``. The base
network's training, the walk and the baselines checkpoint under ``checkpoints/hybrid/<hash of
the settings, the code and data/prepared>``, so a killed stage resumes. MLflow: one run for the
stage, one nested run for the base network and one per method.
"""
from __future__ import annotations

import logging

import torch

from geodesic import tracking
from geodesic.hybrid.methods import HYBRID_METHODS
from geodesic.hybrid.report import write_csv, write_plot
from geodesic.hybrid.run import HybridContext, build_problem, score, score_weights, train_base
from geodesic.params import Params
from stages.common import (DATASET, METRICS, PATHS, PLOTS, checkpoint_dir, main, params_dict,
                           publish, resumed_from, start, write_metrics)

log = logging.getLogger("stages.hybrid")
SECTIONS = ("data", "model", "train", "hybrid")


def numbers(row: dict, suffix: str = "") -> dict[str, float]:
    """The scalar entries of a scores row (per-task lists left out), keys suffixed."""
    return {f"{k}{suffix}": v for k, v in row.items() if isinstance(v, (int, float))}


def hybrid_stage(params: Params) -> None:
    s = params.hybrid
    device, data = start(s)
    problem = build_problem(data, s)
    folder = checkpoint_dir("hybrid", params, SECTIONS, (DATASET.parent,))
    with tracking.stage_run("hybrid", params_dict(params, *SECTIONS), preset=params.preset.label,
                            resumed_from=resumed_from(folder)):
        torch.manual_seed(s.seed)
        model = params.model.build(data.in_shape, data.num_classes).to(device)
        with tracking.method_run("base", {"method": "base"}):
            train_base(model, data, problem, params.train, s, device, folder / "base")
            ctx = HybridContext(model, problem, s)
            base = score_weights(ctx, ctx.base)
            tracking.log_metrics(numbers(base))
        log.info("base network: earlier tasks %.4f, new task %.4f", base["old_acc"],
                 base["new_acc"])
        doc = {"scenario": s.scenario, "old_tasks": list(range(problem.new)),
               "new_task": problem.new, "base": base, "methods": {}}
        for method in s.methods:
            with tracking.method_run(method, {"method": method}):
                results = HYBRID_METHODS.get(method)(ctx, folder / method,
                                                     [tracking.MLflowCallback()])
                doc["methods"][method] = rows = score(ctx, results)
                for level, row in rows.items():
                    tracking.log_metrics(numbers(row, f"/{level}"))
                    log.info("%-24s %s: earlier %.4f  new %.4f  all %.4f  sparsity %.4f  "
                             "evals %.0f  %.1fs", method, level, row["old_acc"], row["new_acc"],
                             row["acc"], row["sparsity"], row["grad_evals"], row["seconds"])
        publish(folder / "geodesic", PATHS / "hybrid" / "geodesic")
        write_metrics("hybrid", doc)
        for file in (METRICS / "hybrid.json", write_csv(doc, PLOTS / "hybrid.csv"),
                     write_plot(doc, PLOTS / "hybrid.png")):
            tracking.log_artifact(file, "results")


if __name__ == "__main__":
    main(hybrid_stage)
