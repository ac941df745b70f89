"""The dimensions of a search space: what each draws from a trial, how it describes itself."""
import optuna
import pytest

from geodesic.tuning import SPACES, LogRange, StepSplit
from pipelines.tune_report import _space


def test_a_log_range_or_zero_samples_exactly_zero_as_its_own_choice():
    dim = LogRange("anchor", 0.1, 10.0, or_zero=True)
    assert dim.sample(optuna.trial.FixedTrial({"anchor=0": True})) == 0.0
    assert dim.sample(optuna.trial.FixedTrial({"anchor=0": False, "anchor": 0.5})) == 0.5
    assert LogRange("anchor", 0.1, 10.0).sample(optuna.trial.FixedTrial({"anchor": 0.5})) == 0.5
    assert _space([dim.describe()]) == "`anchor` log-uniform [0.1, 10] or 0"
    connect = {d.key: d for d in SPACES["connect"]["geodesic_aligned"]}
    assert connect["aligned_anchor"].or_zero and "aligned_constant_pull" in connect


def test_a_step_split_moves_steps_between_the_phases_and_keeps_their_sum():
    dim = StepSplit("settle_steps", "steps_per_level", (1 / 6, 1 / 2, 0.99))
    base = {"settle_steps": 10, "steps_per_level": 50, "eta": 0.3}

    def draw(share):
        return dim.draw(optuna.trial.FixedTrial({"settle_steps_share": share}), base)

    assert draw(1 / 6) == {"settle_steps": 10, "steps_per_level": 50}
    assert draw(1 / 2) == {"settle_steps": 30, "steps_per_level": 30}
    assert draw(0.99) == {"settle_steps": 59, "steps_per_level": 1}  # one approach step at least
    with pytest.raises(ValueError, match="nothing to divide"):
        dim.draw(optuna.trial.FixedTrial({"settle_steps_share": 0.5}),
                 {"settle_steps": 0, "steps_per_level": 1})
    assert _space([dim.describe()]) == ("`settle_steps` a share in [0.167, 0.5, 0.99] of "
                                        "`settle_steps + steps_per_level` (their sum fixed)")
    assert any(isinstance(d, StepSplit) for d in SPACES["sparsify"]["geodesic"])
