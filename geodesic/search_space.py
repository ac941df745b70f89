"""Every method's search space (``SPACES[application][method]``, the dimensions a trial
samples) and the dimensions themselves: each names the settings key it sets, draws its values
from an Optuna trial and the settings it starts from (``draw``) and describes itself for the
tuning report (``describe``)."""
from __future__ import annotations

from dataclasses import dataclass


class OneKey:
    """A dimension that sets its ``key`` alone, to what ``sample`` draws."""

    def draw(self, trial, base: dict) -> dict:
        return {self.key: self.sample(trial)}


@dataclass(frozen=True)
class LogRange(OneKey):
    """Log-uniform on [low, high]; with ``or_zero``, also exactly 0 (a separate choice: the
    paper's unanchored form is not a point of any log range)."""

    key: str
    low: float
    high: float
    or_zero: bool = False

    def sample(self, trial) -> float:
        """The value an Optuna ``trial`` draws (3 significant digits)."""
        if self.or_zero and trial.suggest_categorical(f"{self.key}=0", [False, True]):
            return 0.0
        return float(f"{trial.suggest_float(self.key, self.low, self.high, log=True):.3g}")

    def describe(self) -> dict:
        return {"key": self.key, "log-uniform": [self.low, self.high],
                **({"or": 0.0} if self.or_zero else {})}


@dataclass(frozen=True)
class IntRange(OneKey):
    key: str
    low: int
    high: int

    def sample(self, trial) -> int:
        return trial.suggest_int(self.key, self.low, self.high)

    def describe(self) -> dict:
        return {"key": self.key, "integer": [self.low, self.high]}


@dataclass(frozen=True)
class Choice(OneKey):
    key: str
    values: tuple

    def sample(self, trial):
        return trial.suggest_categorical(self.key, list(self.values))

    def describe(self) -> dict:
        return {"key": self.key, "choices": list(self.values)}


@dataclass(frozen=True)
class StepSplit:
    """How a fixed step count divides between two phases: ``key`` gets the share s of
    total = base[key] + base[rest] (rounded, at least 1 step each) and ``rest`` the remainder, so
    the compute the preset gives (the sum) is the same in every trial."""

    key: str
    rest: str
    shares: tuple

    def draw(self, trial, base: dict) -> dict:
        total = base[self.key] + base[self.rest]
        if total < 2:
            raise ValueError(f"{self.key} + {self.rest} = {total}: nothing to divide")
        share = trial.suggest_categorical(f"{self.key}_share", list(self.shares))
        steps = min(max(round(share * total), 1), total - 1)
        return {self.key: steps, self.rest: total - steps}

    def describe(self) -> dict:
        return {"key": self.key, "shares": list(self.shares), "of": f"{self.key} + {self.rest}"}


Dimension = LogRange | IntRange | Choice | StepSplit


_ETA = LogRange("eta", 0.05, 2.0)
_ANCHOR = LogRange("anchor", 0.1, 10.0)
_SIXTHS = (1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6)
SPACES: dict[str, dict[str, list[Dimension]]] = {
    "sparsify": {
        "geodesic": [_ETA, _ANCHOR, IntRange("cg_iters", 3, 10),
                     StepSplit("settle_steps", "steps_per_level", _SIXTHS)],
        "geodesic_task": [LogRange("task_beta", 0.03, 3.0)],  # with the geodesic's values
        "magnitude": [],
        "magnitude_finetune": [LogRange("finetune_lr", 1e-3, 0.3),
                               Choice("finetune_batch", (64, 128, 256, 512))],
        "distill_finetune": [LogRange("distill_lr", 1e-4, 0.1),
                             Choice("distill_batch", (64, 128, 256, 512))],
        "imp": [LogRange("imp_lr", 1e-3, 0.3), Choice("imp_batch", (64, 128, 256)),
                Choice("imp_rewind_epochs", (0, 1, 2))],
        "imp_long": [],  # imp's values at imp_long_factor times the budget
    },
    "continual": {
        "geodesic": [LogRange("eta", 0.1, 5.0), LogRange("anchor", 0.1, 10.0),
                     IntRange("cg_iters", 3, 10), LogRange("beta", 0.3, 30.0)],
        "geodesic_task_inputs": [LogRange("task_inputs_eta", 0.1, 5.0),
                                 LogRange("task_inputs_anchor", 0.1, 10.0),
                                 IntRange("task_inputs_cg_iters", 3, 10),
                                 LogRange("task_inputs_beta", 0.3, 30.0)],
        "geodesic_replay": [LogRange("geodesic_replay_eta", 0.1, 5.0),
                            LogRange("geodesic_replay_anchor", 0.1, 10.0),
                            IntRange("geodesic_replay_cg_iters", 3, 10),
                            LogRange("geodesic_replay_beta", 0.3, 30.0),
                            LogRange("geodesic_replay_labels", 0.1, 10.0),
                            Choice("geodesic_replay_anchor_target", ("start", "stored"))],
        "finetune": [LogRange("finetune_lr", 1e-3, 0.3)],
        "ewc": [LogRange("ewc_lr", 1e-3, 0.3), LogRange("ewc_lambda", 1.0, 1e6)],
        "si": [LogRange("si_lr", 1e-3, 0.3), LogRange("si_c", 0.01, 1e3)],
        "lwf": [LogRange("lwf_lr", 1e-3, 0.3), LogRange("lwf_alpha", 0.1, 10.0),
                Choice("lwf_temperature", (1.0, 2.0, 4.0))],
        "replay": [LogRange("replay_lr", 1e-3, 0.3), Choice("replay_batch", (16, 32, 64))],
        "derpp": [LogRange("derpp_lr", 1e-3, 0.3), LogRange("derpp_alpha", 0.01, 3.0),
                  LogRange("derpp_beta", 0.01, 3.0)],
    },
    "hybrid": {
        "geodesic": [_ETA, _ANCHOR, LogRange("task_beta", 0.1, 10.0)],
        "prune_finetune": [LogRange("prune_finetune_lr", 1e-4, 0.3)],
        "finetune_prune_finetune": [LogRange("finetune_prune_finetune_lr", 1e-4, 0.3)],
    },
    "connect": {
        "geodesic": [LogRange("eta", 0.1, 2.0), LogRange("anchor", 0.1, 10.0, or_zero=True),
                     IntRange("cg_iters", 4, 12), Choice("constant_pull", (False, True)),
                     Choice("anchor_target", ("w2", "interpolated"))],
        "geodesic_aligned": [LogRange("aligned_eta", 0.1, 2.0),
                             LogRange("aligned_anchor", 0.1, 10.0, or_zero=True),
                             IntRange("aligned_cg_iters", 4, 12),
                             Choice("aligned_constant_pull", (False, True)),
                             Choice("aligned_anchor_target", ("w2", "interpolated"))],
        "linear": [],
        "aligned": [],
        "bezier": [LogRange("bezier_lr", 1e-3, 0.3), Choice("bezier_momentum", (0.0, 0.5, 0.9))],
        "bezier_aligned": [LogRange("bezier_aligned_lr", 1e-3, 0.3),
                           Choice("bezier_aligned_momentum", (0.0, 0.5, 0.9))],
    },
}
