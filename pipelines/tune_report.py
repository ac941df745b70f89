"""The report of one ``geodesic tune`` run: ``<application>.json`` (every trial),
``<application>.md`` (search spaces, chosen values, scores) and ``<application>.png``
(validation score of every trial and the best so far, against the trial number)."""
from __future__ import annotations

import json
from pathlib import Path

from geodesic.common.plots import plt, save_figure
from geodesic.core.io import write_json


def _space(space: list[dict]) -> str:
    if not space:
        return "nothing to tune (1 evaluation)"
    parts = []
    for dim in space:
        if "choices" in dim:
            parts.append(f"`{dim['key']}` in {dim['choices']}")
        elif "shares" in dim:
            shares = ", ".join(f"{s:.3g}" for s in dim["shares"])
            parts.append(f"`{dim['key']}` a share in [{shares}] of `{dim['of']}` (their sum fixed)")
        else:
            kind, (low, high) = next((k, v) for k, v in dim.items() if k not in ("key", "or"))
            parts.append(f"`{dim['key']}` {kind} [{low:g}, {high:g}]"
                         + (f" or {dim['or']:g}" if "or" in dim else ""))
    return "; ".join(parts)


# what ``--sequences`` counts where it may exceed 1 (hybrid's is always 1)
SEQUENCES = {"continual": "task sequences", "sparsify": "base networks",
             "connect": "pairs of base networks"}


def markdown(doc: dict) -> str:
    lines = [f"# Tuning `{doc['application']}` on `{doc['preset']}`", "",
             f"Optuna TPE (seed {doc['seed']}), median pruning, {doc['trials']} trials per "
             "method with hyperparameters; scores on the validation split only"
             + (f", each the mean over {doc['sequences']} {SEQUENCES[doc['application']]}"
                if doc.get("sequences", 1) > 1 else "") + ".", "",
             "| method | search space | trials (complete / pruned / failed) | chosen values | "
             "validation score | evaluations | seconds |", "|---|---|---|---|---|---|---|"]
    for method, r in doc["methods"].items():
        states = [t["state"] for t in r["trials"]]
        counts = " / ".join(str(states.count(s)) for s in ("complete", "pruned", "fail"))
        best = r["best"]
        values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best["values"].items()) or "-"
        evals = f"{best['evals']:.0f}" if best["evals"] is not None else "-"
        seconds = f"{best['seconds']:.1f}" if best["seconds"] is not None else "-"
        lines.append(f"| {method} | {_space(r['space'])} | {counts} | {values} | "
                     f"{best['score']:.4f} | {evals} | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, r in doc["methods"].items():
        done = [(t["number"], t["score"]) for t in r["trials"] if t["score"] is not None]
        if not done:
            continue
        xs, ys = zip(*done)
        line = ax.plot(xs, [max(ys[: i + 1]) for i in range(len(ys))], label=f"{method} best")
        ax.scatter(xs, ys, s=12, color=line[0].get_color(), alpha=0.6)
    ax.set(xlabel="trial", ylabel="validation score",
           title=f"tuning {doc['application']} ({doc['preset']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_report(folder: Path, doc: dict) -> list[Path]:
    name = doc["application"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{name}.json", json.loads(json.dumps(doc, default=float)))
    (folder / f"{name}.md").write_text(markdown(doc))
    return [folder / f"{name}.json", folder / f"{name}.md", plot(doc, folder / f"{name}.png")]
