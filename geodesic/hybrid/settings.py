"""Settings of the hybrid application, the ``hybrid`` section of params.yaml."""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.core.settings import GeodesicSettings, ParamsError, setting
from geodesic.sparsify.settings import LevelSchedule

HYBRID_METHODS = ("geodesic", "prune_finetune", "finetune_prune_finetune")
HYBRID_SCENARIOS = ("task-il", "class-il")


@dataclass
class HybridSettings(GeodesicSettings, LevelSchedule):
    """The hybrid task: from a network trained on the first ``n_tasks - 1`` tasks of a class
    split, reach a p-sparse network that has also learned the last task and kept the others.

    The geodesic walks once through the sparsity ``levels``; each baseline runs once per level
    with the geodesic's evaluations up to that level."""

    seed: int = setting(0, "seed of the base network, the minibatch orders and the memory",
                        low=0)
    n_tasks: int = setting(5, "tasks of the class split: the first n_tasks - 1 are the base "
                           "network's, the last is the new task (must divide the classes)",
                           low=2)
    scenario: str = setting("class-il", "task-il: each task on its own classes; class-il: one "
                            "shared head", choices=HYBRID_SCENARIOS)
    base_epochs: int = setting(10, "epochs of the base network's training on the first tasks "
                               "(the rest of its training is the train section's)", low=1)
    memory_per_class: int = setting(20, "remembered training examples per class of the first "
                                    "tasks (geodesic metric inputs; replay examples)", low=1)
    levels: list[float] = setting([0.8, 0.9], "sparsity schedule (increasing)", low=0.0,
                                  high=1.0, high_open=True)
    eta: float = setting(0.2, "Euclidean length of each step", low=0.0, low_open=True)
    steps_per_level: int = setting(50, "step cap of one level; its mask is applied at the cap",
                                   low=1)
    level_tol: float = setting(0.2, "a level's approach ends once ||P_p(w) - w|| <= level_tol",
                               low=0.0)
    settle_steps: int = setting(20, "steps at each level after its mask (task and anchor "
                                "directions only, in the sparse subspace)", low=0)
    max_steps: int = setting(0, "step budget of the whole traversal (0: levels x "
                             "(steps_per_level + settle_steps))", low=0)
    task_beta: float = setting(1.0, "weight of the new task's direction -grad L_new", low=0.0,
                               low_open=True)
    anchor: float = setting(1.0, "alpha: weight of the pull back to the base network's "
                            "function on the memory (0: none)", low=0.0)
    methods: list[str] = setting(list(HYBRID_METHODS), "methods to run (the geodesic first: "
                                 "the baselines get its evaluations)", choices=HYBRID_METHODS)
    batch_size: int = setting(64, "new-task minibatch (the geodesic's gradient, the baselines' "
                              "SGD)", low=1)
    replay_batch: int = setting(32, "baselines: memory examples replayed per step", low=1)
    momentum: float = setting(0.9, "baselines: SGD momentum", low=0.0, high=1.0, high_open=True)
    prune_finetune_lr: float = setting(0.01, "prune_finetune: SGD learning rate", low=0.0,
                                       low_open=True)
    finetune_prune_finetune_lr: float = setting(0.01, "finetune_prune_finetune: SGD learning "
                                                "rate of both its phases", low=0.0,
                                                low_open=True)
    stop_every: int = setting(30, "baselines: evaluations between checks of the new task's "
                              "validation loss", low=1)
    patience: int = setting(0, "baselines: stop after this many checks without improvement "
                            "(0: never; the geodesic's length is set by its levels)", low=0)
    cpu_threads: int = setting(1, "torch CPU threads (0: torch's default)", low=0)

    def validate(self, prefix: str) -> None:
        self.validate_schedule(prefix)
        if not self.methods or self.methods[0] != "geodesic":
            raise ParamsError(f"{prefix}.methods", self.methods, "'geodesic' first: the "
                              "baselines get its evaluations per level")
