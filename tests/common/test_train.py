"""Base-network training: learns, is deterministic, resumes exactly, stops on divergence."""
import pytest
import torch

from geodesic.common.data import load_dataset
from geodesic.common.models import build_model
from geodesic.common.settings import TrainSettings
from geodesic.common.train import train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def fresh(ds, seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", ds.in_shape, ds.num_classes, (32,))


def test_training_learns_and_is_deterministic(digits):
    cfg = TrainSettings(epochs=3, batch_size=64, lr=0.05)
    a, b = fresh(digits), fresh(digits)
    ra, rb = train(a, digits, cfg), train(b, digits, cfg)
    assert ra.test_acc > 0.85
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [h["train_loss"] for h in ra.history] == [h["train_loss"] for h in rb.history]


def test_interrupted_training_resumes_to_the_same_weights(digits, tmp_path):
    full = fresh(digits)
    train(full, digits, TrainSettings(epochs=4), directory=tmp_path / "full")

    class Stop(Exception):
        pass

    def crash_after_two(record, model):
        if record["epoch"] == 2:
            raise Stop

    cut = fresh(digits)
    with pytest.raises(Stop):
        train(cut, digits, TrainSettings(epochs=4), directory=tmp_path / "cut",
              on_epoch=crash_after_two)
    resumed = fresh(digits, seed=123)  # weights come from the checkpoint, not the init
    result = train(resumed, digits, TrainSettings(epochs=4), directory=tmp_path / "cut")
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert all(torch.equal(p, q) for p, q in zip(full.parameters(), resumed.parameters()))


def test_divergence_stops_with_a_clear_error(digits):
    with pytest.raises(FloatingPointError, match="training diverged"):
        train(fresh(digits), digits, TrainSettings(epochs=2, lr=1e6, momentum=0.0))
