"""The dimensions of a method's search space (``geodesic.tuning.SPACES``): each names the
settings key it sets, draws its values from an Optuna trial and the settings it starts from
(``draw``) and describes itself for the tuning report (``describe``)."""
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
