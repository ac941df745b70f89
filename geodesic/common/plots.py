"""Figures as PNG files (matplotlib with the Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def line_plot(series: dict[str, list[tuple[float, float]]], path, *, xlabel: str, ylabel: str,
              title: str = "", hlines: dict[str, float] | None = None,
              xscale: str = "linear") -> Path:
    """One line with markers per named series of (x, y) points; dashed horizontal references
    (e.g. the dense network's accuracy) from ``hlines``. Writes ``path`` and returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
    for name, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="grey", label=name)
    ax.set_xscale(xscale)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (folders made as needed) as a 120-dpi PNG and close it."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
