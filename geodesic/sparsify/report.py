"""What the sparsify stage draws: test accuracy against sparsity, as CSV and PNG."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from geodesic.common.plots import line_plot
from geodesic.core.io import atomic_write
from geodesic.sparsify.settings import SPARSIFY_METHODS as METHOD_NAMES


def write_plots(table: dict, levels: list[str], folder: Path) -> None:
    """``folder/sparsify.csv`` (test accuracy per level and method) and ``sparsify.png`` (test
    accuracy against sparsity, the dense network's as a line)."""
    methods = table["methods"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sparsity", *METHOD_NAMES])
    for level in levels:
        writer.writerow([level, *(f"{methods[m][level]['test_acc']:.6f}"
                                  if level in methods.get(m, {}) else "" for m in METHOD_NAMES)])
    atomic_write(folder / "sparsify.csv", buffer.getvalue().encode())
    series = {m: [(float(k), 100 * r["test_acc"]) for k, r in rows.items()]
              for m, rows in methods.items()}
    line_plot(series, folder / "sparsify.png", xlabel="sparsity", ylabel="test accuracy (%)",
              title="accuracy against sparsity", hlines={"dense": 100 * table["dense"]["test_acc"]})
