"""The Prefect flows of the project, in one importable place (deployment entrypoints
``pipelines/flows.py:reproduce`` and ``pipelines/flows.py:sweep``)."""
from pipelines.reproduce import reproduce
from pipelines.results import results
from pipelines.sweep import sweep
from pipelines.tune import tune

__all__ = ["reproduce", "results", "sweep", "tune"]
