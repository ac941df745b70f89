"""Settings of application (i), the ``sparsify`` section of params.yaml."""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.core.settings import GeodesicSettings, ParamsError, setting

SPARSIFY_METHODS = ("geodesic", "geodesic_task", "magnitude", "obd", "magnitude_finetune",
                    "distill_finetune", "imp", "imp_long")
TARGET_RULES = ("magnitude", "obd", "obd_layer")
BUDGETED = ("magnitude_finetune", "distill_finetune", "imp", "imp_long")  # the walk's evals
SCALED_COPIES = ("imp_long",)  # another method at a multiple of its budget: a ladder covers it


class LevelSchedule:
    """The step budget and checks of a walk through sparsity ``levels`` (fields ``levels``,
    ``steps_per_level``, ``settle_steps``, ``max_steps`` of the settings that mix it in)."""

    @property
    def step_budget(self) -> int:
        """max_steps, or levels x (steps_per_level + settle_steps) when it is 0."""
        return self.max_steps or (self.steps_per_level + self.settle_steps) * len(self.levels)

    def validate_schedule(self, prefix: str) -> None:
        if self.levels != sorted(set(self.levels)) or not self.levels:
            raise ParamsError(f"{prefix}.levels", self.levels, "strictly increasing levels")
        if self.max_steps and self.max_steps < len(self.levels):
            raise ParamsError(f"{prefix}.max_steps", self.max_steps,
                              f"0 or at least one step per level (>= {len(self.levels)})")
        if len(set(self.methods)) != len(self.methods):
            raise ParamsError(f"{prefix}.methods", self.methods, "distinct names")


@dataclass
class SparsifySettings(GeodesicSettings, LevelSchedule):
    """Application (i): from the dense base network to sparse ones along a geodesic."""

    seed: int = setting(0, "which base network (a seed of train.seeds)", low=0)
    eta: float = setting(0.2, "Euclidean length of each step", low=0.0, low_open=True)
    cg_iters: int = setting(5, "Lanczos / conjugate-gradient iterations per step (cg)", low=1)
    levels: list[float] = setting([0.5, 0.8, 0.9, 0.95, 0.98], "sparsity schedule (increasing)",
                                  low=0.0, high=1.0, high_open=True)
    steps_per_level: int = setting(50, "step cap of one level; its mask is applied at the cap",
                                   low=1)
    level_tol: float = setting(0.2, "a level's approach ends once ||P_p(w) - w|| <= level_tol",
                               low=0.0)
    settle_steps: int = setting(10, "steps at each level after its mask (anchor and task "
                                "directions only, in the sparse subspace)", low=0)
    max_steps: int = setting(0, "step budget of the whole traversal (0: levels x "
                             "(steps_per_level + settle_steps))", low=0)
    anchor: float = setting(2.0, "alpha of the anchored form v = P_p(w) - w - alpha grad D(w); "
                            "0: the paper's plain form", low=0.0)
    task_beta: float = setting(0.3, "weight of the labelled task direction -grad L in "
                               "geodesic_task", low=0.0)
    ranking: str = setting("global", "magnitude ranking", choices=("global", "layerwise"))
    target: str = setting("magnitude", "which coordinates the geodesic's target prunes: smallest "
                          "|w_i| (magnitude) or smallest w_i^2 g_ii, g's exact diagonal at the "
                          "level's start (obd; obd_layer: over its layer's mean); the one-shot "
                          "obd baseline uses obd_layer when chosen here, else obd",
                          choices=TARGET_RULES)
    include: list[str] = setting(["weights"], "what may be pruned",
                                 choices=("weights", "biases", "norm"))
    exclude: list[str] = setting([], "parameter-name prefixes never pruned, e.g. '5.' or "
                                 "'classifier'")
    methods: list[str] = setting(list(SPARSIFY_METHODS), "methods to run",
                                 choices=SPARSIFY_METHODS)
    finetune_lr: float = setting(0.03, "learning rate of magnitude_finetune", low=0.0,
                                 low_open=True)
    finetune_batch: int = setting(256, "minibatch size of magnitude_finetune", low=1)
    distill_lr: float = setting(0.003, "learning rate of distill_finetune", low=0.0,
                                low_open=True)
    distill_batch: int = setting(256, "minibatch size of distill_finetune", low=1)
    imp_lr: float = setting(0.03, "learning rate of imp's retraining", low=0.0, low_open=True)
    imp_batch: int = setting(64, "minibatch size of imp's retraining", low=1)
    imp_fraction: float = setting(0.2, "fraction of the remaining weights imp prunes per round",
                                  low=0.0, high=1.0, high_open=True)
    imp_rewind_epochs: int = setting(1, "imp rewinds to the base network after this many "
                                     "epochs of its training", low=0)
    imp_long_factor: float = setting(5.0, "imp_long is imp (its lr, batch, fraction, rewind) "
                                     "given this many times the geodesic's evaluations at "
                                     "every level", low=1.0)
    cpu_threads: int = setting(0, "CPU threads of torch (0: torch's default); small models run "
                           "fastest on 1", low=0)

    def validate(self, prefix: str) -> None:
        self.validate_schedule(prefix)
        needs = [m for m in self.methods if m in BUDGETED]
        if needs and "geodesic" not in self.methods:
            raise ParamsError(f"{prefix}.methods", self.methods,
                              f"'geodesic' too: {', '.join(needs)} get budgets from its compute per level")
        if self.settle_steps and self.anchor == 0 and "geodesic" in self.methods:
            raise ParamsError(f"{prefix}.settle_steps", self.settle_steps,
                              "0 when anchor is 0 (with no anchor the settling direction is 0)")
