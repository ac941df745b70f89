"""What the continual stage reports: the metrics document, the accuracy-matrix table and heat maps.

``method_entry(result)`` -> {acc, bwt, forgetting, forgetting_per_task, matrix (test R),
val_acc (ACC of the validation R, the number hyperparameters are chosen by), grad_evals (all
evaluations: gradients, metric products and pullbacks, forward passes of teachers and Fisher
batches), evals_per_task, steps_per_task, seconds (wall-clock), cpu_seconds}. The document is
{"benchmark", "n_tasks", "scenarios": {scenario: {"methods": {method: entry}}}}.

``matrix_rows(doc)``: one row {scenario, method, after_task, task, accuracy} per entry of every
R (``plots/continual_matrix.csv``); ``heat_maps(doc, folder)``: one PNG per scenario, one
annotated panel per method.
"""
from __future__ import annotations

import csv
from pathlib import Path

from geodesic.continual.metrics import average_accuracy, summary
from geodesic.core.io import atomic_write

CSV_FIELDS = ["scenario", "method", "after_task", "task", "accuracy"]


def method_entry(result) -> dict:
    entry = summary(result.matrix)
    entry.update(val_acc=average_accuracy(result.val_matrix), grad_evals=sum(result.evals),
                 evals_per_task=list(result.evals), steps_per_task=list(result.steps),
                 seconds=sum(result.seconds), cpu_seconds=sum(result.cpu_seconds))
    return entry


def matrix_rows(doc: dict) -> list[dict]:
    return [{"scenario": scenario, "method": method, "after_task": i, "task": j,
             "accuracy": round(acc, 6)}
            for scenario, block in doc["scenarios"].items()
            for method, entry in block["methods"].items()
            for i, row in enumerate(entry["matrix"]) for j, acc in enumerate(row)]


def write_csv(rows: list[dict], path) -> None:
    lines = [",".join(CSV_FIELDS)] + [",".join(str(r[k]) for k in CSV_FIELDS) for r in rows]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def heat_maps(doc: dict, folder) -> list[Path]:
    """Write ``<folder>/matrix_<scenario>.png``; returns the files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for scenario, block in doc["scenarios"].items():
        methods = block["methods"]
        fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 3.3),
                                 squeeze=False)
        for ax, (method, entry) in zip(axes[0], methods.items()):
            r = entry["matrix"]
            ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
            if len(r) <= 10:
                for i, row in enumerate(r):
                    for j, acc in enumerate(row):
                        ax.text(j, i, f"{100 * acc:.0f}", ha="center", va="center",
                                fontsize=7, color="white" if acc < 0.6 else "black")
            ax.set_title(f"{method}\nACC {entry['acc']:.3f}", fontsize=9)
            ax.set_xlabel("task j", fontsize=8)
            ax.set_ylabel("after task i", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(f"{scenario}: test accuracy R[i][j]", fontsize=10)
        fig.subplots_adjust(left=0.04, right=0.99, bottom=0.15, top=0.78, wspace=0.35)
        file = Path(folder) / f"matrix_{scenario}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(file, dpi=110)
        plt.close(fig)
        files.append(file)
    return files
