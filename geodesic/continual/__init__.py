"""Application (ii), continual learning: toward low loss on a new task while the outputs on a
memory of earlier inputs are held; tasks, protocol, objective, baselines, run, metrics, report."""
