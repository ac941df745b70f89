"""Validation-only tuning of the sparsify methods, the same effort for the geodesic and the
baselines: every configuration is scored by its mean validation loss over the levels >= 0.9
(the accuracy on 144 digits validation images moves in steps of 0.7 points, the loss does
not); test accuracy is printed beside it but never used to choose.

    python bench/sparsify_tune.py geodesic          # the geodesic grid (anchor, approach/settle)
    python bench/sparsify_tune.py baselines         # learning rate x batch, at the geodesic's
                                                    # per-level compute under params.yaml

Needs the outputs of ``dvc repro prepare train`` and reads ``params.yaml``; each line is one
configuration. Takes ~15 min (geodesic) and ~40 min (baselines) on a busy 2-core machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geodesic.params import load_params  # noqa: E402
from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext, score  # noqa: E402
from stages.common import load_base_model, load_data  # noqa: E402

GEODESIC_GRID = [dict(anchor=a, steps_per_level=n, settle_steps=60 - n)
                 for a in (1.0, 2.0, 3.0) for n in (40, 50)] + [
    dict(anchor=0.0, steps_per_level=60, settle_steps=0),
    dict(anchor=0.1, steps_per_level=60, settle_steps=0),
    dict(anchor=1.0, steps_per_level=60, settle_steps=0)]
LRS = {"magnitude_finetune": (0.001, 0.003, 0.01, 0.03, 0.1),
       "distill_finetune": (0.001, 0.003, 0.01, 0.03, 0.1),
       "imp": (0.003, 0.01, 0.03, 0.1, 0.3)}
BATCHES = (64, 256)


def line(name: str, rows: dict, seconds: float) -> str:
    high = [r for level, r in rows.items() if float(level) >= 0.9]
    mean = lambda key: sum(r[key] for r in high) / len(high)  # noqa: E731
    levels = "  ".join(f"{k}: val {100 * r['val_acc']:.1f} test {100 * r['test_acc']:.1f}"
                       for k, r in rows.items())
    return (f"{name:48s} val_loss {mean('val_loss'):.4f}  val_acc {100 * mean('val_acc'):.2f}"
            f"  test_acc {100 * mean('test_acc'):.2f}  evals {high[-1]['grad_evals']:.0f}"
            f"  {seconds:.0f}s | {levels}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("geodesic", "baselines"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    s = params.sparsify
    data = load_data()
    model = load_base_model(params, data, s.seed)

    ctx = SparsifyContext.from_params(params, model, data)
    if args.what == "geodesic":
        for change in GEODESIC_GRID:
            ctx.settings = dataclasses.replace(s, **change)
            t0 = time.perf_counter()
            rows = score(ctx, SPARSIFY_METHODS.get("geodesic")(ctx))
            name = " ".join(f"{k}={v}" for k, v in change.items())
            print(line(name, rows, time.perf_counter() - t0), flush=True)
        return
    t0 = time.perf_counter()
    print(line("geodesic (params.yaml)", score(ctx, SPARSIFY_METHODS.get("geodesic")(ctx)),
               time.perf_counter() - t0), flush=True)
    prefix = {"magnitude_finetune": "finetune", "distill_finetune": "distill", "imp": "imp"}
    for method, lrs in LRS.items():
        for batch in BATCHES:
            for lr in lrs:
                p = prefix[method]
                ctx.settings = dataclasses.replace(s, **{f"{p}_lr": lr, f"{p}_batch": batch})
                t0 = time.perf_counter()
                rows = score(ctx, SPARSIFY_METHODS.get(method)(ctx))
                print(line(f"{method} lr={lr} batch={batch}", rows, time.perf_counter() - t0),
                      flush=True)


if __name__ == "__main__":
    main()
