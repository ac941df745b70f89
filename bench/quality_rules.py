"""The rules of bench/quality.py (pure: no runs; tested in tests/bench/test_bench_quality.py)
and its reports: which factor of the ladder first meets the target, and the tables."""
from __future__ import annotations

import math
import statistics
from typing import Callable

from bench.common import table

TOLERANCE = 0.01  # one point of accuracy
TARGET_SPARSITY = 0.9
NO_SCORING = 10 ** 9  # eval_every past any step cap: no held-out scoring along the path


def timed_methods(s) -> list[str]:
    """The sparsify methods a ladder times: not those that are another method at a multiple of
    its budget (the ladder already gives that method every multiple)."""
    from geodesic.sparsify.settings import SCALED_COPIES
    return [m for m in s.methods if m not in SCALED_COPIES]


def scaled(n: int, factor: float, minimum: int = 0) -> int:
    """floor(n * factor) (a scaled cap never exceeds the scaled budget), at least ``minimum``."""
    return max(minimum, int(math.floor(n * factor + 1e-9)))


def within(value: float, reference: float, tolerance: float = TOLERANCE) -> bool:
    """value is at most ``tolerance`` below reference (accuracies as fractions)."""
    return value >= reference - tolerance - 1e-9


def levels_to(levels: list[float], target: float) -> list[float]:
    """The schedule up to and including its first level >= target."""
    for i, p in enumerate(levels):
        if p >= target - 1e-12:
            return list(levels[:i + 1])
    raise ValueError(f"no sparsity level >= {target} in {levels}")


def time_to_quality(rows: list[dict]) -> dict | None:
    """The row of the smallest factor that met the target (``within``), else None."""
    return next((r for r in sorted(rows, key=lambda r: r["factor"]) if r["within"]), None)


def upper_bound(rows: list[dict]) -> bool:
    """Whether the time to quality is only an upper bound: the smallest nonzero budget of the
    ladder already met the target (the ladder does not bracket it)."""
    hit, ladder = time_to_quality(rows), sorted(r["factor"] for r in rows)
    return hit is not None and hit["factor"] > 0 and hit["factor"] == ladder[0]


def holds_from(rows: list[dict]) -> float | None:
    """The smallest factor from which every larger factor met the target too, else None."""
    start = None
    for r in sorted(rows, key=lambda r: r["factor"]):
        start = (r["factor"] if start is None else start) if r["within"] else None
    return start


def repeated(run: Callable[[], dict], repeats: int, first: dict | None = None) -> dict:
    """``run()`` ``repeats`` times (``first``: a run already made): the first run's row with
    ``seconds`` the median over the runs, ``seconds_runs`` all of them and ``repeats_agree``
    whether every other entry was the same in every run."""
    rows = ([first] if first is not None else []) + [run() for _ in range(repeats - bool(first))]
    row = dict(rows[0])
    row["seconds_runs"] = [r["seconds"] for r in rows]
    row["seconds"] = statistics.median(row["seconds_runs"])
    row["repeats_agree"] = all({k: v for k, v in r.items() if k != "seconds"}
                               == {k: v for k, v in rows[0].items() if k != "seconds"}
                               for r in rows)
    return row


def summary(rows: list[dict], methods: list[str]) -> dict:
    out = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        hit = time_to_quality(mine)
        val = time_to_quality([{**r, "within": r["val_within"]} for r in mine])
        out[method] = {"reached": hit is not None, "factor": hit and hit["factor"],
                       "grad_evals": hit and hit["grad_evals"], "seconds": hit and hit["seconds"],
                       "holds_from": holds_from(mine), "upper_bound": upper_bound(mine),
                       "val_factor": val and val["factor"]}
    return out


# --- report ---------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def summary_table(result: dict, methods: list[str], acc_key: str) -> str:
    rows = []
    for method in methods:
        s = result["summary"][method]
        hit = next((r for r in result["rows"] if r["method"] == method and s["reached"]
                    and r["factor"] == s["factor"]), None)
        best = max((r for r in result["rows"] if r["method"] == method),
                   key=lambda r: r[acc_key])
        rows.append({"method": method, "reached": "yes" if hit else "never",
                     "at x": (f"<={hit['factor']:g}" if s["upper_bound"] else hit["factor"])
                     if hit else "-",
                     "evals": f"{hit['grad_evals']:.0f}" if hit else "-",
                     "seconds": f"{hit['seconds']:.2f}" if hit else "-",
                     acc_key: pct(hit[acc_key]) if hit else f"best {pct(best[acc_key])}",
                     "holds from x": s["holds_from"] if s["holds_from"] is not None else "-",
                     "val: at x": s["val_factor"] if s["val_factor"] is not None else "never"})
    return table(rows, ["method", "reached", "at x", "evals", "seconds", acc_key,
                        "holds from x", "val: at x"])


def sparsify_report(result: dict, methods: list[str]) -> str:
    rows = [{"method": r["method"], "x": r["factor"], "budget": f"{r['budget']:.0f}",
             "evals": f"{r['grad_evals']:.0f}", "seconds": f"{r['seconds']:.2f}",
             "test_acc": pct(r["test_acc"]), "val_acc": pct(r["val_acc"]),
             "within": "yes" if r["within"] else ""} for r in result["rows"]]
    d = result["dense"]
    return (f"sparsify: level {result['level']}, dense test {pct(d['test_acc'])} (target >= "
            f"{pct(d['test_acc'] - TOLERANCE)}), B = {sum(result['budget_per_level'].values()):.0f}"
            f" units to the level\n"
            + table(rows, ["method", "x", "budget", "evals", "seconds", "test_acc", "val_acc",
                           "within"])
            + "\n\nsparsify: time to quality\n" + summary_table(result, methods, "test_acc"))


def connect_report(result: dict) -> str:
    rows = [{"method": r["method"], "x": r["factor"], "cap": r["cap"], "steps": r["steps"],
             "evals": r["grad_evals"], "seconds": f"{r['seconds']:.2f}",
             "min_acc": pct(r["min_acc"]), "gap": f"{100 * r['gap']:.2f}",
             "end_dist": f"{r['end_distance']:.3f}", "within": "yes" if r["within"] else ""}
            for r in result["rows"]]
    e = result["endpoints"]
    return (f"connect: endpoints test {pct(e['w1']['test_acc'])} / {pct(e['w2']['test_acc'])}"
            f" (target min >= {pct(result['reference_min_acc'] - TOLERANCE)}); gap = points "
            "below min(endpoints)\n"
            + table(rows, ["method", "x", "cap", "steps", "evals", "seconds", "min_acc", "gap",
                           "end_dist", "within"])
            + "\n\nconnect: time to quality\n"
            + summary_table(result, ["linear", "geodesic", "bezier"], "min_acc"))
