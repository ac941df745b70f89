"""Weight-space geodesics: paths that keep a network's function while reaching a second goal.

Implements Raghavan & Thomson, *Solving hybrid machine learning tasks by traversing weight
space geodesics* (arXiv 2106.02793) in pure PyTorch. What a user needs to walk their own
network is importable from here (loaded on first use, so ``import geodesic`` stays light):

    sparsify_network(model, data, sparsity)     application (i)
    learn_new_task(model, task, memory)         application (ii)
    connect_networks(model, target, data)       application (iii)
    FunctionalMetric, ParameterSpace            g(w) = (1/|B|) sum_x J_x^T H J_x, matrix-free
    traverse, Callback, Path                    the one loop: w <- w + argmin theta^T g theta
    build_solver, SOLVERS, GeodesicSettings     step solvers by name (cg, qp, penalty)
    Objective, TowardTarget, Anchor, Combined, TaskLoss, Sparsify, Connect, LearnTask

Nothing here imports DVC, MLflow or Prefect; :mod:`geodesic.tracking` is the only module that
does, and only stages and pipelines use it.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "sparsify_network": "geodesic.sparsify.api",
    "learn_new_task": "geodesic.continual.api",
    "connect_networks": "geodesic.connect.api",
    "FunctionalMetric": "geodesic.core.metric",
    "ParameterSpace": "geodesic.core.metric",
    "traverse": "geodesic.core.traverse",
    "Callback": "geodesic.core.traverse",
    "Path": "geodesic.core.path",
    "build_solver": "geodesic.core.solvers",
    "SOLVERS": "geodesic.core.solvers",
    "GeodesicSettings": "geodesic.core.settings",
    "Objective": "geodesic.core.objectives",
    "TowardTarget": "geodesic.core.objectives",
    "Anchor": "geodesic.core.objectives",
    "Combined": "geodesic.core.objectives",
    "TaskLoss": "geodesic.core.task_loss",
    "Sparsify": "geodesic.sparsify.objective",
    "Connect": "geodesic.connect.objective",
    "LearnTask": "geodesic.continual.objective",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'geodesic' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
