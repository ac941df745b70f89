"""The fixed rules of bench/quality.py's time-to-quality ladder (no benchmark figures)."""
import pytest

from bench.quality_rules import (holds_from, levels_to, repeated, scaled, time_to_quality,
                           timed_methods, upper_bound, within)


def rows(*flags):
    return [{"factor": f, "within": ok} for f, ok in zip((0.25, 0.5, 1.0, 2.0), flags)]


def test_first_budget_that_meets_the_target_is_the_time_to_quality():
    ladder = rows(False, True, False, True)
    assert time_to_quality(ladder)["factor"] == 0.5
    assert time_to_quality(list(reversed(ladder)))["factor"] == 0.5  # ladder order, not list order
    assert holds_from(ladder) == 2.0  # a later miss resets the "holds from" rung
    assert time_to_quality(rows(False, False, False, False)) is None
    assert holds_from(rows(False, False, False, False)) is None
    assert holds_from(rows(False, True, True, True)) == 0.5
    assert not upper_bound(ladder) and upper_bound(rows(True, True, False, True))
    assert not upper_bound([{"factor": 0.0, "within": True}])  # a free method is exact


def test_within_one_point_and_scaled_caps():
    assert within(0.9733, 0.9833) and not within(0.9732, 0.9833)
    assert within(0.99, 0.98)
    assert scaled(50, 0.25) == 12 and scaled(10, 0.25) == 2  # floor: never above the budget
    assert scaled(300, 1.0) == 300 and scaled(10, 0.01, minimum=1) == 1


def test_levels_up_to_the_target_sparsity():
    assert levels_to([0.5, 0.8, 0.9, 0.95], 0.9) == [0.5, 0.8, 0.9]
    assert levels_to([0.5, 0.92, 0.98], 0.9) == [0.5, 0.92]
    with pytest.raises(ValueError):
        levels_to([0.5, 0.8], 0.9)


def test_repeats_keep_the_first_run_and_the_median_time():
    runs = iter([{"acc": 1.0, "seconds": 3.0}, {"acc": 1.0, "seconds": 1.0}])
    row = repeated(lambda: next(runs), 3, first={"acc": 1.0, "seconds": 2.0})
    assert row["seconds"] == 2.0 and row["seconds_runs"] == [2.0, 3.0, 1.0]
    assert row["repeats_agree"]
    runs = iter([{"acc": 0.5, "seconds": 1.0}])
    assert not repeated(lambda: next(runs), 2, first={"acc": 1.0, "seconds": 1.0})["repeats_agree"]


def test_the_ladder_times_imp_but_not_imp_long_its_copy_at_five_times_the_budget():
    from geodesic.sparsify.settings import SparsifySettings

    s = SparsifySettings(methods=["geodesic", "imp", "imp_long", "distill_finetune"])
    assert timed_methods(s) == ["geodesic", "imp", "distill_finetune"]
