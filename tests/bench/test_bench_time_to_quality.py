"""The fixed rules of bench/time_to_quality.py (no benchmark figures, no runs)."""
from bench.time_to_quality_rules import (best_baseline, markdown, prefixes, rule, summarise,
                                         time_to)

LADDER = (0.25, 0.5, 1.0, 2.0)


def rows(method, scores, evals=(100, 200, 400, 800), valid=(True,) * 4):
    return [{"method": method, "factor": f, "score": s, "grad_evals": e, "seconds": e / 100,
             "valid": v} for f, s, e, v in zip(LADDER, scores, evals, valid)]


def test_time_to_quality_is_the_first_factor_that_reaches_the_target():
    ladder = rows("m", [0.90, 0.95, 0.93, 0.96])
    hit = time_to(ladder, 0.95)
    assert hit["reached"] and hit["factor"] == 0.5 and hit["grad_evals"] == 200
    assert time_to(list(reversed(ladder)), 0.95)["factor"] == 0.5  # ladder order, not list order
    assert time_to(ladder, 0.9500000000001)["factor"] == 0.5  # float noise is no miss
    assert time_to(ladder, 0.9501)["factor"] == 2.0


def test_a_method_that_never_reaches_gets_its_own_best_at_its_first_factor():
    miss = time_to(rows("m", [0.90, 0.94, 0.94, 0.93]), 0.95)
    assert not miss["reached"] and miss["factor"] == 0.5 and miss["score"] == 0.94


def test_rows_that_are_not_valid_never_count():
    stopped = rows("g", [0.99, 0.99, 0.96, 0.96], valid=(False, False, True, True))
    assert time_to(stopped, 0.95)["factor"] == 1.0
    assert time_to(rows("g", [0.99] * 4, valid=(False,) * 4), 0.95) is None


def test_the_best_baseline_is_the_highest_final_score_among_the_non_geodesics():
    methods = {"geodesic": rows("geodesic", [0.9, 0.9, 0.99, 0.99]),
               "a": rows("a", [0.9, 0.97, 0.95, 0.99]),  # higher at other factors only
               "b": rows("b", [0.9, 0.9, 0.96, 0.9]),
               "c": rows("c", [0.9, 0.9, 0.97, 0.9], valid=(True, True, False, True))}
    assert best_baseline(methods) == "b"
    methods["d"] = rows("d", [0.9, 0.9, 0.96, 0.9])
    assert best_baseline(methods) == "b"  # a tie goes to the first listed


def test_a_capped_run_is_a_prefix_of_the_longest_run():
    run = {"method": "geodesic", "factor": 2.0, "score": 0.95, "grad_evals": 700,
           "seconds": 3.0, "valid": True, "steps": 64}
    out = prefixes(run, {0.125: 37, 0.25: 64, 1.0: 300, 2.0: 600})  # arrived at step 64
    assert [r["valid"] for r in out] == [False, True, True, True]
    assert [r["factor"] for r in out] == [0.125, 0.25, 1.0, 2.0]
    assert all(r["grad_evals"] == 700 for r in out)
    assert not any(r["valid"] for r in prefixes({**run, "valid": False}, {1.0: 300}))


def test_rules_per_method():
    assert rule("connect", "geodesic") == "prefix" and rule("sparsify", "geodesic") == "ladder"
    assert rule("connect", "aligned") == "fixed" and rule("connect", "bezier") == "ladder"


def seed(geodesic, baseline, fixed_score=0.5):
    return {"geodesic": rows("geodesic", geodesic), "bezier": rows("bezier", baseline),
            "linear": [{**r, "grad_evals": 0, "seconds": 0.0} for r in
                       rows("linear", [fixed_score] * 4)]}


