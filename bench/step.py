"""Cost of one traversal step per solver and model, in SGD steps: time and peak memory.

    python bench/step.py                                  # mlp, vgg11, vgg16_bn; ~10 min on 2 cores
    python bench/step.py --models mlp --rounds 30 --batch 256
    python bench/step.py --models vgg11 --processes 3      # medians over 3 fresh processes

A step is one iteration of :func:`geodesic.core.traverse.traverse`'s loop (a ``max_steps=1`` call,
timed from the loop's start to its record: the call's set-up is not a step's cost) with the
solver built by ``build_solver`` from the default :class:`~geodesic.core.settings.GeodesicSettings`
(``cg``: 6 Lanczos iterations, exact Krylov trust-region step, basis in output space;
``cg-weight`` the same with the basis in weight space; ``cg5`` / ``cg10``: 5 / 10 iterations,
sparsify's and connect's settings; ``qp``: 3 power iterations and 20 FISTA iterations;
``penalty``: one pullback, its functional step measured on the metric batch's first 32 inputs;
``penalty-whole``: measured on the whole batch), toward a random target (v = w_target - w), on
a metric batch equal to the SGD batch. Time: rounds alternating the SGD step (forward, loss,
backward, momentum update) and one step of each solver; figures are median step time over
median SGD-step time in the same run.

Memory: each configuration runs in a fresh subprocess with glibc's malloc told to map every
block over 64 kB separately (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the resident
set at once. It sets up the model, batch and metric, warms up (one SGD step with a separate
optimiser, deleted after, or one traversal step: kernels and libraries load, the reference
outputs f(x; w0) are computed once and cached as in the loop), records
the resident set size, resets the peak (Linux ``/proc/self/clear_refs``), runs one SGD step
(a fresh momentum optimiser: its buffers and the gradients count) or one traversal step (the
loop frees a step's linearisation and vectors before the next step builds its own), and
reports peak minus that RSS. On CUDA: ``torch.cuda.max_memory_allocated`` minus the
allocation before. The ratio is that increase over the SGD step's. ``product`` is the
metric alone (linearise at w and one metric-vector product, no loop or solver state).

On the CPU a second probe of each configuration (another fresh process) counts tensor bytes
exactly, the CPU counterpart of CUDA's figure: the peak, over the step, of bytes allocated
minus bytes freed by PyTorch's CPU allocator, from the profiler's memory events (every
allocation and free, in order; the model's parameters are given fresh memory under the
profiler first, as the profiler sees frees only of what it saw allocated, and a traversal
frees them while its w stands in for them). The RSS moves in pages and with the C allocator's arenas,
which on a model of 0.2 MB of weights is as large as the step itself (the SGD step's RSS
increase measured 0.27 to 0.57 MB in different runs); ``alloc/sgd`` has no such noise.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import (Timed, alternate, machine, make, ratios, sgd_step, sync, table,  # noqa: E402
                          write)
from geodesic.core.metric import FunctionalMetric  # noqa: E402
from geodesic.core.objectives import TowardTarget  # noqa: E402
from geodesic.core.settings import GeodesicSettings  # noqa: E402
from geodesic.core.solvers import SOLVERS, build_solver  # noqa: E402
from geodesic.core.traverse import Callback, traverse  # noqa: E402

CONFIGS = {  # measured configuration -> overrides of the default GeodesicSettings
    "cg": {"solver": "cg"},  # the default: 6 products, Lanczos basis in output space
    "cg-weight": {"solver": "cg", "cg_mode": "trust_region"},  # the basis in weight space
    "cg5": {"solver": "cg", "cg_iters": 5},  # sparsify's setting
    "cg10": {"solver": "cg", "cg_iters": 10},  # connect's setting
    "qp": {"solver": "qp"},
    "penalty": {"solver": "penalty"},  # its functional step measured on 32 inputs (default)
    "penalty-whole": {"solver": "penalty", "penalty_length_batch": 0},  # ... on the whole batch
}
SOLVER_NAMES = list(CONFIGS)
DEFAULT_ROUNDS = {"mlp": 20, "mlp784": 20, "vgg11": 3, "vgg11_bn": 3, "vgg16": 2, "vgg16_bn": 2}


def stepper(name: str, config: str, model, x):
    """A closure that makes one traversal step with a solver name or a name of ``CONFIGS``
    (default settings otherwise); returns the metric so the caller can read ``evals``."""
    overrides = CONFIGS.get(config, {"solver": config})
    settings = dataclasses.replace(GeodesicSettings(), **overrides)
    assert settings.solver in SOLVERS
    solver = build_solver(settings)
    metric = FunctionalMetric(model, x, settings.output)
    w0 = metric.space.get(model)
    target = w0 + torch.randn(w0.shape, generator=torch.Generator().manual_seed(11)).to(w0)
    objective = TowardTarget(target, tol=0.0)

    clock = LoopClock()

    def step(steps: int = 1) -> Timed:
        traverse(model, objective, metric, solver, eta=settings.eta, beta=settings.beta,
                 max_steps=steps, callbacks=[clock])
        return clock.elapsed()

    return step, metric


class LoopClock(Callback):
    """Wall and CPU seconds from the loop's start to its last record: the steps alone, without
    the set-up and wind-down of a ``traverse`` call (flattening the weights, writing them back),
    which a traversal pays once and a one-step call would pay every step."""

    def on_start(self, path, w) -> None:
        self.start = self.end = (time.perf_counter(), time.process_time())

    def on_step(self, record, w) -> None:
        sync()
        self.end = (time.perf_counter(), time.process_time())

    def elapsed(self) -> Timed:
        return Timed(self.end[0] - self.start[0], self.end[1] - self.start[1])


def rss_kb(field: str = "VmRSS") -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def peak_allocated_bytes(go, setup=None) -> int:
    """Peak of (bytes allocated - bytes freed) by PyTorch's CPU allocator during ``go()``, over
    its value when ``go`` starts. The profiler reports the frees only of blocks allocated while
    it runs, so ``setup()``, run under it first, should allocate anew what ``go`` may free."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        if setup is not None:
            setup()
        with torch.profiler.record_function("measured"):
            go()
    events = prof.profiler.kineto_results.events()
    start = next(e.start_ns() for e in events if e.name() == "measured")
    memory = sorted(((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"),
                    key=lambda e: e[0])  # stable: ties keep their order
    live = peak = 0
    base = None
    for time_ns, nbytes in memory:
        if base is None and time_ns >= start:
            base = live
        live += nbytes
        if base is not None:
            peak = max(peak, live - base)
    return peak


@torch.no_grad()
def own_parameters(model) -> None:
    """Give every parameter a fresh copy of its memory (so its later free is seen)."""
    for p in model.parameters():
        p.data = p.data.clone()


def probe(name: str, config: str, batch: int, allocated: bool = False) -> dict:
    """Peak memory increase of one step of ``config`` ('sgd' or a solver), in a fresh process:
    of the RSS, or (``allocated``, CPU) of the bytes of live tensors."""
    model, x, y = make(name, batch)
    if config == "sgd":
        sgd_step(model, x, y)()  # warm-up with its own optimiser, dropped here
        model.zero_grad(set_to_none=True)
        go = sgd_step(model, x, y)  # a fresh optimiser: momentum buffers and gradients count
    elif config == "product":  # the metric alone: linearise at w, one metric-vector product
        metric = FunctionalMetric(model, x)
        w = metric.space.get(model)
        theta = torch.randn_like(w)
        warm = metric.at(w)
        warm.mvp(theta)
        del warm
        go = lambda: metric.at(w).mvp(theta)
    else:
        step, metric = stepper(name, config, model, x)
        step(1)  # kernels load, the reference outputs f(x; w0) are computed and cached
        go = step
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        go()
        torch.cuda.synchronize()
        return {"base_mb": before / 2**20,
                "delta_mb": (torch.cuda.max_memory_allocated() - before) / 2**20, "kind": "cuda"}
    if allocated:  # a traversal frees the model's own parameter memory while it holds w
        peak = peak_allocated_bytes(go, setup=lambda: own_parameters(model))
        return {"delta_mb": peak / 2**20, "kind": "allocated"}
    base = rss_kb()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    go()
    return {"base_mb": base / 1024, "delta_mb": (rss_kb("VmHWM") - base) / 1024,
            "peak_mb": rss_kb("VmHWM") / 1024, "kind": "rss"}


def run_probe(args: list[str], threads: int | None, env: dict | None = None) -> dict:
    """This script with ``args`` in a fresh process; its last output line, as JSON."""
    cmd = [sys.executable, str(Path(__file__)), *args] + (["--threads", str(threads)]
                                                          if threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(name: str, configs: list[str], batch: int, threads: int | None,
           allocated: bool = False) -> dict:
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    flag = ["--allocated"] if allocated else []
    return {config: run_probe(["--probe", name, config, "--batch", str(batch), *flag], threads,
                              env) for config in configs}


def timing(name: str, batch: int, rounds: int, configs: list[str]) -> dict:
    """Step and SGD-step times of every configuration, alternating, in this process."""
    model, x, y = make(name, batch)
    fns = {"sgd": sgd_step(copy.deepcopy(model), x, y)}  # a copy: its BatchNorm statistics
    # and weights move with training, the traversal's must not (the metric caches f(x; w0))
    metrics = {}
    for solver_name in configs:
        step, metrics[solver_name] = stepper(name, solver_name, model, x)
        fns[solver_name] = step
    warm = 1 if rounds > 2 else 0
    t = time.perf_counter()
    evals0 = {k: m.evals for k, m in metrics.items()}
    times = alternate(fns, rounds, warmup=warm)
    calls = rounds + warm
    return {"params": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - t, "times": ratios(times),
            "evals_per_step": {k: (m.evals - evals0[k]) / calls for k, m in metrics.items()}}


def timing_in_processes(name: str, batch: int, rounds: int, threads: int | None,
                        configs: list[str], processes: int) -> dict:
    """``timing`` in ``processes`` fresh processes; every figure is the median over them.

    The SGD step's time moves between processes by more than within one (measured on VGG11
    here: 605 ms in one process, 792 ms in the next, each steady over its rounds), so one
    process's ratio can be 15% off either way."""
    runs = [run_probe(["--time-probe", name, "--batch", str(batch), "--rounds", str(rounds),
                       "--configs", *configs], threads) for _ in range(processes)]
    times = {k: {f: statistics.median(r["times"][k][f] for r in runs) for f in v}
             for k, v in runs[0]["times"].items()}
    return {"params": runs[0]["params"], "seconds": sum(r["seconds"] for r in runs),
            "times": times,
            "evals_per_step": runs[0]["evals_per_step"],
            "ratio_per_process": {k: [r["times"][k]["ratio"] for r in runs] for k in times}}


def measure(name: str, batch: int, rounds: int, threads: int | None, with_memory: bool,
            configs: list[str] = SOLVER_NAMES, processes: int = 1) -> dict:
    result = {"model": name, "batch": batch}
    result.update(timing(name, batch, rounds, configs) if processes == 1 else
                  timing_in_processes(name, batch, rounds, threads, configs, processes))
    result["sgd_ms"] = 1e3 * result["times"]["sgd"]["median_s"]
    if with_memory:
        keys = ["sgd", "product", *configs]
        probes = {"memory": memory(name, keys, batch, threads)}
        if not torch.cuda.is_available():
            probes["allocated"] = memory(name, keys, batch, threads, allocated=True)
        for kind, mem in probes.items():
            result[kind] = mem
            result[f"{kind}_ratio"] = {k: mem[k]["delta_mb"] / max(mem["sgd"]["delta_mb"], 1e-9)
                                       for k in keys[1:]}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "vgg11", "vgg16_bn"])
    parser.add_argument("--batch", type=int, default=128, help="SGD batch = metric batch")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"alternating rounds (default per model: {DEFAULT_ROUNDS})")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--output", default="step",
                        help="results file name under bench/results (without .json)")
    parser.add_argument("--configs", nargs="+", default=SOLVER_NAMES, choices=SOLVER_NAMES,
                        help="configurations to measure (default: all)")
    parser.add_argument("--processes", type=int, default=1,
                        help="time in this many fresh processes, report medians over them")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--probe", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--time-probe", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--allocated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(probe(*args.probe, args.batch, args.allocated)))
        return
    if args.time_probe:
        rounds = args.rounds or DEFAULT_ROUNDS.get(args.time_probe, 3)
        print(json.dumps(timing(args.time_probe, args.batch, rounds, args.configs)))
        return
    results, rows = [], []
    for name in args.models:
        res = measure(name, args.batch, args.rounds or DEFAULT_ROUNDS.get(name, 3),
                      args.threads, not args.no_memory, args.configs, args.processes)
        results.append(res)
        for solver_name in args.configs:
            t = res["times"][solver_name]
            rows.append({"model": name, "solver": solver_name, "sgd_ms": res["sgd_ms"],
                         "step/sgd": t["ratio"], "paired": t["paired"], "best": t["best"],
                         "cpu": t.get("cpu", ""),
                         "evals": res["evals_per_step"][solver_name],
                         "mem/sgd": res.get("memory_ratio", {}).get(solver_name, ""),
                         "alloc/sgd": res.get("allocated_ratio", {}).get(solver_name, ""),
                         "rounds": t["rounds"]})
        if "memory_ratio" in res:
            print(f"{name}: memory of the product alone / SGD step: "
                  f"{res['memory_ratio']['product']:.2f}", flush=True)
        print(f"{name}: {res['seconds']:.0f} s", flush=True)
    settings = dataclasses.asdict(GeodesicSettings())
    print(f"\nmedian step time / median SGD-step time (batch {args.batch}); "
          "mem/sgd: peak memory increase over the SGD step's (RSS on the CPU); alloc/sgd: the "
          "same in tensor bytes")
    print(table(rows, ["model", "solver", "sgd_ms", "step/sgd", "paired", "best", "cpu", "evals",
                       "mem/sgd", "alloc/sgd", "rounds"]))
    file = write(args.output, {"machine": machine(), "batch": args.batch, "settings": settings,
                          "results": results,
                          "command": "python bench/step.py " + " ".join(argv or sys.argv[1:])})
    print(f"\nwritten {file}")


if __name__ == "__main__":
    main()
