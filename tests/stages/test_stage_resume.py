"""A baseline's training inside each application stage, killed with SIGKILL at a random moment:
the rerun resumes from the baseline's last checkpoint and writes bitwise the metrics of an
uninterrupted run (wall-clock and CPU times aside).

Each stage runs as its own process on a tiny copy of the digits pipeline. The moment is chosen
by watching the baseline's checkpoint folder: once its training has reached a step drawn at
random from the first half of the steps it takes (read off an uninterrupted run), the stage is
killed a random 0-50 ms later, so the kill lands inside that baseline; the test checks it did.
"""
import json
import os
import random
import re

import pytest
import yaml

from geodesic.core.path import checkpoint_files
from tests.helpers.stage_processes import copy_inputs, kill_and_rerun, run_stage, strip_timing

TINY = {
    "train": {"seeds": [0, 1], "epochs": 2},
    "sparsify": {"methods": ["geodesic", "imp"], "levels": [0.5, 0.9], "steps_per_level": 5,
                 "settle_steps": 1, "metric_batch": 64, "cg_iters": 2, "eval_every": 5,
                 "checkpoint_every": 10, "imp_batch": 8},
    "continual": {"n_tasks": 2, "scenarios": ["class-il"], "baselines": ["ewc"], "budget": 120,
                  "batch_size": 16, "cg_iters": 2, "metric_batch": 64, "eval_every": 50,
                  "stop_every": 50, "patience": 0, "fisher_samples": 64,
                  "checkpoint_every": 10},
    "connect": {"baselines": ["bezier"], "bezier_steps": 200, "bezier_batch": 32,
                "checkpoint_every": 10, "max_steps": 5, "eval_every": 5, "points": 5,
                "plane_grid": 0, "metric_batch": 64, "cg_iters": 2, "bn_inputs": 256},
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Prepared data and trained base networks of the tiny pipeline, and the stages'
    environment (one MLflow store for the module; one torch thread, the same in every run)."""
    root = tmp_path_factory.mktemp("base")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    env = dict(os.environ, PYTHONPATH=str(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", OMP_NUM_THREADS="1")
    for stage in ("prepare", "train"):
        result = run_stage(stage, root, env)
        assert result.returncode == 0, result.stderr[-3000:]
    return root, env


def steps_done(project, folders: str) -> int:
    """The steps a baseline has checkpointed: over its checkpoint folders matching ``folders``
    (one per continual task), the sum of the newest checkpoint's step."""
    total = 0
    for folder in project.glob(folders):
        files = checkpoint_files(folder)
        total += int(re.search(r"step-(\d+)", files[0].name).group(1)) if files else 0
    return total


@pytest.mark.parametrize("stage, folders, logged", [
    ("continual", "checkpoints/continual/*/class-il/ewc/task*", r"class-il/ewc/task\d"),
    pytest.param("sparsify", "checkpoints/sparsify/*/imp", "/imp", marks=pytest.mark.slow),
    pytest.param("connect", "checkpoints/connect/*/bezier", "/bezier",
                 marks=pytest.mark.slow),
], ids=["continual-ewc", "sparsify-imp", "connect-bezier"])
def test_a_stage_killed_inside_a_baseline_resumes_to_the_same_metrics(stage, folders, logged,
                                                                      base, tmp_path):
    """``folders``: the baseline's checkpoint folders (one per continual task); ``logged``:
    how the rerun names the folder it resumes from."""
    root, env = base
    reference = copy_inputs(root, tmp_path / "reference")
    result = run_stage(stage, reference, env)
    assert result.returncode == 0, result.stderr[-3000:]
    total = steps_done(reference, folders)
    every = TINY[stage]["checkpoint_every"]
    assert total >= 4 * every, f"the baseline took {total} steps: too few to kill it inside"
    target = random.randint(1, total // 2)

    cut = copy_inputs(root, tmp_path / "cut")
    metrics = f"metrics/{stage}.json"

    def inside() -> None:
        assert target <= steps_done(cut, folders) < total, "the kill missed the baseline"

    rerun = kill_and_rerun(stage, cut, env, lambda: steps_done(cut, folders) >= target,
                           jitter=0.05, metrics=metrics, killed=inside)
    assert re.search(logged + r": resuming from step \d+", rerun.stderr)
    resumed = json.loads((cut / metrics).read_text())
    uninterrupted = json.loads((reference / metrics).read_text())
    assert strip_timing(resumed) == strip_timing(uninterrupted)
