"""How the traversal step's cost grows with the parameter count P and the metric batch B.

    python bench/scaling.py                        # ~3-5 min on 2 cores
    python bench/scaling.py --solver penalty --widths 32 128 512 2048

Two scans with the default ``cg`` step (6 Lanczos products, basis in output space; any solver
with ``--solver``):

- width: MLPs 64-w-w-10 on 8x8 inputs (w from 16 to 2048: P from ~1.4e3 to ~4.3e6) at batch 128;
- batch: the 784-300-100-10 MLP at B from 16 to 1024.

Each point times the step alternately with the SGD step on the same batch (median of rounds).
The exponents come from least-squares lines through (log P, log t) and (log B, log t):
t ~ P^a and t ~ B^b, fitted over all points and over the upper half (the large sizes, where
fixed per-call overheads no longer dominate). Linear cost in both would give a = b = 1.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import alternate, machine, make, ratios, sgd_step, table, write  # noqa: E402
from bench.step import stepper  # noqa: E402
from geodesic.core.settings import GeodesicSettings  # noqa: E402


def fit(xs: list[float], ys: list[float]) -> float:
    """Slope of the least-squares line through (log x, log y)."""
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def point(name: str, widths, batch: int, solver: str, rounds: int) -> dict:
    model, x, y = make(name, batch, widths=widths)
    step, _ = stepper(name, solver, model, x)
    sgd = sgd_step(copy.deepcopy(model), x, y)  # a copy: training must not move the traversal
    r = ratios(alternate({"sgd": sgd, "step": step}, rounds))
    return {"params": sum(p.numel() for p in model.parameters()), "batch": batch,
            "widths": list(widths or []), "step_s": r["step"]["median_s"],
            "step_min_s": r["step"]["min_s"], "sgd_min_s": r["sgd"]["min_s"],
            "step_cpu_s": r["step"].get("cpu_s"), "sgd_s": r["sgd"]["median_s"],
            "ratio": r["step"]["ratio"], "cpu": r["step"].get("cpu")}


def exponents(points: list[dict], key: str) -> dict:
    xs = [p[key] for p in points]
    upper = points[(len(points) - 1) // 2:]  # the larger half, at least two points
    out = {}
    for label, pts in (("all", points), ("upper_half", upper)):
        xv = [p[key] for p in pts]
        out[label] = {"step": fit(xv, [p["step_s"] for p in pts]),
                      "sgd": fit(xv, [p["sgd_s"] for p in pts]),
                      "step_best": fit(xv, [p["step_min_s"] for p in pts]),
                      "sgd_best": fit(xv, [p["sgd_min_s"] for p in pts])}
        if all(p["step_cpu_s"] for p in pts):
            out[label]["step_cpu"] = fit(xv, [p["step_cpu_s"] for p in pts])
    out["range"] = [min(xs), max(xs)]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solver", default="cg", choices=["cg", "qp", "penalty"])
    parser.add_argument("--widths", nargs="+", type=int,
                        default=[16, 32, 64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--batches", nargs="+", type=int,
                        default=[16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--batch", type=int, default=128, help="batch of the width scan")
    parser.add_argument("--batch-model", default="mlp784", help="model of the batch scan")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--output", default="scaling",
                        help="results file name under bench/results (without .json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    by_width = []
    for w in args.widths:
        by_width.append(point("mlp", (w, w), args.batch, args.solver, args.rounds))
        print(f"width {w}: P={by_width[-1]['params']} {by_width[-1]['step_s'] * 1e3:.1f} ms",
              flush=True)
    by_batch = []
    for b in args.batches:
        by_batch.append(point(args.batch_model, None, b, args.solver, args.rounds))
        print(f"batch {b}: {by_batch[-1]['step_s'] * 1e3:.1f} ms", flush=True)
    cols = ["params", "batch", "step_s", "sgd_s", "ratio", "cpu"]
    print(f"\n{args.solver} step against the parameter count (MLP 64-w-w-10, batch {args.batch})")
    print(table(by_width, ["widths"] + cols))
    print(f"\n{args.solver} step against the batch ({args.batch_model})")
    print(table(by_batch, cols))
    a, b = exponents(by_width, "params"), exponents(by_batch, "batch")
    print()
    for label in ("all", "upper_half"):
        for kind, suffix in (("median", ""), ("fastest", "_best")):
            fa, fb = a[label], b[label]
            print(f"fit over {label.replace('_', ' ')} ({kind} times): "
                  f"step ~ P^{fa['step' + suffix]:.2f} (SGD P^{fa['sgd' + suffix]:.2f}),  "
                  f"step ~ B^{fb['step' + suffix]:.2f} (SGD B^{fb['sgd' + suffix]:.2f})")
    file = write(args.output, {"machine": machine(), "solver": args.solver,
                               "settings": dataclasses.asdict(GeodesicSettings()),
                               "by_params": by_width, "by_batch": by_batch,
                               "exponent_params": a, "exponent_batch": b,
                               "command": "python bench/scaling.py "
                                          + " ".join(argv or sys.argv[1:])})
    print(f"\nwritten {file}")


if __name__ == "__main__":
    main()
