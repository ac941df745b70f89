"""Traversal callbacks for tests: a crash right after a chosen checkpoint."""
from geodesic.core.traverse import Callback


class Kill(Callback):
    """Simulates a crash right after the checkpoint of ``at_step`` is written."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_checkpoint(self, step, file):
        if step == self.at_step:
            raise KeyboardInterrupt
