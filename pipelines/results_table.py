"""Per-seed metrics of one application summarised over seeds: mean ± sample standard deviation
of every figure per method, written as ``<application>.json`` (per seed and summary),
``<application>.md`` (the table) and ``<application>.png`` (means with ±1 std bars).

The rows of each application: sparsify, one per method and level (test accuracy, cumulative
evaluations and seconds up to the level); continual, one per scenario and method (ACC, BWT,
forgetting, evaluations, seconds); connect, one per method (min and mean test accuracy along
the path, barrier, evaluations, seconds), with min(endpoints) beside them; hybrid, one per
method and level (accuracy over all tasks, the earlier tasks and the new task, evaluations and
seconds up to the level), with the base network's beside them.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from geodesic.common.plots import plt, save_figure
from geodesic.core.io import write_json

FIELDS = {
    "sparsify": ("test_acc", "val_acc", "grad_evals", "seconds"),
    "continual": ("acc", "bwt", "forgetting", "val_acc", "grad_evals", "seconds"),
    "connect": ("min_acc", "mean_acc", "barrier", "val_min_acc", "grad_evals", "seconds"),
    "hybrid": ("acc", "old_acc", "new_acc", "val_acc", "grad_evals", "seconds"),
}


def rows_of(application: str, metrics: dict) -> dict[str, dict]:
    """{row name: {field: value}} of one seed's metrics file."""
    fields = FIELDS[application]
    if application == "sparsify":
        out = {"dense": {"test_acc": metrics["dense"]["test_acc"],
                         "val_acc": metrics["dense"]["val_acc"]}}
        for method, levels in metrics["methods"].items():
            for level, row in levels.items():
                out[f"{method}@{level}"] = {k: row[k] for k in fields}
        return out
    if application == "hybrid":
        out = {"base": {k: metrics["base"][k] for k in fields if k in metrics["base"]}}
        out.update({f"{method}@{level}": {k: row[k] for k in fields}
                    for method, levels in metrics["methods"].items()
                    for level, row in levels.items()})
        return out
    if application == "continual":
        return {f"{scenario}/{method}": {k: row[k] for k in fields}
                for scenario, block in metrics["scenarios"].items()
                for method, row in block["methods"].items()}
    ends = metrics["endpoints"]
    out = {"endpoints": {"min_acc": min(ends["w1_test_acc"], ends["w2_test_acc"])}}
    out.update({method: {k: row[k] for k in fields if k in row}
                for method, row in metrics["methods"].items()})
    return out


def summarise(application: str, preset: str, per_seed: dict[int, dict]) -> dict:
    """The results document: per-seed rows and, per row and field, mean, std and values."""
    seeds = {str(i): rows_of(application, m) for i, m in sorted(per_seed.items())}
    names = list(next(iter(seeds.values())))
    summary = {}
    for name in names:
        fields = next(iter(seeds.values()))[name]
        summary[name] = {}
        for field in fields:
            values = [rows[name][field] for rows in seeds.values() if name in rows]
            summary[name][field] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values}
    return {"application": application, "preset": preset, "seeds": len(seeds),
            "summary": summary, "per_seed": seeds}


def _cell(entry: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if entry is None:
        return "-"
    return f"{scale * entry['mean']:.{digits}f} ± {scale * entry['std']:.{digits}f}"


def markdown(doc: dict) -> str:
    app, summary = doc["application"], doc["summary"]
    head = (f"# `{app}` on `{doc['preset']}`: mean ± std over {doc['seeds']} seeds\n\n"
            "Accuracies, BWT and forgetting in %; barrier in nats of loss; evaluations = forward+backward-equivalent passes (one "
            "metric-vector product = one SGD step's gradient); seconds = wall-clock.\n\n")
    keys = [k for k in FIELDS[app] if k not in ("grad_evals", "seconds")]
    lines = [f"| row | {' | '.join(keys)} | evaluations | seconds |",
             "|---|" + "---|" * (len(keys) + 2)]
    for name, entry in summary.items():
        cells = [_cell(entry.get(k), 100.0 if "acc" in k or k in ("forgetting", "bwt") else 1.0,
                       1 if "acc" in k else 2) for k in keys]
        evals = _cell(entry.get("grad_evals"), 1.0, 0)
        seconds = _cell(entry.get("seconds"), 1.0, 1)
        lines.append(f"| {name} | {' | '.join(cells)} | {evals} | {seconds} |")
    return head + "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> Path:
    """The headline figure of every row (test accuracy, ACC or min accuracy) with ±1 std."""
    key = {"sparsify": "test_acc", "continual": "acc", "connect": "min_acc",
           "hybrid": "acc"}[doc["application"]]
    rows = [(n, e[key]) for n, e in doc["summary"].items() if key in e]
    fig, ax = plt.subplots(figsize=(7.2, 0.3 * len(rows) + 1.6))
    ax.barh([n for n, _ in rows], [100 * e["mean"] for _, e in rows],
            xerr=[100 * e["std"] for _, e in rows], color="tab:blue", alpha=0.7, capsize=3)
    low = min(100 * e["mean"] - 100 * e["std"] for _, e in rows)
    ax.set_xlim(max(0.0, low - 5), 100)
    ax.invert_yaxis()
    ax.set(xlabel=f"{key} (%)", title=f"{doc['application']} on {doc['preset']} "
           f"({doc['seeds']} seeds)")
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)


def write_results(folder: Path, doc: dict) -> list[Path]:
    name = doc["application"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{name}.json", doc)
    (folder / f"{name}.md").write_text(markdown(doc))
    return [folder / f"{name}.json", folder / f"{name}.md", plot(doc, folder / f"{name}.png")]
