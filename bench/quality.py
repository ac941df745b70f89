"""Time to quality on the digits default (``params.yaml``): the compute each method needs to
reach a quality target, measured on one ladder of budgets that every method shares.

    sparsify  the network at the first level >= 0.9 sparsity has test accuracy within 1 point of
              the dense network's
    connect   a path from w1 to w2 whose min test accuracy is within 1 point of
              min(acc(w1), acc(w2)); the geodesic must arrive at w2 (a walk stopped short by its
              step budget is not a path between the two networks)

The ladder. Every method runs once per factor f of the ladder with its compute scaled by f from
the params.yaml setting. Time to quality is the measured compute of the first factor whose result
meets the target ("never" when none on the ladder does): gradient evaluations (the project's
unit: forward+backward-equivalent passes, a metric-vector product counts 1) and wall-clock
seconds (the median of ``--repeats`` runs; evaluations and accuracies are deterministic). The
rule is fixed before any run and is the same for every method: nothing is chosen on the test
split (the validation figures are recorded beside it).

- sparsify: the levels of params.yaml up to the first >= 0.9 (later levels cannot change a
  result there). B = the units the geodesic spends per level at params.yaml's settings (measured
  first). At f the geodesics' caps are f x (steps_per_level, settle_steps), so they spend at
  most f B per level (less when a level's approach ends at level_tol); the budgeted baselines
  (magnitude_finetune, distill_finetune, imp) get f B per level, the stage's equal-compute rule;
  magnitude spends nothing.
- connect: the geodesic's max_steps and the Bezier curve's training steps times f (one Bezier
  step at bezier_batch = metric_batch inputs is one evaluation); the straight line is free.

Scoring is not compute: the sparsify geodesics' held-out scoring along the path is switched off
(only the level milestones are scored, a few ms), and the connect geodesic's is timed apart as
the stage does.

    python bench/quality.py                     # both: x1/8..x8 and x1/64..x2, 3 repeats
    python bench/quality.py --quick             # x0.25 and x1, one repeat (a smoke run)
    python bench/quality.py --only connect --factors 0.125 0.25 1

Needs the outputs of ``dvc repro prepare train``. Records the git commit it ran from and the
tracked files that differed from it (``source``). Writes ``bench/results/quality.json``
(``quality-quick.json`` with --quick, ``quality-<task>.json`` with --only, or ``--output``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import Progress, machine, source, write  # noqa: E402
from bench.quality_rules import (NO_SCORING, TARGET_SPARSITY, TOLERANCE, connect_report,  # noqa: E402
                                 levels_to, repeated, scaled, sparsify_report, summary,
                                 timed_methods, within)
from geodesic.core.settings import apply, load_yaml, parse_spec  # noqa: E402
from geodesic.params import Params, parse_params  # noqa: E402

SPARSIFY_LADDER = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CONNECT_LADDER = (1 / 64, 1 / 32, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)
QUICK_LADDER = (0.25, 1.0)


# --- the two applications -------------------------------------------------------------------


def sparsify(params: Params, data, ladder, repeats: int, progress: Progress) -> dict:
    from geodesic.core.device import resolve_device
    from geodesic.common.evaluate import accuracy
    from geodesic.sparsify.objective import level_name
    from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext, level_budgets, score
    from stages.common import load_base_model

    s = params.sparsify
    levels = levels_to(s.levels, TARGET_SPARSITY)
    level = level_name(levels[-1])
    base = dataclasses.replace(s, levels=levels)
    model = load_base_model(params, data, s.seed, resolve_device(s.device))

    ctx = SparsifyContext.from_params(params, model, data, base)
    dense = {"test_acc": accuracy(model, ctx.split("test"))[0],
             "val_acc": accuracy(model, ctx.split("val"))[0]}

    def settings(method: str, f: float):
        if not method.startswith("geodesic"):
            return base
        return dataclasses.replace(
            base, steps_per_level=scaled(s.steps_per_level, f, 1),
            settle_steps=scaled(s.settle_steps, f),
            max_steps=scaled(s.max_steps, f, len(levels)) if s.max_steps else 0,
            eval_every=NO_SCORING)

    def run(method: str, f: float, per_level: dict[str, float]) -> dict:
        ctx.settings, ctx.budgets = settings(method, f), {k: f * v for k, v in per_level.items()}
        results = SPARSIFY_METHODS.get(method)(ctx)
        row = score(ctx, {level: results[level]})[level]
        return {"method": method, "factor": f,
                "budget": 0.0 if method == "magnitude" else f * sum(per_level.values()),
                "grad_evals": row["grad_evals"], "seconds": row["seconds"],
                "test_acc": row["test_acc"], "val_acc": row["val_acc"],
                "sparsity": row["sparsity"], "units_per_level": level_budgets(results),
                "within": row["sparsity"] >= TARGET_SPARSITY - 1e-6
                and within(row["test_acc"], dense["test_acc"]),
                "val_within": within(row["val_acc"], dense["val_acc"])}

    reference = run("geodesic", 1.0, {})  # B: the geodesic's units per level at params.yaml
    per_level = reference["units_per_level"]
    reference["budget"] = sum(per_level.values())
    progress(f"sparsify: dense test {100 * dense['test_acc']:.2f}  val "
             f"{100 * dense['val_acc']:.2f}; levels {levels}; B per level {per_level}")
    rows, methods = [], timed_methods(s)
    for f in ladder:
        for method in methods:
            first = reference if (method, f) == ("geodesic", 1.0) else None
            row = repeated(lambda: run(method, f, per_level), repeats, first)
            rows.append(row)
            progress(f"sparsify {method:18s} x{f:<6g} evals {row['grad_evals']:7.0f}  "
                     f"{row['seconds']:6.2f}s  test {100 * row['test_acc']:.2f}  val "
                     f"{100 * row['val_acc']:.2f}  sparsity {row['sparsity']:.3f}"
                     f"{'  within' if row['within'] else ''}")
    return {"target_sparsity": TARGET_SPARSITY, "level": level, "levels": levels,
            "tolerance": TOLERANCE, "dense": dense, "budget_per_level": per_level,
            "ladder": list(ladder), "rows": rows, "summary": summary(rows, methods)}


def connect(params: Params, data, ladder, repeats: int, progress: Progress) -> dict:
    from geodesic.connect.run import endpoints, run_curve, run_geodesic, score_point
    from geodesic.core.device import resolve_device
    from stages.common import load_base_model

    c = params.connect
    device = resolve_device(c.device)
    ends = endpoints(load_base_model(params, data, c.seeds[0], device),
                     load_base_model(params, data, c.seeds[1], device), data, c.bn_inputs,
                     c.metric_batch)
    first, second = score_point(ends, ends.w1), score_point(ends, ends.w2)
    reference = min(first["test_acc"], second["test_acc"])
    val_reference = min(first["val_acc"], second["val_acc"])

    def row(method: str, f: float, cap: int, result) -> dict:
        m = result.metrics
        arrived = m["end_distance"] <= c.eps
        return {"method": method, "factor": f, "cap": cap, "steps": m["steps"],
                "grad_evals": m["grad_evals"], "seconds": m["seconds"], "min_acc": m["min_acc"],
                "mean_acc": m["mean_acc"], "val_min_acc": m["val_min_acc"],
                "end_distance": m["end_distance"], "arrived": arrived,
                "gap": reference - m["min_acc"], "points": len(result.points),
                "within": arrived and within(m["min_acc"], reference),
                "val_within": arrived and within(m["val_min_acc"], val_reference)}

    def geodesic(f: float) -> dict:
        cap = scaled(c.max_steps, f, 1)
        return row("geodesic", f, cap, run_geodesic(ends, dataclasses.replace(c, max_steps=cap)))

    def bezier(f: float) -> dict:
        cap = scaled(c.bezier_steps, f, 1)
        return row("bezier", f, cap,
                   run_curve("bezier", ends, dataclasses.replace(c, bezier_steps=cap)))

    progress(f"connect: endpoints test {100 * first['test_acc']:.2f} / "
             f"{100 * second['test_acc']:.2f}, target min accuracy >= "
             f"{100 * (reference - TOLERANCE):.2f}")
    def log(r: dict) -> None:
        progress(f"connect {r['method']:8s} x{r['factor']:<6g} cap {r['cap']:5d}  steps "
                 f"{r['steps']:4d}  evals {r['grad_evals']:5d}  {r['seconds']:6.2f}s  min "
                 f"{100 * r['min_acc']:.2f}  end distance {r['end_distance']:.3f}"
                 f"{'  within' if r['within'] else ''}")

    rows = [repeated(lambda: row("linear", 0.0, 0, run_curve("linear", ends, c)), 1)]
    log(rows[-1])
    for f in ladder:
        for run in (geodesic, bezier):
            rows.append(repeated(lambda: run(f), repeats))
            log(rows[-1])
    return {"endpoints": {"w1": first, "w2": second}, "reference_min_acc": reference,
            "tolerance": TOLERANCE, "eps": c.eps, "ladder": list(ladder), "rows": rows,
            "summary": summary(rows, ["linear", "geodesic", "bezier"])}


def check_inputs(params: Params, tasks: list[str]) -> None:
    """Exit 2 naming the first missing output of ``dvc repro prepare train``."""
    from stages.common import DATASET, model_file
    seeds = ([params.sparsify.seed] if "sparsify" in tasks else []) + (
        list(params.connect.seeds) if "connect" in tasks else [])
    for file in [DATASET, *(model_file(seed) for seed in seeds)]:
        if not (ROOT / file).exists():
            sys.exit(f"error: {ROOT / file} is missing: bench/quality.py needs the outputs of "
                     f"`dvc repro prepare train` (run it from {ROOT})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("sparsify", "connect"), help="run one task only")
    parser.add_argument("--quick", action="store_true",
                        help=f"ladder {QUICK_LADDER}, one repeat: a smoke run")
    parser.add_argument("--factors", nargs="+", type=float,
                        help="the budget ladder for both tasks (factors of params.yaml's budget)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per configuration, median seconds (default 3; --quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", help="results file name under bench/results (no .json)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of params.yaml, e.g. -S connect.cg_iters=5")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # the stages' relative paths: params.yaml, data/prepared, models
    tasks = [args.only] if args.only else ["sparsify", "connect"]
    params = parse_params(apply(load_yaml(ROOT / "params.yaml"),
                                dict(parse_spec(spec) for spec in args.set)))
    check_inputs(params, tasks)
    from stages.common import load_data
    data = load_data()
    repeats = args.repeats or (1 if args.quick else 3)
    ladders = {"sparsify": SPARSIFY_LADDER, "connect": CONNECT_LADDER}
    if args.quick or args.factors:
        ladders = {k: tuple(sorted(args.factors or QUICK_LADDER)) for k in ladders}
    progress = Progress()
    payload = {"command": "python bench/quality.py " + " ".join(argv or sys.argv[1:]),
               "repeats": repeats, "threads": args.threads,
               "load_average_start": machine().get("load_average"), "source": source()}
    reports = []
    if "sparsify" in tasks:
        payload["sparsify"] = sparsify(params, data, ladders["sparsify"], repeats, progress)
        reports.append(sparsify_report(payload["sparsify"], timed_methods(params.sparsify)))
    if "connect" in tasks:
        payload["connect"] = connect(params, data, ladders["connect"], repeats, progress)
        reports.append(connect_report(payload["connect"]))
    payload["total_seconds"] = time.perf_counter() - progress.t0
    payload["machine"] = machine()
    print("\n" + "\n\n".join(reports))
    name = args.output or "quality" + ("-quick" if args.quick else "") + (
        f"-{args.only}" if args.only else "")
    print(f"\n{payload['total_seconds']:.0f} s; written {write(name, payload)}")


if __name__ == "__main__":
    main()
