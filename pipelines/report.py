"""The comparison of a sweep's points: a table (markdown for Prefect and MLflow, CSV for tools)
and a bar chart of one metric per point.

A row is ``{"point": i, "experiment": name, "overrides": {...}, "metrics": {...}, "error": str}``;
the columns are the overridden keys, then the metrics (``<file stem>.<key>``): by default the
test-quality ones that vary across the points (headline ones, those with at most one dot, first),
never timing or compute.
"""
from __future__ import annotations

import csv
import io

MAX_MARKDOWN_METRICS = 10


# what a method achieved on the test split (higher or lower is better), never what it spent
QUALITY = ("test_acc", "test_acc_mean", "test_acc_min", "acc", "min_acc", "mean_acc",
           "end_acc", "barrier", "bwt", "forgetting")


def metric_columns(rows: list[dict], chosen: list[str] | None = None) -> list[str]:
    """The metric columns: each ``chosen`` name as a full key or a short one (every key that
    ends with ``.<name>``: ``geodesic.0.9.test_acc``, ``min_acc``); by default the quality
    metrics (:data:`QUALITY`) that vary across the points, headline ones first, else every
    metric that varies."""
    keys = sorted({k for row in rows for k in row["metrics"]},
                  key=lambda k: (k.count(".") > 1, k))
    if chosen:
        return [k for name in chosen for k in keys if k == name or k.endswith(f".{name}")]
    varying = [k for k in keys if len({row["metrics"].get(k) for row in rows}) > 1]
    quality = [k for k in varying if k.rsplit(".", 1)[-1] in QUALITY]
    return quality or varying or keys


def _cell(value) -> str:  # metrics: four significant digits
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain(value) -> str:
    return "" if value is None else str(value)


def table(rows: list[dict], columns: list[str]) -> tuple[list[str], list[list]]:
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    header = ["point", "experiment", *keys, *columns, "error"]
    body = [[row["point"], row["experiment"], *(row["overrides"].get(k) for k in keys),
             *(row["metrics"].get(c) for c in columns), row.get("error") or ""] for row in rows]
    return header, body


def markdown(rows: list[dict], title: str, metrics: list[str] | None = None) -> str:
    columns = metric_columns(rows, metrics)
    header, body = table(rows, columns[:MAX_MARKDOWN_METRICS])
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first_metric = header.index("error") - len(columns[:MAX_MARKDOWN_METRICS])
    lines += ["| " + " | ".join((_cell(v) if i >= first_metric else _plain(v)).replace("|", "/")
                                for i, v in enumerate(line)) + " |" for line in body]
    if len(columns) > MAX_MARKDOWN_METRICS:
        lines += ["", f"{len(columns) - MAX_MARKDOWN_METRICS} more metric columns in "
                  "comparison.csv."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    header, body = table(rows, sorted({k for row in rows for k in row["metrics"]}))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue()


def figure(rows: list[dict], metric: str | None = None):
    """A bar chart of ``metric`` (default: the first varying headline metric) per point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = metric_columns(rows, [metric] if metric else None)
    metric = columns[0] if columns else metric
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    varying = [k for k in keys if len({str(row["overrides"].get(k)) for row in rows}) > 1]
    labels = [", ".join(f"{k}={row['overrides'].get(k)}" for k in varying) or str(row["point"])
              for row in rows]
    values = [row["metrics"].get(metric, float("nan")) if metric else float("nan")
              for row in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    ax.bar(range(len(rows)), values, color="tab:blue")
    ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric or "no metric")
    ax.set_title(f"sweep: {metric}" if metric else "sweep")
    for i, v in enumerate(values):
        if v == v:
            ax.annotate(f"{v:.4g}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return fig