def test_met_when_the_geodesic_needs_at_most_half_the_best_baselines_evaluations():
    # the baseline reaches its own final 0.95 at x1 (400); the geodesic at x0.5 (200): met
    s = summarise({"0": seed([0.9, 0.95, 0.96, 0.96], [0.9, 0.9, 0.95, 0.95]),
                   "1": seed([0.9, 0.97, 0.97, 0.97], [0.9, 0.9, 0.96, 0.96])})
    assert s["met"] and s["best_evals"] == 400 and s["methods"]["geodesic"]["evals"] == (200, 0)
    assert s["target"] == {"0": 0.95, "1": 0.96}
    # one seed at x1: mean 300 > 200
    s = summarise({"0": seed([0.9, 0.95, 0.96, 0.96], [0.9, 0.9, 0.95, 0.95]),
                   "1": seed([0.9, 0.9, 0.96, 0.96], [0.9, 0.9, 0.96, 0.96])})
    assert not s["met"] and s["methods"]["geodesic"]["evals"][0] == 300
    # the baseline already reaches its final score at x0.25: the geodesic must beat 50
    s = summarise({"0": seed([0.9, 0.95, 0.96, 0.96], [0.95, 0.95, 0.95, 0.95])})
    assert not s["met"] and s["best_evals"] == 100


def test_not_met_when_a_seed_never_reaches_or_the_best_baseline_is_free():
    s = summarise({"0": seed([0.96] * 4, [0.9, 0.9, 0.95, 0.95]),
                   "1": seed([0.94] * 4, [0.9, 0.9, 0.95, 0.95])})
    assert not s["met"] and s["methods"]["geodesic"]["reached"] == 1
    free = summarise({"0": seed([0.99] * 4, [0.9] * 4, fixed_score=0.95)})
    assert free["best_baseline"] == {"0": "linear"} and free["best_evals"] == 0
    assert not free["met"]


def test_markdown_names_the_verdict():
    s = summarise({"0": seed([0.9, 0.95, 0.96, 0.96], [0.9, 0.9, 0.95, 0.95]),
                   "1": seed([0.9, 0.97, 0.97, 0.97], [0.9, 0.9, 0.96, 0.96])})
    text = markdown({"preset": "p", "seeds": ["0", "1"], "ladder": list(LADDER),
                     "summary": {"connect": s}})
    assert "**met by geodesic**" in text and "| geodesic | prefix | 2/2 | 200 ± 0 |" in text
    s = summarise({"0": seed([0.94] * 4, [0.9, 0.9, 0.95, 0.95])})
    assert "geodesic reaches it in 0/1 seeds. **not met**" in markdown(
        {"preset": "p", "seeds": ["0"], "ladder": list(LADDER), "summary": {"connect": s}})


def test_each_geodesic_is_judged_alone_and_none_is_a_baseline():
    one = {**seed([0.9, 0.9, 0.96, 0.96], [0.9, 0.9, 0.95, 0.95]),
           "geodesic_replay": rows("geodesic_replay", [0.9, 0.95, 0.99, 0.99])}
    s = summarise({"0": one})
    assert s["best_baseline"] == {"0": "bezier"}  # the variant's 0.99 sets no target
    assert s["met_by"] == ["geodesic_replay"] and s["met"]
    assert s["methods"]["geodesic"]["evals"] == (400, 0)  # the paper's walk: not within half


def test_summary_keeps_the_final_parts():
    one = seed([0.96] * 4, [0.9] * 4)
    for r in one["bezier"]:
        r["parts"] = {"task-il": 0.99, "class-il": 0.81}
    for m in ("geodesic", "linear"):
        for r in one[m]:
            r["parts"] = {"task-il": 0.98, "class-il": 0.8}
    s = summarise({"0": one})
    assert s["methods"]["bezier"]["final_parts"]["class-il"] == (0.81, 0.0)
    assert "final val parts" in markdown({"preset": "p", "seeds": ["0"], "ladder": list(LADDER),
                                          "summary": {"continual": s}})


def test_a_method_missing_from_a_seed_is_left_out_of_the_summary():
    with_variant = {**seed([0.96] * 4, [0.9, 0.9, 0.95, 0.95]),
                    "geodesic_replay": rows("geodesic_replay", [0.97] * 4)}
    s = summarise({"0": with_variant, "1": seed([0.96] * 4, [0.9, 0.9, 0.95, 0.95])})
    assert "geodesic_replay" not in s["methods"] and s["methods"]["geodesic"]["reached"] == 2
