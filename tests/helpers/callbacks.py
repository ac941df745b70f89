"""Traversal callbacks for tests: a crash right after a chosen checkpoint, or after a number of
step records."""
from geodesic.core.traverse import Callback


class Kill(Callback):
    """Simulates a crash right after the checkpoint of ``at_step`` is written."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_checkpoint(self, step, file):
        if step == self.at_step:
            raise KeyboardInterrupt


class KillAfter(Callback):
    """Counts the step records it sees and raises KeyboardInterrupt after ``limit`` of them."""

    def __init__(self, limit=10 ** 9):
        self.limit, self.calls = limit, 0

    def on_step(self, record, w):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt  # as a kill would stop it
