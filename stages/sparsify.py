"""Stage ``sparsify``: from the dense base network ``models/seed<sparsify.seed>`` to sparse ones
at every level of ``sparsify.levels``, by each method of ``sparsify.methods`` (the label-free
geodesic first: its compute per level is the budget of the equal-compute baselines).

Outputs: ``metrics/sparsify.json`` ({"dense": ..., "methods": {method: {level: {test_acc,
val_acc, val_loss, sparsity, grad_evals, seconds}}}}; grad_evals and seconds cumulative up to
the level), ``plots/sparsify.csv`` and ``plots/sparsify.png`` (test accuracy against sparsity
per method), ``outputs/sparsify/<method>.safetensors`` (each method's network at the last
level), ``paths/sparsify/<method>/`` (the traversals: records, milestones, final weights).

The traversals and the baselines' trainings checkpoint under ``checkpoints/sparsify/<hash of
the settings, the code, data/prepared and the base network>/<method>``, outside DVC's outputs:
a killed stage resumes where it stopped; changed settings, code, data or a retrained base
network start afresh. MLflow:
one run for the stage, one nested run per method with every step record, every checkpoint and
the per-level table.
"""
from __future__ import annotations

import logging
from pathlib import Path


from geodesic import tracking
from geodesic.common.evaluate import accuracy, network_at
from geodesic.core.io import save_tensors
from geodesic.params import Params
from geodesic.sparsify.objective import level_name
from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext, score
from geodesic.sparsify.report import write_plots
from stages.common import (DATASET, METRICS, PATHS, PLOTS, checkpoint_dir, load_base_model, main,
                           model_file, params_dict, publish, resumed_from, start, write_metrics)

log = logging.getLogger("stages.sparsify")
OUTPUTS = Path("outputs/sparsify")
SECTIONS = ("data", "model", "train", "sparsify")


def sparse_alias(level: str) -> str:
    """The registry alias of a network at sparsity ``level``: ``sparse-90`` for 0.9 (aliases take
    no dots: ``sparse-99_5`` for 0.995)."""
    return f"sparse-{100 * float(level):g}".replace(".", "_")


def sparsify_stage(params: Params) -> None:
    s = params.sparsify
    device, data = start(s)
    model = load_base_model(params, data, s.seed, device)

    ctx = SparsifyContext.from_params(params, model, data)
    dense_test = accuracy(model, ctx.split("test"))[0]
    dense_val = accuracy(model, ctx.split("val"))[0]
    table = {"dense": {"test_acc": dense_test, "val_acc": dense_val}, "methods": {}}
    resume = checkpoint_dir("sparsify", params, SECTIONS, (DATASET.parent, model_file(s.seed)))
    levels = [level_name(p) for p in s.levels]
    with tracking.stage_run("sparsify", params_dict(params, *SECTIONS),
                            preset=params.preset.label,
                            resumed_from=resumed_from(resume)):
        tracking.log_metrics({"dense_test_acc": dense_test, "dense_val_acc": dense_val})
        for method in s.methods:
            with tracking.method_run(method, {"method": method}):
                callbacks = [tracking.MLflowCallback()]
                results = SPARSIFY_METHODS.get(method)(ctx, resume / method, callbacks)
                if (resume / method / "records.json").exists():  # a traversal
                    publish(resume / method, PATHS / "sparsify" / method)
                rows = score(ctx, results)
                table["methods"][method] = rows
                for level, row in rows.items():
                    tracking.log_metrics({f"{k}/{level}": v for k, v in row.items()})
                    log.info("%-18s %s: test %.4f  val %.4f  sparsity %.4f  evals %.0f  %.1fs",
                             method, level, row["test_acc"], row["val_acc"], row["sparsity"],
                             row["grad_evals"], row["seconds"])
                last = results[levels[-1]] if levels[-1] in results else None
                if last is not None:
                    state = {**ctx.space.unflatten(last.weights),
                             **dict(model.named_buffers())}
                    save_tensors(OUTPUTS / f"{method}.safetensors", state,
                                 {"level": levels[-1], "method": method})
                    tracking.log_artifact(OUTPUTS / f"{method}.safetensors", "model")
                    tracking.register_model(network_at(model, ctx.space, last.weights),
                                            ctx.split("test").x[:8],
                                            f"sparsify-{method}", alias=sparse_alias(levels[-1]))
        write_metrics("sparsify", table)
        write_plots(table, levels, PLOTS)
        tracking.log_artifact(PLOTS / "sparsify.png")
        tracking.log_artifact(PLOTS / "sparsify.csv")
        tracking.log_artifact(METRICS / "sparsify.json")


if __name__ == "__main__":
    main(sparsify_stage)
