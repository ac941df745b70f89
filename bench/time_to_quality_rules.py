"""The rules of bench/time_to_quality.py (pure: no torch, no runs) and its Markdown tables.

Rows are one method's results, one per factor f of the ladder: {method, factor, score,
grad_evals, seconds, valid}. Per seed the target is the highest valid score at f = 1 among the
baselines (every method not in ``GEODESICS``); a method's time to quality is the row of the
first factor whose valid score reaches it (``time_to``); the application's target is met when
a geodesic (the paper's walk or one of its variants, each judged alone) reaches it in every seed
with mean evaluations at most ``HALF`` the best baseline's (``summarise``).
"""
from __future__ import annotations

import statistics

HALF = 0.5  # the target: the geodesic within this share of the best baseline's evaluations
GEODESICS = ("geodesic", "geodesic_task", "geodesic_aligned", "geodesic_task_inputs",
             "geodesic_replay")
FIXED = ("magnitude", "obd", "linear", "aligned")  # no budget: one run serves every factor
PREFIX = {"connect": ("geodesic", "geodesic_aligned")}  # capped runs are prefixes of one run
TOL = 1e-9


def reaches(score: float, target: float) -> bool:
    return score >= target - TOL


def rule(application: str, method: str) -> str:
    if method in FIXED:
        return "fixed"
    return "prefix" if method in PREFIX.get(application, ()) else "ladder"


def at_factor(rows: list[dict], factor: float) -> dict:
    return next(r for r in rows if abs(r["factor"] - factor) < TOL)


def time_to(rows: list[dict], target: float) -> dict | None:
    """The first factor (ascending) of a valid row reaching ``target``; else the first at the
    method's best score (``reached`` False); None when no row is valid."""
    valid = sorted((r for r in rows if r["valid"]), key=lambda r: r["factor"])
    if not valid:
        return None
    hit = next((r for r in valid if reaches(r["score"], target)), None)
    best = hit or next(r for r in valid if r["score"] == max(v["score"] for v in valid))
    return {"reached": hit is not None, **{k: best[k] for k in
                                           ("factor", "grad_evals", "seconds", "score")}}


def best_baseline(rows: dict[str, list[dict]]) -> str:
    """The baseline with the highest valid score at f = 1 (the first listed on a tie)."""
    finals = {m: at_factor(r, 1.0) for m, r in rows.items() if m not in GEODESICS}
    finals = {m: r["score"] for m, r in finals.items() if r["valid"]}
    return max(finals, key=lambda m: (finals[m], -list(finals).index(m)))


def prefixes(run: dict, caps: dict[float, int]) -> list[dict]:
    """The rows at every factor of one run capped at the largest of ``caps`` ({f: cap}): the
    same run where it ended (valid) within the cap, a stopped walk (not valid) elsewhere."""
    return [{**run, "factor": f, "cap": cap, "valid": run["valid"] and run["steps"] <= cap}
            for f, cap in sorted(caps.items())]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(per_seed: dict[str, dict[str, list[dict]]]) -> dict:
    """Per method over the seeds (in the order given; the methods every seed has): times to
    quality, final scores (and final ``parts``, e.g. per scenario, when rows have them); the
    target and whether met."""
    seeds = list(per_seed)
    best = {s: best_baseline(per_seed[s]) for s in seeds}
    target = {s: at_factor(per_seed[s][best[s]], 1.0)["score"] for s in seeds}
    methods = {}
    for m in [m for m in per_seed[seeds[0]] if all(m in per_seed[s] for s in seeds)]:
        times = [time_to(per_seed[s][m], target[s]) for s in seeds]
        finals = [at_factor(per_seed[s][m], 1.0) for s in seeds]
        found = [t for t in times if t is not None]
        methods[m] = {"reached": sum(bool(t and t["reached"]) for t in times), "times": times,
                      "final_score": mean_std([f["score"] for f in finals]),
                      "final_evals": mean_std([f["grad_evals"] for f in finals]),
                      "final_valid": sum(f["valid"] for f in finals),
                      "final_parts": {k: mean_std([f["parts"][k] for f in finals])
                                      for k in finals[0].get("parts", {})}}
        if found:
            methods[m].update(evals=mean_std([t["grad_evals"] for t in found]),
                              seconds=mean_std([t["seconds"] for t in found]))
    baseline = [time_to(per_seed[s][best[s]], target[s]) for s in seeds]
    best_evals = statistics.fmean(t["grad_evals"] for t in baseline)
    met_by = [m for m, r in methods.items() if m in GEODESICS and r["reached"] == len(seeds)
              and r["evals"][0] <= HALF * best_evals]
    return {"seeds": seeds, "best_baseline": best, "target": target, "best_evals": best_evals,
            "best_seconds": statistics.fmean(t["seconds"] for t in baseline),
            "met": bool(met_by), "met_by": met_by, "methods": methods}


