"""Settings of base-network training, the ``train`` section of params.yaml."""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.core.settings import DEVICES, ParamsError, setting


@dataclass
class TrainSettings:
    """SGD (or Adam) with a cosine schedule, one network per seed."""

    seeds: list[int] = setting([0, 1], "one base network per seed", low=0)
    optimizer: str = setting("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = setting(0.05, "learning rate", low=0.0, low_open=True)
    momentum: float = setting(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(5e-4, "L2 weight decay", low=0.0)
    epochs: int = setting(30, "training epochs", low=1)
    batch_size: int = setting(64, "minibatch size", low=1)
    device: str = setting("auto", "auto picks CUDA when available", choices=DEVICES)
    cpu_threads: int = setting(0, "torch CPU threads (0: torch's default)", low=0)

    def validate(self, prefix: str) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"{prefix}.seeds", self.seeds, "distinct seeds")
        if not self.seeds:
            raise ParamsError(f"{prefix}.seeds", self.seeds, "at least one seed")
