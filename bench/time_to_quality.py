"""Time to quality on a preset (real MNIST x MLP): the evaluations and wall-clock each method
needs to reach the best baseline's final validation score, per application, over seeds.

Quality is the validation score every method was tuned on (:func:`geodesic.tuning.run_trial`);
the test split is never read (the data is :func:`geodesic.tuning.validation_only`'s):

    sparsify   mean validation accuracy over the levels >= 0.9 (0.9, 0.95, 0.98)
    continual  validation ACC (mean accuracy over all tasks after the last), averaged over the
               scenarios (task-il, class-il); evaluations and seconds are those of both runs
    connect    minimum validation accuracy along the path; a geodesic counts only when it
               arrives at w2 (a walk stopped short by its step cap is no path to w2)

The rule, fixed before any run and the same for every method. Each method has a result at every
factor f of one ladder (compute scaled by f from the preset's; f = 1 is the preset). Per seed, the
target is the highest score at f = 1 among the baselines (every method that is not a geodesic).
A method's time to quality is the measured evaluations (forward+backward-equivalent passes, a
metric-vector product counts 1) and wall-clock seconds of the first factor whose score reaches
the target (>=); a method that never does gets those of the first factor at its own best score,
marked not reached. The application's target is met when the geodesic (the method named
``geodesic``) reaches the target in every seed with mean evaluations at most half the best
baseline's (the baseline that set the seed's target, to its own final score).

How a method's result at f is had (``rule`` in the results):

    ladder  one run per f: the sparsify geodesics' caps (steps_per_level, settle_steps) times f;
            the sparsify baselines f B per level (B: the geodesic's evaluations per level at
            f = 1, the stage's equal-compute rule); continual: every task's budget times f (a
            run's own trajectory has the smaller budget in its last task only); the Bezier
            curves' training steps times f (their learning-rate schedule spans the run)
    prefix  the connect geodesics: one run capped at max(ladder) x max_steps. A run capped at c
            steps is that run's first c steps, so at f it is the same path when the walk arrived
            within f x max_steps steps, and a walk stopped short otherwise
    fixed   no budget, one run for every f: magnitude, obd, linear, aligned

Scoring along a path is not compute: the sparsify and continual runs score only their end
points here, and the connect geodesic's scoring is timed apart as the stage does.

    python bench/time_to_quality.py --project DIR --seeds 0 1 2

DIR holds the preset's composed params.yaml with the outputs of ``dvc repro train`` for
train.seeds 0..5 (seed i: sparsify.seed = i, continual.seed = i, connect.seeds = [2i, 2i+1], as
``geodesic results``). Writes ``bench/results/<output>.json`` (seeds already there are kept, so
seeds can run apart) and ``<output>.md``, the tables of mean ± sample std over the seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, Progress, machine, source, write  # noqa: E402
from bench.quality_rules import NO_SCORING, scaled, timed_methods  # noqa: E402
from bench.time_to_quality_rules import (FIXED, GEODESICS, HALF, markdown, prefixes,  # noqa: E402
                                         rule, summarise)

APPLICATIONS = ("sparsify", "continual", "connect")
LADDER = tuple(2 ** (k / 2) for k in range(-8, 5))  # 1/16 .. 4 in steps of sqrt(2)


# --- the three applications -----------------------------------------------------------------


def row(method: str, factor: float, score: float, evals: float, seconds: float,
        valid: bool = True, **extra) -> dict:
    return {"method": method, "factor": factor, "score": score, "grad_evals": float(evals),
            "seconds": seconds, "valid": bool(valid), **extra}


def sparsify(params, inputs, ladder, step) -> dict[str, list[dict]]:
    from geodesic.tuning import run_trial

    s = dataclasses.replace(params.sparsify, eval_every=NO_SCORING)

    def settings(method: str, f: float):
        if method not in GEODESICS:
            return s
        return dataclasses.replace(
            s, steps_per_level=scaled(s.steps_per_level, f, 1),
            settle_steps=scaled(s.settle_steps, f),
            max_steps=scaled(s.max_steps, f, len(s.levels)) if s.max_steps else 0)

    def run(method: str, f: float, per_level: dict[str, dict[str, float]]):
        budgets = {seed: {k: f * v for k, v in levels.items()}
                   for seed, levels in per_level.items()}
        out = run_trial("sparsify", method, settings(method, f),
                        dataclasses.replace(inputs, budgets=budgets))
        return step("sparsify", row(method, f, out.score, out.evals, out.seconds,
                                    levels=out.details)), out.budgets

    reference, per_level = run("geodesic", 1.0, {})
    rows = {}
    for method in timed_methods(s):
        if rule("sparsify", method) == "fixed":
            one = run(method, 1.0, per_level)[0]
            rows[method] = [{**one, "factor": f} for f in ladder]
            continue
        rows[method] = [reference if (method, f) == ("geodesic", 1.0)
                        else run(method, f, per_level)[0] for f in ladder]
    return rows


def continual(params, inputs, ladder, step) -> dict[str, list[dict]]:
    from geodesic.tuning import run_trial

    c = dataclasses.replace(params.continual, eval_every=NO_SCORING)
    rows = {}
    for method in [*c.geodesics, *c.baselines]:
        rows[method] = []
        for f in ladder:
            s = dataclasses.replace(c, budget=scaled(c.budget, f, 1))
            out = run_trial("continual", method, s, inputs)
            rows[method].append(step("continual", row(method, f, out.score, out.evals,
                                                      out.seconds, parts=out.details)))
    return rows


def connect(params, inputs, ladder, step) -> dict[str, list[dict]]:
    from geodesic.connect.run import BASELINES, endpoints, run_curve, run_geodesic

    c = params.connect
    ends = endpoints(inputs.models[c.seeds[0]], inputs.models[c.seeds[1]], inputs.data,
                     c.bn_inputs, c.metric_batch, align_seed=c.seed)

    def scored(method: str, f: float, result, **extra) -> dict:
        m = result.metrics
        return step("connect", row(method, f, m["val_min_acc"], m["grad_evals"], m["seconds"],
                                   m["end_distance"] <= c.eps, steps=m["steps"], **extra))

    rows, top = {}, max(ladder)
    for method in c.geodesics:
        cap = scaled(c.max_steps, top, 1)
        run = scored(method, top, run_geodesic(ends, dataclasses.replace(c, max_steps=cap),
                                               name=method), cap=cap)
        rows[method] = prefixes(run, {f: scaled(c.max_steps, f, 1) for f in ladder})
    for method in c.baselines:
        if rule("connect", method) == "fixed":
            one = scored(method, 1.0, run_curve(method, ends, c))
            rows[method] = [{**one, "factor": f} for f in ladder]
            continue
        rows[method] = []
        for f in ladder:
            s = dataclasses.replace(c, bezier_steps=scaled(c.bezier_steps, f, 1))
            rows[method].append(scored(method, f, run_curve(method, ends, s)))
    return rows


RUNNERS = {"sparsify": sparsify, "continual": continual, "connect": connect}


# --- main -----------------------------------------------------------------------------------


class Steps:
    """Prints every finished run with the elapsed time and an ETA from the planned work (a run
    at f counts f, a fixed method's 0.05)."""

    def __init__(self, planned: float, progress: Progress):
        self.planned, self.done, self.progress = planned, 0.0, progress

    def __call__(self, application: str, r: dict) -> dict:
        self.done += 0.05 if r["method"] in FIXED else r["factor"]
        elapsed = time.perf_counter() - self.progress.t0
        eta = elapsed * max(self.planned - self.done, 0.0) / max(self.done, 1e-9)
        self.progress(f"{application:9s} {r['method']:18s} x{r['factor']:<6.3g} evals "
                      f"{r['grad_evals']:7.0f}  {r['seconds']:6.1f}s  val {100 * r['score']:.2f}"
                      f"{'' if r['valid'] else '  (stopped short)'}  | {self.done / elapsed:.3f}"
                      f" units/s, ETA {eta / 60:.0f} min")
        return r


def planned(params, applications, ladder, seeds: int) -> float:
    methods = {"sparsify": timed_methods(params.sparsify),
               "continual": [*params.continual.geodesics, *params.continual.baselines],
               "connect": [*params.connect.geodesics, *params.connect.baselines]}
    per_seed = sum(0.05 if m in FIXED else max(ladder) if rule(a, m) == "prefix" else sum(ladder)
                   for a in applications for m in methods[a])
    return seeds * per_seed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", default=str(ROOT),
                        help="the project holding the preset's params.yaml and trained networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=APPLICATIONS, default=list(APPLICATIONS))
    parser.add_argument("--factors", type=float, nargs="+", default=list(LADDER))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", help="results name (default time_to_quality-<data>_<model>)")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    project = Path(args.project).resolve()
    os.chdir(project)  # the stages' relative paths: data/prepared, models
    from geodesic.core.settings import apply, load_yaml
    from geodesic.params import parse_params
    from pipelines.results import seed_point
    from pipelines.tune import load_inputs

    raw = load_yaml(project / "params.yaml")
    base = parse_params(raw)
    preset = f"{base.preset.data}_{base.preset.model}"
    ladder = sorted(args.factors)
    if 1.0 not in ladder:
        parser.error("the ladder needs the factor 1 (the preset's budget: the final scores)")
    name = args.output or f"time_to_quality-{preset}"
    file = RESULTS / f"{name}.json"
    doc = json.loads(file.read_text()) if file.exists() else {}
    if doc.get("ladder") != ladder:
        doc = {"per_seed": {}, "seconds_per_seed": {}}
    doc.update(preset=preset, ladder=ladder, threads=args.threads, half=HALF)
    progress = Progress()
    step = Steps(planned(base, args.only, ladder, len(args.seeds)), progress)
    for seed in args.seeds:
        t0, runs = time.perf_counter(), doc["per_seed"].setdefault(str(seed), {})
        for application in args.only:
            params = parse_params(apply(raw, seed_point(application, seed)))
            progress(f"seed {seed}: {application}")
            runs[application] = RUNNERS[application](
                params, load_inputs(project, params, application), ladder, step)
        doc["seconds_per_seed"][str(seed)] = time.perf_counter() - t0
        doc["seeds"] = sorted(doc["per_seed"], key=int)
        doc["summary"] = {a: summarise({k: doc["per_seed"][k][a] for k in doc["seeds"]})
                          for a in APPLICATIONS if all(a in doc["per_seed"][k] for k in
                                                        doc["seeds"])}
        doc.update(total_seconds=sum(doc["seconds_per_seed"].values()), source=source(),
                   machine=machine(), command="python bench/time_to_quality.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]))
        write(name, doc)
        (RESULTS / f"{name}.md").write_text(markdown(doc))
        progress(f"seed {seed} done in {doc['seconds_per_seed'][str(seed)]:.0f} s; written "
                 f"{file}")
    print("\n" + markdown(doc))


if __name__ == "__main__":
    main()
