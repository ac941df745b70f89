"""What the connect stage writes: the metrics summary, the per-point CSV and two figures.

    summary(endpoint scores, results)  the ``metrics/connect.json`` mapping
    rows(results)                      one row per evaluated point: method, position in [0, 1]
                                       (arc length / path length), t or step, scores
    plot_paths(results, file)          test accuracy and loss along the normalised path position
    plot_plane(results, plane, file)   the paths projected on the plane of (w1, w2, Bezier
                                       middle point), over the test-accuracy landscape

Methods ending at pi(w2) (``*aligned``) are drawn in paths.png beside the others; the plane
holds only the paths ending at w2.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from geodesic.core.io import atomic_write  # noqa: E402

COLUMNS = ["method", "position", "t", "step", "test_acc", "test_loss", "val_acc", "val_loss"]
METRIC_KEYS = ["min_acc", "mean_acc", "end_acc", "barrier", "length", "functional_length",
               "end_distance", "grad_evals", "seconds", "steps", "val_min_acc", "val_barrier",
               "chord", "length_ratio", "length_ratio_w2", "align_seconds"]
ACC_LEVELS = [0, 20, 40, 60, 80, 90, 94, 96, 97, 98, 99, 100]  # percent: detail near the top
STYLE = {"geodesic": ("tab:red", "-"), "linear": ("tab:gray", "--"), "bezier": ("tab:blue", "-."),
         "geodesic_aligned": ("tab:orange", "-"), "aligned": ("black", ":"),
         "bezier_aligned": ("tab:cyan", "-.")}


def summary(endpoints: dict, results: list) -> dict:
    return {"endpoints": endpoints,
            "methods": {r.name: {k: r.metrics[k] for k in METRIC_KEYS} for r in results}}


def rows(results: list) -> list[dict]:
    out = []
    for r in results:
        length = r.points[-1]["position"] or 1.0
        for p in r.points:
            row = {k: p.get(k, "") for k in COLUMNS}
            row.update(method=r.name, position=p["position"] / length)
            out.append(row)
    return out


def write_csv(file, table: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write(file, buffer.getvalue().encode())


def _save(fig, file) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(file), buffer.getvalue())


def plot_paths(results: list, file, title: str = "") -> None:
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        length = r.points[-1]["position"] or 1.0
        s = [p["position"] / length for p in r.points]
        color, style = STYLE.get(r.name, (None, "-"))
        label = f"{r.name} (min {100 * r.metrics['min_acc']:.1f}%)"
        ax_acc.plot(s, [100 * p["test_acc"] for p in r.points], style, color=color,
                    marker=".", label=label)
        ax_loss.plot(s, [p["test_loss"] for p in r.points], style, color=color, marker=".",
                     label=r.name)
    ax_acc.set(xlabel="normalised path position (arc length)", ylabel="test accuracy (%)")
    ax_loss.set(xlabel="normalised path position (arc length)", ylabel="test loss")
    ax_acc.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    fig.suptitle(title or "accuracy and loss along the paths from w1 to w2 (*aligned: to pi(w2), "
                 "w2's units permuted to match w1, the same function)")
    _save(fig, file)


def plot_plane(results: list, plane_points: dict, file, landscape: dict | None = None) -> None:
    """``plane_points``: {label: (x, y)} marked on the plane (w1, w2, the middle point)."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    if landscape is not None:
        cs = ax.contourf(landscape["x"], landscape["y"],
                         [[100 * a for a in row] for row in landscape["test_acc"]],
                         levels=ACC_LEVELS, cmap="viridis", alpha=0.8, extend="min")
        fig.colorbar(cs, ax=ax, label="test accuracy (%) on the plane")
    for r in results:
        if not r.plane:
            continue
        color, style = STYLE.get(r.name, (None, "-"))
        off = max(c[2] for c in r.plane)
        ax.plot([c[0] for c in r.plane], [c[1] for c in r.plane], style, color=color, lw=2,
                label=f"{r.name} (max distance from the plane {off:.2f})")
    for label, (x, y) in plane_points.items():
        ax.plot([x], [y], "ko")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="along w2 - w1", ylabel="toward the Bezier middle point", aspect="equal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, fontsize=8)
    ax.set_title("paths projected on the plane of (w1, w2, Bezier middle point)", fontsize=10)
    _save(fig, file)
