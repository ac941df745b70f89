"""Stage ``connect``: from the base network of ``connect.seeds[0]`` to that of ``seeds[1]``
along the geodesics (to w2, and to pi(w2): w2 with its hidden units permuted to match w1),
against the straight lines and trained quadratic Bezier curves to either.

Writes ``metrics/connect.json``, ``plots/connect.csv`` (accuracy along the normalised path
position, every method), ``plots/connect/paths.png``, ``plots/connect/plane.png`` (the methods
ending at w2) and ``paths/connect/`` (each geodesic's records, milestones and end point, the
Bezier middle points, and ``alignment.safetensors``: the permutation pi of each hidden layer,
``pi(w2)[unit i] = w2[unit pi[i]]``).
The geodesic and the Bezier training checkpoint under ``checkpoints/connect/<hash of the
settings, the code, data/prepared and the two base networks>/<method>``, outside DVC's outputs:
a killed stage resumes where it stopped. One MLflow run with a nested run per method:
per-step metrics, checkpoints and figures.

    python -m stages.connect
"""
from __future__ import annotations

import logging


from geodesic import tracking
from geodesic.common.evaluate import network_at
from geodesic.connect.curves import Plane
from geodesic.connect.report import plot_paths, plot_plane, rows, summary, write_csv
from geodesic.connect.run import (GEODESICS, alignment_figures, endpoints, midpoint_weights,
                                  plane_landscape, run_curve, run_geodesic, score_point,
                                  trace_curve)
from geodesic.core.io import save_tensors
from geodesic.core.settings import ParamsError, to_dict
from geodesic.params import Params
from stages.common import (DATASET, PATHS, PLOTS, checkpoint_dir, load_base_model, main, model_file,
                           params_dict, publish, resumed_from, start, write_metrics)

log = logging.getLogger("stages.connect")
OUT = PATHS / "connect"
FIGURES = PLOTS / "connect"
SECTIONS = ("data", "model", "train", "connect")


def connect_stage(params: Params) -> None:
    c = params.connect
    for seed in c.seeds:
        if seed not in params.train.seeds:
            raise ParamsError("connect.seeds", c.seeds, f"seeds trained by the train stage "
                              f"(train.seeds = {params.train.seeds})")
    device, data = start(c)
    ends = endpoints(load_base_model(params, data, c.seeds[0], device),
                     load_base_model(params, data, c.seeds[1], device), data, c.bn_inputs,
                     c.metric_batch, align_seed=c.seed)
    resume = checkpoint_dir("connect", params, SECTIONS,
                            (DATASET.parent, *(model_file(seed) for seed in c.seeds)))
    with tracking.stage_run("connect", params_dict(params, *SECTIONS),
                            preset=params.preset.label,
                            resumed_from=resumed_from(resume)):
        first, second = score_point(ends, ends.w1), score_point(ends, ends.w2)
        ends_scores = {"w1_test_acc": first["test_acc"], "w2_test_acc": second["test_acc"],
                       "w1_test_loss": first["test_loss"], "w2_test_loss": second["test_loss"]}
        tracking.log_metrics(ends_scores)
        results = [_baseline(name, ends, c, resume / name) for name in c.baselines]
        bezier = next((r for r in results if r.name == "bezier"), None)
        plane = Plane.through(ends.w1, ends.w2, bezier.curve.theta) if bezier else None
        results[:0] = [_geodesic(name, ends, c, resume, plane) for name in c.geodesics]
        if any(r.target == "aligned" for r in results):
            ends_scores.update(_alignment(ends.aligned()))
        _report(ends, results, plane, bezier, c, ends_scores)


def _geodesic(name: str, ends, c, resume, plane):
    with tracking.method_run(name, to_dict(c)):
        result = run_geodesic(ends, c, resume / name, plane if GEODESICS[name] == "w2" else None,
                              callbacks=(tracking.MLflowCallback(),), name=name)
        publish(resume / name, OUT / name)
        tracking.log_metrics(result.metrics)
        tracking.log_artifact(OUT / name / "final.safetensors", "path")
        _register_midpoint(ends, result, resume / name)
    return result


def _register_midpoint(ends, result, directory) -> None:
    """The network halfway along the method's path, in the registry as
    ``connect-<method>@midpoint`` (BatchNorm statistics recomputed there)."""
    w = midpoint_weights(result, directory, ends.w1.device)
    network = network_at(ends.model, ends.space, w, ends.bn_inputs)
    tracking.register_model(network, ends.data.test.x[:8], f"connect-{result.name}",
                            alias="midpoint")


def _alignment(aligned) -> dict:
    """Saves pi (one index tensor per hidden layer); returns what the matching found."""
    file = OUT / "alignment.safetensors"
    alignment = aligned.alignment
    save_tensors(file, dict(zip(alignment.symmetry.layers, alignment.perms)))
    tracking.log_artifact(file, "alignment")
    figures = alignment_figures(aligned)
    tracking.log_metrics(figures)
    return figures


def _baseline(name: str, ends, c, directory):
    with tracking.method_run(name, to_dict(c)):
        result = run_curve(name, ends, c,
                           on_record=lambda r: tracking.log_metrics(r, step=r["step"]),
                           on_point=lambda i, p: tracking.log_metrics(
                               {f"path_{k}": v for k, v in p.items()}, step=i),
                           directory=directory)
        tracking.log_metrics(result.metrics)
        if hasattr(result.curve, "theta"):
            file = OUT / name / "theta.safetensors"
            save_tensors(file, {"theta": result.curve.theta})
            tracking.log_artifact(file, f"checkpoints/step-{result.metrics['steps']:06d}")
        _register_midpoint(ends, result, directory)
    log.info("%s: min accuracy %.4f, barrier %.4f, %d gradient evaluations", name,
             result.metrics["min_acc"], result.metrics["barrier"], result.metrics["grad_evals"])
    return result


def _report(ends, results, plane, bezier, c, ends_scores) -> None:
    write_metrics("connect", summary(ends_scores, results))
    write_csv(PLOTS / "connect.csv", rows(results))
    plot_paths(results, FIGURES / "paths.png")
    tracking.log_artifact(FIGURES / "paths.png", "figures")
    tracking.log_artifact(PLOTS / "connect.csv", "figures")
    if plane is not None:
        for r in results:
            if r.curve is not None and r.target == "w2":
                trace_curve(r, plane)
        landscape = (plane_landscape(ends, plane, [r.plane for r in results], c.plane_grid)
                     if c.plane_grid else None)
        marks = {"w1": plane.coordinates(ends.w1)[:2], "w2": plane.coordinates(ends.w2)[:2],
                 "theta": plane.coordinates(bezier.curve.theta)[:2]}
        plot_plane(results, marks, FIGURES / "plane.png", landscape)
        tracking.log_artifact(FIGURES / "plane.png", "figures")
    for r in results:
        log.info("%-16s min acc %.4f  mean %.4f  barrier %.4f  length %.2f  evals %d",
                 r.name, r.metrics["min_acc"], r.metrics["mean_acc"], r.metrics["barrier"],
                 r.metrics["length"], r.metrics["grad_evals"])


if __name__ == "__main__":
    main(connect_stage)
