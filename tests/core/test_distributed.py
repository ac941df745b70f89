"""Data-parallel traversal: 2 CPU processes (gloo) on a split global batch walk the same path as
one process on the whole batch, to float32 tolerance."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from geodesic.common.models import VGG
from geodesic.core.distributed import DistributedMetric, average
from geodesic.core.krylov import ConjugateGradient
from geodesic.core.metric import FunctionalMetric
from geodesic.core.objectives import TowardTarget
from geodesic.core.solvers import Penalty, ProjectedGradient
from geodesic.core.traverse import traverse

SOLVERS = {"cg": lambda: ConjugateGradient(iters=4), "penalty": Penalty,  # cg: output basis
           "penalty-12": lambda: Penalty(length_batch=12),  # rows 0-7 on rank 0, 8-11 on rank 1
           "penalty-10": lambda: Penalty(length_batch=10),  # sharded: all on rank 0
           "cg-weight": lambda: ConjugateGradient(iters=4, mode="trust_region"),
           "qp": lambda: ProjectedGradient(iters=5)}


def problem():
    """A tiny VGG with BatchNorm, a pool of 24 inputs and a target: identical in every process."""
    torch.manual_seed(0)
    model = VGG([3, "M", 4, "M"], (2, 8, 8), 5, batch_norm=True)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.train()(torch.randn(16, 2, 8, 8, generator=gen))
    pool = torch.randn(24, 2, 8, 8, generator=gen)
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    target = w0 + torch.randn(w0.shape, generator=gen)
    return model.eval(), pool, TowardTarget(target, tol=1e-3)


def walk(metric_class, solver, batch_size, steps=4, **kw):
    model, pool, objective = problem()
    metric = metric_class(model, pool, batch_size=batch_size, seed=3, **kw)
    path = traverse(model, objective, metric, SOLVERS[solver](), eta=0.05, beta=10.0,
                    max_steps=steps)
    return path.weights, [r["functional_step"] for r in path.records]


SCENARIOS = [("cg", None), ("cg", 16), ("cg-weight", 16), ("qp", 16), ("penalty", 16),
             ("penalty-12", 16)]
SHARDED = ["cg", "penalty-10"]


def worker(rank, world, init_file, out):
    """Every scenario in one process group (process start-up dominates the cost)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        results = {}
        for solver, batch_size in SCENARIOS:
            weights, steps = walk(DistributedMetric, solver, batch_size)
            results[f"{solver}-{batch_size}"] = {"weights": weights, "steps": steps}
        for solver in SHARDED:  # sharded: each rank passes only its part of the pool
            model, pool, objective = problem()
            metric = DistributedMetric(model, torch.tensor_split(pool, world)[rank], sharded=True)
            path = traverse(model, objective, metric, SOLVERS[solver](), eta=0.05, beta=10.0,
                            max_steps=4)
            results[f"sharded-{solver}"] = {"weights": path.weights,
                                            "steps": [r["functional_step"] for r in path.records]}
        results["mean"] = average(torch.full((3,), float(rank)), rank + 1)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The results of both ranks of one 2-process gloo run."""
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(worker, args=(2, str(tmp / "init"), str(tmp / "result")), nprocs=2, join=True)
    return [torch.load(tmp / f"result.{r}", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("solver, batch_size", SCENARIOS)
def test_two_processes_walk_the_one_process_path(ranks, solver, batch_size):
    key = f"{solver}-{batch_size}"
    weights, steps = walk(FunctionalMetric, solver, batch_size)
    assert torch.equal(ranks[0][key]["weights"], ranks[1][key]["weights"])  # ranks in step
    assert torch.allclose(ranks[0][key]["weights"], weights, rtol=1e-5, atol=1e-6)
    assert ranks[0][key]["steps"] == pytest.approx(steps, rel=1e-4)


@pytest.mark.parametrize("solver", SHARDED)
def test_sharded_pools_equal_the_whole_pool(ranks, solver):
    weights, steps = walk(FunctionalMetric, solver, None)
    assert torch.allclose(ranks[1][f"sharded-{solver}"]["weights"], weights, rtol=1e-5, atol=1e-6)
    assert ranks[1][f"sharded-{solver}"]["steps"] == pytest.approx(steps, rel=1e-4)


def test_average_weights_by_count(ranks):
    # ranks hold 0 (count 1) and 1 (count 2): (0 * 1 + 1 * 2) / 3
    assert torch.allclose(ranks[0]["mean"], torch.full((3,), 2 / 3))


@pytest.mark.slow
def test_torchrun_launch(tmp_path):
    """The documented launch: torchrun with 2 processes on this machine."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from geodesic.core.distributed import DistributedMetric, process_group
        from tests.core.test_distributed import walk
        with process_group() as (rank, world):
            weights, _ = walk(DistributedMetric, "cg", 16)
            torch.save(weights, {str(tmp_path)!r} + f"/w{{rank}}.pt")
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", str(script)], check=True, env=env, timeout=300)
    weights, _ = walk(FunctionalMetric, "cg", 16)
    for rank in range(2):
        got = torch.load(tmp_path / f"w{rank}.pt", weights_only=True)
        assert torch.allclose(got, weights, rtol=1e-5, atol=1e-6)
