"""What the hybrid stage draws: accuracy on the earlier tasks and on the new task against
sparsity, per method, as CSV (a DVC plot) and PNG."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from geodesic.common.plots import plt, save_figure
from geodesic.core.io import atomic_write
from geodesic.hybrid.settings import HYBRID_METHODS as METHOD_NAMES

PANELS = (("old_acc", "earlier tasks"), ("new_acc", "new task"), ("acc", "all tasks"))


def columns() -> list[str]:
    """``<method>.<quantity>`` for every method of the application and quantity of the panels."""
    return [f"{m}.{key}" for m in METHOD_NAMES for key, _ in PANELS]


def write_csv(doc: dict, path: Path) -> Path:
    """One row per sparsity level: the test accuracies of every method (empty where a method
    did not run or did not reach the level)."""
    levels = sorted({level for rows in doc["methods"].values() for level in rows}, key=float)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sparsity", *columns()])
    for level in levels:
        writer.writerow([level, *(f"{doc['methods'][m][level][key]:.6f}"
                                  if level in doc["methods"].get(m, {}) else ""
                                  for m in METHOD_NAMES for key, _ in PANELS)])
    atomic_write(path, buffer.getvalue().encode())
    return path


def write_plot(doc: dict, path: Path) -> Path:
    """Three panels (earlier tasks, new task, all tasks): test accuracy against sparsity, a line
    per method; the base network's accuracy dashed."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.8), sharey=False)
    for ax, (key, title) in zip(axes, PANELS):
        for method, levels in doc["methods"].items():
            points = sorted((float(level), 100 * row[key]) for level, row in levels.items())
            if points:
                ax.plot(*zip(*points), marker="o", label=method)
        ax.axhline(100 * doc["base"][key], linestyle="--", color="grey", label="base")
        ax.set(xlabel="sparsity", ylabel="test accuracy (%)", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{doc['scenario']}: learn task {doc['new_task']} while sparsifying")
    return save_figure(fig, path)
