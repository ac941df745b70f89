"""bench/step.py's exact tensor-byte count of a step's peak memory."""
import torch

from bench.step import peak_allocated_bytes


def test_peak_allocated_bytes_is_the_most_bytes_live_at_once():
    def go():
        a = torch.empty(1000)  # 4000 bytes
        b = torch.empty(2000, dtype=torch.float64)  # 16000 bytes, a still alive
        del a, b
        c = torch.empty(3000)  # 12000 bytes, alone
        del c

    assert peak_allocated_bytes(go) == 20000


def test_tensors_live_before_the_call_do_not_count():
    kept = torch.ones(50000)
    assert peak_allocated_bytes(lambda: kept.zero_()) == 0


def test_frees_of_what_setup_allocated_lower_the_count():
    held = {}

    def setup():
        held["x"] = torch.empty(1000)  # 4000 bytes, live when go starts

    def go():
        del held["x"]
        return torch.empty(1000)  # 4000 bytes again: nothing above the start

    assert peak_allocated_bytes(go, setup) == 0
