"""The dimensions of a method's search space (``geodesic.tuning.SPACES``): each names the
settings key it sets, draws its value from an Optuna trial (``sample``) and describes itself for
the tuning report (``describe``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogRange:
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
class IntRange:
    key: str
    low: int
    high: int

    def sample(self, trial) -> int:
        return trial.suggest_int(self.key, self.low, self.high)

    def describe(self) -> dict:
        return {"key": self.key, "integer": [self.low, self.high]}


@dataclass(frozen=True)
class Choice:
    key: str
    values: tuple

    def sample(self, trial):
        return trial.suggest_categorical(self.key, list(self.values))

    def describe(self) -> dict:
        return {"key": self.key, "choices": list(self.values)}


Dimension = LogRange | IntRange | Choice
