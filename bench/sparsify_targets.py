"""Which coordinates should the sparsify walk prune? The target rules of
:mod:`geodesic.sparsify.scores` (magnitude, obd, obd_layer) walked from the same base networks
with the same settings, beside one-shot pruning by the same rules (no walk, no training), so
the table shows what the walk itself adds. Scored on the validation split only (the rule is
chosen there); evaluations are the walk's, including the diagonal estimates.

    python bench/sparsify_targets.py --seeds 0 1 2 --output sparsify_targets-mnist_real_mlp

Needs the outputs of ``dvc repro train`` for those seeds (``train.seeds``) and reads
``params.yaml``; writes ``bench/results/<output>.json`` and prints a Markdown table (mean and
sample standard deviation over the seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geodesic.params import load_params  # noqa: E402
from geodesic.sparsify.run import SPARSIFY_METHODS, SparsifyContext, score  # noqa: E402
from geodesic.sparsify.settings import TARGET_RULES  # noqa: E402
from stages.common import load_base_model, load_data  # noqa: E402


def runs(ctx: SparsifyContext, base) -> dict[str, dict]:
    """Every (method, rule) row: validation accuracy and evaluations per level."""
    out = {}
    for rule in TARGET_RULES:
        for method in ("geodesic", "magnitude" if rule == "magnitude" else "obd"):
            ctx.settings = dataclasses.replace(base, target=rule)
            t0 = time.perf_counter()
            rows = score(ctx, SPARSIFY_METHODS.get(method)(ctx))
            name = f"{'walk' if method == 'geodesic' else 'one-shot'} {rule}"
            out[name] = {level: {"val_acc": r["val_acc"], "grad_evals": r["grad_evals"]}
                         for level, r in rows.items()}
            out[name]["seconds"] = time.perf_counter() - t0
            print(f"{name:20s} " + "  ".join(f"{k}: {100 * r['val_acc']:.1f}"
                                             for k, r in rows.items()), flush=True)
    return out


def table(per_seed: dict[int, dict], levels: list[str]) -> str:
    names = list(next(iter(per_seed.values())))
    lines = ["| rule | " + " | ".join(f"val acc {lv}" for lv in levels) + " | evaluations |",
             "|---" * (len(levels) + 2) + "|"]
    for name in names:
        cells = []
        for level in levels:
            values = [100 * doc[name][level]["val_acc"] for doc in per_seed.values()]
            cells.append(f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"
                         if len(values) > 1 else f"{values[0]:.1f}")
        evals = statistics.fmean(doc[name][levels[-1]]["grad_evals"] for doc in per_seed.values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {evals:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="sparsify_targets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    data = load_data()
    per_seed = {}
    for seed in args.seeds or params.train.seeds:
        base = dataclasses.replace(params.sparsify, seed=seed)
        model = load_base_model(params, data, seed)
        ctx = SparsifyContext.from_params(params, model, data, base)
        print(f"seed {seed}", flush=True)
        per_seed[seed] = runs(ctx, base)
    levels = [repr(float(p)) for p in params.sparsify.levels]
    out = ROOT / "bench" / "results" / f"{args.output}.json"
    out.write_text(json.dumps({"preset": dataclasses.asdict(params.preset),
                               "levels": levels, "per_seed": per_seed}, indent=1))
    print(table(per_seed, levels))


if __name__ == "__main__":
    main()