# --- report ---------------------------------------------------------------------------------


def pm(value: tuple[float, float], fmt: str, scale: float = 1.0) -> str:
    return f"{scale * value[0]:{fmt}} ± {scale * value[1]:{fmt}}"


def verdict(s: dict) -> str:
    """The sentences under an application's table: the target, how far each geodesic got and
    whether one met it."""
    n = len(s["seeds"])
    best = ", ".join(f"{s['best_baseline'][k]} {100 * s['target'][k]:.1f}" for k in s["seeds"])
    text = [f"Target per seed (the best baseline's final val score): {best}; the best baseline "
            f"reaches it in {s['best_evals']:.0f} evaluations ({s['best_seconds']:.1f} s) on "
            "average."]
    for m, g in s["methods"].items():
        if m not in GEODESICS:
            continue
        if g["reached"] < n:
            text.append(f"{m} reaches it in {g['reached']}/{n} seeds.")
            continue
        evals, seconds = g["evals"][0], g["seconds"][0]
        ratio = evals / s["best_evals"] if s["best_evals"] > 0 else float("inf")
        text.append(f"{m}: {evals:.0f} evaluations ({seconds:.1f} s), {ratio:.2f}x the best "
                    f"baseline's (target <= {HALF}x).")
    met = f"met by {', '.join(s['met_by'])}" if s["met"] else "not met"
    return " ".join(text + [f"**{met}**."])


def application_table(application: str, s: dict) -> str:
    n = len(s["seeds"])
    parts = any(r["final_parts"] for r in s["methods"].values())
    lines = ["| method | rule | reached | evaluations to quality | seconds to quality | "
             "final val score (f = 1) | evaluations at f = 1 |" + (" final val parts |" if parts
                                                                    else ""),
             "|---" * (7 + parts) + "|"]
    for m, r in s["methods"].items():
        found = sum(t is not None for t in r["times"])
        mark = "" if r["reached"] == n else " *"
        evals = pm(r["evals"], ".0f") + mark if found else "no path"
        seconds = pm(r["seconds"], ".1f") + mark if found else "-"
        final = pm(r["final_score"], ".1f", 100) + (
            "" if r["final_valid"] == n else f" ({n - r['final_valid']} stopped short)")
        extra = (" " + ", ".join(f"{k} {pm(v, '.1f', 100)}" for k, v in r["final_parts"].items())
                 + " |") if parts else ""
        lines.append(f"| {m} | {rule(application, m)} | {r['reached']}/{n} | {evals} | "
                     f"{seconds} | {final} | {pm(r['final_evals'], '.0f')} |{extra}")
    return "\n".join(lines + ["", verdict(s)])


def markdown(doc: dict) -> str:
    parts = [f"Time to quality, preset {doc['preset']}, seeds {', '.join(doc['seeds'])}, ladder "
             f"{', '.join(f'{f:.3g}' for f in doc['ladder'])}; mean ± sample std over the seeds "
             "(* : includes a seed that never reached the target, counted at its own best)."]
    for application, s in doc["summary"].items():
        parts.append(f"### {application}\n\n{application_table(application, s)}")
    return "\n\n".join(parts) + "\n"
