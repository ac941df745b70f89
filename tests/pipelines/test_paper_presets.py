"""The README's paper experiments (``scale=paper``), each composed from conf/ as its
``dvc exp run`` command composes it, with tiny limits added, run through the stages it reproduces
on small test-written files in torchvision's layout (slow)."""
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.presets import write
from stages.connect import connect_stage
from stages.continual import continual_stage
from stages.prepare import prepare
from stages.sparsify import sparsify_stage
from stages.train import train_stage
from tests.helpers.raw_files import write_cifar10, write_cifar100, write_noise_mnist

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

# name: (stage, presets); the README's command is `dvc exp run <stage> -S <preset> ...`
EXPERIMENTS = {
    "sparsify-mlp-mnist": ("sparsify", ["data=mnist", "model=mlp", "scale=paper"]),
    "sparsify-vgg11-cifar10": ("sparsify", ["data=cifar10", "model=vgg11_bn", "scale=paper"]),
    "continual-mlp-mnist": ("continual", ["data=mnist", "model=mlp", "scale=paper"]),
    "continual-vgg16-cifar100": ("continual", ["data=cifar100", "model=vgg16_bn",
                                               "scale=paper"]),
    "connect-vgg16-cifar10": ("connect", ["data=cifar10", "model=vgg16_bn", "scale=paper"]),
}
TINY = {
    "sparsify": ["train.epochs=1", "train.batch_size=16", "sparsify.levels=[0.5,0.9]",
                 "sparsify.steps_per_level=2", "sparsify.settle_steps=1",
                 "sparsify.metric_batch=8", "sparsify.cg_iters=2", "sparsify.finetune_batch=8",
                 "sparsify.distill_batch=8", "sparsify.imp_batch=8", "sparsify.eval_every=1",
                 "sparsify.checkpoint_every=2"],
    "continual": ["continual.budget=6", "continual.batch_size=8", "continual.memory_per_class=1",
                  "continual.metric_batch=8", "continual.cg_iters=2", "continual.stop_every=4",
                  "continual.eval_every=4", "continual.checkpoint_every=2",
                  "continual.fisher_samples=4", "continual.replay_batch=4"],
    "connect": ["train.epochs=1", "train.batch_size=16", "connect.max_steps=2",
                "connect.cg_iters=2", "connect.metric_batch=8", "connect.eval_every=1",
                "connect.checkpoint_every=1", "connect.bezier_steps=2", "connect.bezier_batch=8",
                "connect.points=3", "connect.bn_inputs=16", "connect.plane_grid=2"],
}
STAGES = {"sparsify": (prepare, train_stage, sparsify_stage),
          "continual": (prepare, continual_stage),
          "connect": (prepare, train_stage, connect_stage)}


def command(stage: str, presets: list[str]) -> str:
    return f"dvc exp run {stage} " + " ".join(f"-S {p}" for p in presets)


def test_the_readme_gives_each_experiment_its_command():
    for stage, presets in EXPERIMENTS.values():
        assert command(stage, presets) in README


def write_files(data: str, raw: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    if data == "mnist":
        write_noise_mnist(raw, rng)
    elif data == "cifar10":
        write_cifar10(raw, rng, monkeypatch)
    else:
        write_cifar100(raw, rng, monkeypatch)


@pytest.mark.slow
@pytest.mark.usefixtures("offline", "one_thread")
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_paper_experiment_runs_with_tiny_limits(name, tmp_path, monkeypatch):
    stage, presets = EXPERIMENTS[name]
    data = presets[0].split("=")[1]
    write_files(data, tmp_path / "raw", monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from geodesic.params import load_params
    write("params.yaml", presets, ROOT)
    composed = load_params("params.yaml")
    assert composed.preset.scale == "paper" and composed.model.width == 1.0
    # an eighth of the width keeps a VGG16's per-task checkpoints in megabytes, not gigabytes
    narrow = [] if composed.model.name == "mlp" else ["model.width=0.125"]
    write("params.yaml", [*presets, f"data.root={tmp_path / 'raw'}", "data.val_fraction=0.2",
                          *narrow, *TINY[stage]], ROOT)
    params = load_params("params.yaml")
    for run in STAGES[stage]:
        run(params)
    metrics = json.loads((tmp_path / "metrics" / f"{stage}.json").read_text())
    if stage == "sparsify":
        assert list(metrics["methods"]["geodesic"]) == ["0.5", "0.9"]
    elif stage == "continual":
        assert metrics["n_tasks"] == (10 if data == "cifar100" else 5)
    else:
        assert set(metrics["methods"]) == {"geodesic", "geodesic_aligned", "linear", "bezier",
                                           "aligned", "bezier_aligned"}
