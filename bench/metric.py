"""Cost of one metric-vector product g theta = (1/|B|) J^T H J theta in SGD steps.

    python bench/metric.py                         # mlp, mlp784, vgg11 at batch 128
    python bench/metric.py --models vgg16_bn --rounds 5

For each model, in rounds that alternate with the SGD-step baseline on the same batch:

    mvp            the library's product (fast per-layer path where the model is a chain)
    mvp_generic    the generic path: torch.func.jvp (recomputes the forward) + a vjp closure
    jvp, vjp       the two halves of the fast product: J theta and J^T u
    at             building the linearisation at a new point (one forward pass with graph)
    double_vjp     alternative: J theta = d/du <J^T u, theta> by reverse mode through the
                   retained graph of J^T u (create_graph), then J^T (J theta)
    lin_mvp        alternative: J theta from torch.func.linearize (built once), J^T u from vjp
    lin_build      the one-off cost of torch.func.linearize at a point (paid every step)
    mvp_compiled   with --compile: the fast product of ``FunctionalMetric(..., compile=True)``,
                   its tangent recursion under torch.compile (activations are inputs, so new
                   points do not recompile); compile_s is the first product's time

Figures are median time / median SGD-step time in the same run (``ratio``) and the median of
per-round ratios (``paired``); JSON goes to bench/results/metric.json with the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.func import linearize  # noqa: E402

from bench.common import alternate, machine, make, ratios, sgd_step, table, write  # noqa: E402
from geodesic.core.metric import FunctionalMetric  # noqa: E402


def double_vjp(metric: FunctionalMetric, w: torch.Tensor, x: torch.Tensor):
    """g theta with J theta = d/du <J^T u, theta> (reverse over reverse), for comparison."""
    leaf = w.detach().requires_grad_()
    z = metric.function(leaf, x)
    u = torch.zeros_like(z, requires_grad=True)
    (pull,) = torch.autograd.grad(z, leaf, u, create_graph=True)

    def mvp(theta):
        (jt,) = torch.autograd.grad(pull, u, theta, retain_graph=True)
        h = metric.operator(z.detach(), jt) / x.shape[0]
        return torch.autograd.grad(z, leaf, h, retain_graph=True)[0]

    return mvp


def measure(name: str, batch: int, rounds: int, lin_builds: int, max_seconds: float,
            compile_: bool = False) -> dict:
    model, x, y = make(name, batch)
    sgd = sgd_step(model, x, y)
    fast = FunctionalMetric(model, x)
    generic = FunctionalMetric(model, x, fast=False)
    w = fast.space.get(model)
    theta = torch.randn(w.shape, generator=torch.Generator().manual_seed(7)).to(w)
    local, local_g = fast.at(w), generic.at(w)
    u = torch.randn_like(local.z)
    fns = {
        "sgd": sgd,
        "mvp": lambda: local.mvp(theta),
        "mvp_generic": lambda: local_g.mvp(theta),
        "jvp": lambda: local.jvp(theta),
        "vjp": lambda: local.pullback(u),
        "at": lambda: fast.at(w),
        "double_vjp": double_vjp(fast, w, x),
    }
    fns["double_vjp"] = (lambda f: lambda: f(theta))(fns["double_vjp"])
    builds = []
    if lin_builds:
        for _ in range(lin_builds):
            t = time.perf_counter()
            _, lin_jvp = linearize(lambda v: generic.function(v, x), w)
            builds.append(time.perf_counter() - t)
        fns["lin_mvp"] = lambda: local_g.pullback(generic.operator(local_g.z, lin_jvp(theta)))
    compile_s = None
    if compile_ and fast.chain is not None:
        local_c = FunctionalMetric(model, x, compile=True).at(w)
        t = time.perf_counter()
        local_c.mvp(theta)  # the first product compiles
        compile_s = time.perf_counter() - t
        fns["mvp_compiled"] = lambda: local_c.mvp(theta)
    exact = local_g.mvp(theta)
    error = float((local.mvp(theta) - exact).norm() / exact.norm())
    times = alternate(fns, rounds, warmup=1, max_seconds=max_seconds)
    result = ratios(times)
    if builds:
        sgd_median = result["sgd"]["median_s"]
        build = sorted(builds)[len(builds) // 2]
        result["lin_build"] = {"median_s": build, "min_s": min(builds),
                               "ratio": build / sgd_median, "paired": float("nan"),
                               "best": min(builds) / result["sgd"]["min_s"],
                               "rounds": len(builds)}
    return {"model": name, "batch": batch, "params": w.numel(),
            "fast_path": fast.chain is not None, "fast_vs_generic_rel_error": error,
            "sgd_ms": 1e3 * result["sgd"]["median_s"], "times": result, "compile_s": compile_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "mlp784", "vgg11"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds (default 60 for MLPs, 8 for VGGs)")
    parser.add_argument("--lin-builds", type=int, default=None,
                        help="torch.func.linearize builds to time (default 3 MLP, 1 VGG; 0 skips)")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="per model")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--output", default="metric",
                        help="results file name under bench/results (without .json)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the product with a torch.compile'd tangent (slow start)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, results = [], []
    for name in args.models:
        small = name.startswith("mlp")
        rounds = args.rounds or (60 if small else 8)
        builds = args.lin_builds if args.lin_builds is not None else (3 if small else 1)
        res = measure(name, args.batch, rounds, builds, args.max_seconds, args.compile)
        results.append(res)
        row = {"model": name, "params": res["params"], "sgd_ms": res["sgd_ms"]}
        row.update({k: v["ratio"] for k, v in res["times"].items() if k != "sgd"})
        row["mvp_paired"] = res["times"]["mvp"]["paired"]
        row["mvp_best"] = res["times"]["mvp"]["best"]
        row["mvp_cpu"] = res["times"]["mvp"]["cpu"]
        rows.append(row)
        print(f"{name}: done ({res['times']['sgd']['rounds']} rounds, fast path "
              f"{res['fast_path']}, rel. error vs generic {res['fast_vs_generic_rel_error']:.1e})",
              flush=True)
    columns = ["model", "params", "sgd_ms", "mvp", "mvp_paired", "mvp_best", "mvp_cpu",
               "mvp_generic",
               "jvp", "vjp", "at", "double_vjp", "lin_mvp", "lin_build", "mvp_compiled"]
    print("\nmedian time / median SGD-step time (same run, batch %d)" % args.batch)
    print(table(rows, columns))
    file = write(args.output, {"machine": machine(), "batch": args.batch, "results": results,
                            "command": "python bench/metric.py " + " ".join(argv or sys.argv[1:])})
    print(f"\nwritten {file}")


if __name__ == "__main__":
    main()
