"""The benchmarks' alternating timer."""
import time

from bench.common import Timed, alternate, ratios


def test_alternate_keeps_a_functions_own_timing_and_times_the_rest_whole():
    times = alternate({"sgd": lambda: time.sleep(0.002), "own": lambda: Timed(5.0, 1.0),
                       "pair": lambda: (7.0, 8.0)}, rounds=3, warmup=0)
    assert times["own"] == [5.0] * 3 and times["own@cpu"] == [1.0] * 3
    assert all(0.0 <= t < 1.0 for t in times["pair"])  # a plain tuple is a result, not a timing
    assert all(t >= 0.002 for t in times["sgd"])
    assert ratios(times)["own"]["ratio"] > 5.0 / 1.0  # 5 s against a few ms
