"""The figures a stage's own MLflow run carries, read from the metrics document it writes, so
that the runs table and the chart view compare methods without opening nested runs.

Each function returns ``(figures, histories)``:

- ``figures``: one value per method and headline quantity, keyed ``<method>.<quantity>``
  (sparsify: ``geodesic.test_acc.0.9`` per level, ``geodesic.grad_evals`` at the last level;
  continual: ``class-il.geodesic.acc``, ``.forgetting``, ``.grad_evals``; connect:
  ``bezier.min_acc``, ``.barrier``, ``.grad_evals``; hybrid: ``geodesic.old_acc.0.9``,
  ``.new_acc.0.9``, ``.acc.0.9`` per level);
- ``histories``: ``{key: [(step, value), ...]}``, one line per method in the chart view
  (sparsify: ``geodesic.test_acc`` at step = sparsity in per mille, 900 for 0.9; continual:
  ``class-il.geodesic.acc_seen``, the mean test accuracy over the tasks learned so far,
  at step = the index of the task just learned; hybrid: ``geodesic.acc``, the mean test
  accuracy over all tasks, at step = sparsity in per mille).
"""
from __future__ import annotations

Figures = dict[str, float]
Histories = dict[str, list[tuple[int, float]]]


def sparsify_headline(doc: dict) -> tuple[Figures, Histories]:
    figures: Figures = {"dense.test_acc": doc["dense"]["test_acc"]}
    histories: Histories = {}
    for method, levels in doc["methods"].items():
        for level, row in levels.items():
            figures[f"{method}.test_acc.{level}"] = row["test_acc"]
        if levels:
            figures[f"{method}.grad_evals"] = list(levels.values())[-1]["grad_evals"]
        histories[f"{method}.test_acc"] = [(round(1000 * row["sparsity"]), row["test_acc"])
                                           for row in levels.values()]
    return figures, histories


def continual_headline(doc: dict) -> tuple[Figures, Histories]:
    figures: Figures = {}
    histories: Histories = {}
    for scenario, block in doc["scenarios"].items():
        for method, entry in block["methods"].items():
            key = f"{scenario}.{method}"
            for quantity in ("acc", "forgetting", "grad_evals"):
                figures[f"{key}.{quantity}"] = entry[quantity]
            histories[f"{key}.acc_seen"] = [(t, sum(row[:t + 1]) / (t + 1))
                                            for t, row in enumerate(entry["matrix"])]
    return figures, histories


def connect_headline(doc: dict) -> tuple[Figures, Histories]:
    figures: Figures = {f"endpoints.{k}": v for k, v in doc["endpoints"].items()
                        if k in ("w1_test_acc", "w2_test_acc")}
    for method, row in doc["methods"].items():
        for quantity in ("min_acc", "barrier", "grad_evals"):
            figures[f"{method}.{quantity}"] = row[quantity]
    return figures, {}


def hybrid_headline(doc: dict) -> tuple[Figures, Histories]:
    figures: Figures = {f"base.{q}": doc["base"][q] for q in ("old_acc", "new_acc")}
    histories: Histories = {}
    for method, levels in doc["methods"].items():
        for level, row in levels.items():
            for quantity in ("old_acc", "new_acc", "acc"):
                figures[f"{method}.{quantity}.{level}"] = row[quantity]
        if levels:
            figures[f"{method}.grad_evals"] = list(levels.values())[-1]["grad_evals"]
        histories[f"{method}.acc"] = [(round(1000 * row["sparsity"]), row["acc"])
                                      for row in levels.values()]
    return figures, histories


# application -> its (figures, histories); train has none beyond its own runs
HEADLINES = {"sparsify": sparsify_headline, "continual": continual_headline,
             "connect": connect_headline, "hybrid": hybrid_headline}


def _compact(quality: dict[str, float]) -> Figures:
    """``{method: quality}`` -> the three numbers of a compact metrics file: the geodesic's,
    the best baseline's (every method whose name does not start with ``geodesic``) and the
    margin between them (positive: the geodesic leads)."""
    baselines = [v for m, v in quality.items() if not m.startswith("geodesic")]
    out: Figures = {}
    if "geodesic" in quality:
        out["geodesic"] = quality["geodesic"]
    if baselines:
        out["best_baseline"] = max(baselines)
    if len(out) == 2:
        out["margin"] = out["geodesic"] - out["best_baseline"]
    return out


def _last_level(doc: dict) -> dict[str, float]:
    return {m: list(levels.values())[-1]["test_acc"] for m, levels in doc["methods"].items()
            if levels}


def _class_incremental(doc: dict) -> dict[str, float]:
    scenarios = doc["scenarios"]
    block = scenarios.get("class-il") or next(iter(scenarios.values()))
    return {m: e["acc"] for m, e in block["methods"].items()}


COMPACT = {
    "train": lambda doc: {k: doc[k] for k in ("test_acc_mean", "test_acc_min")},
    "sparsify": lambda doc: _compact(_last_level(doc)),
    "continual": lambda doc: _compact(_class_incremental(doc)),
    "connect": lambda doc: _compact({m: r["min_acc"] for m, r in doc["methods"].items()}),
    "hybrid": lambda doc: _compact({m: list(levels.values())[-1]["acc"]
                                    for m, levels in doc["methods"].items() if levels}),
}


def compact(application: str, doc: dict) -> Figures:
    """The numbers ``dvc metrics show`` and ``dvc exp show`` display for an application (its
    ``metrics/<application>_headline.json``), the same keys for every application so the
    table stays narrow: sparsify, test accuracy at the highest level; continual,
    class-incremental ACC (else the first scenario's); connect, the minimum test accuracy along
    the path; hybrid, the mean test accuracy over all tasks at the highest level; train,
    ``test_acc_mean`` and ``test_acc_min`` over the seeds."""
    return COMPACT[application](doc)
