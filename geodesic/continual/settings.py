"""Settings of application (ii), the ``continual`` section of params.yaml."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from geodesic.core.settings import GeodesicSettings, ParamsError, setting

CONTINUAL_SCENARIOS = ("task-il", "class-il")
CONTINUAL_BASELINES = ("finetune", "ewc", "si", "lwf", "replay", "derpp")
CONTINUAL_GEODESICS = ("geodesic", "geodesic_task_inputs", "geodesic_replay")
OWN_VALUES = {"geodesic_task_inputs": {"eta": "task_inputs_eta", "anchor": "task_inputs_anchor",
                                       "cg_iters": "task_inputs_cg_iters",
                                       "beta": "task_inputs_beta"},
              "geodesic_replay": {"eta": "geodesic_replay_eta",
                                  "anchor": "geodesic_replay_anchor",
                                  "cg_iters": "geodesic_replay_cg_iters",
                                  "beta": "geodesic_replay_beta",
                                  "memory_labels": "geodesic_replay_labels",
                                  "anchor_target": "geodesic_replay_anchor_target"}}


@dataclass
class ContinualSettings(GeodesicSettings):
    """Application (ii): learn new tasks along paths that keep the earlier tasks' outputs.

    Every method (the geodesic and each baseline) learns each task with the same budget of
    evaluations, minibatch order, stop rule and memory. ``max_steps`` caps each task's traversal."""

    eta: float = setting(1.0, "Euclidean length of each geodesic step", low=0.0, low_open=True)
    seed: int = setting(0, "seed of the initial network, the minibatch orders, the memory and "
                        "the permutations", low=0)
    benchmark: str = setting("split", "tasks: class split (split-MNIST style) or pixel-permuted",
                             choices=("split", "permuted"))
    n_tasks: int = setting(5, "number of tasks (split: must divide the number of classes)", low=1)
    scenarios: list[str] = setting(list(CONTINUAL_SCENARIOS), "task-il: the task's classes "
                                   "only; class-il: one shared head", choices=CONTINUAL_SCENARIOS)
    baselines: list[str] = setting(list(CONTINUAL_BASELINES), "baselines run next to the geodesic",
                                   choices=CONTINUAL_BASELINES)
    memory_per_class: int = setting(20, "remembered training examples per class of each earlier "
                                    "task (geodesic metric inputs; replay examples)", low=1)
    batch_size: int = setting(64, "new-task minibatch (the geodesic's gradient, the baselines' "
                              "SGD)", low=1)
    budget: int = setting(200, "evaluations (forward+backward passes, metric products) per task "
                          "and method", low=0)
    stop_every: int = setting(30, "evaluations between checks of the new task's validation loss",
                              low=1)
    patience: int = setting(5, "stop after this many checks without improvement (0: never)",
                            low=0)
    anchor: float = setting(1.0, "alpha: weight of the pull back to the task's starting function "
                            "on the memory (0: none)", low=0.0)
    geodesics: list[str] = setting(["geodesic"], "geodesic walks run: geodesic (the metric on "
                                   "the memory, the paper's), geodesic_task_inputs (on the "
                                   "memory and task_inputs of the new task's own inputs per "
                                   "class) and geodesic_replay (the paper's metric, the "
                                   "memory's labels in the loss)", choices=CONTINUAL_GEODESICS)
    task_inputs: int = setting(20, "geodesic_task_inputs: training inputs per class of the new "
                               "task in the metric's pool (labels unused; never those the "
                               "memory keeps): steps also measure the change of the new "
                               "task's outputs, which the anchor does not hold", low=1)
    task_inputs_eta: float | None = setting(None, "eta of geodesic_task_inputs (null: eta)",
                                            low=0.0, low_open=True)
    task_inputs_anchor: float | None = setting(None, "anchor of geodesic_task_inputs (null: "
                                               "anchor)", low=0.0)
    task_inputs_cg_iters: int | None = setting(None, "cg_iters of geodesic_task_inputs (null: "
                                               "cg_iters)", low=1)
    task_inputs_beta: float | None = setting(None, "beta of geodesic_task_inputs (null: beta)",
                                             low=0.0, low_open=True)
    anchor_target: str = setting("start", "what the anchor holds on the memory: start (the "
                                 "task's starting outputs, the paper's) or stored (each "
                                 "example's outputs when it entered the memory, as DER keeps "
                                 "them)", choices=("start", "stored"))
    memory_labels: float = setting(0.0, "gamma: weight of the memory's labels (CE on a "
                                   "replay_batch of the memory) in the walk's loss (0: the "
                                   "paper's walk, inputs only)", low=0.0)
    geodesic_replay_labels: float = setting(1.0, "gamma of geodesic_replay, the paper's walk "
                                            "with the memory's labels in its loss", low=0.0,
                                            low_open=True)
    geodesic_replay_anchor_target: str | None = setting(None, "anchor_target of "
                                                        "geodesic_replay (null: anchor_target)",
                                                        choices=("start", "stored"))
    geodesic_replay_eta: float | None = setting(None, "eta of geodesic_replay (null: eta)",
                                                low=0.0, low_open=True)
    geodesic_replay_anchor: float | None = setting(None, "anchor of geodesic_replay (null: "
                                                   "anchor)", low=0.0)
    geodesic_replay_cg_iters: int | None = setting(None, "cg_iters of geodesic_replay (null: "
                                                   "cg_iters)", low=1)
    geodesic_replay_beta: float | None = setting(None, "beta of geodesic_replay (null: beta)",
                                                 low=0.0, low_open=True)
    lr: float = setting(0.01, "SGD learning rate of the first task (the same for every "
                        "method: nothing is remembered yet)", low=0.0, low_open=True)
    finetune_lr: float = setting(0.01, "finetune: SGD learning rate of the later tasks",
                                 low=0.0, low_open=True)
    ewc_lr: float = setting(0.01, "ewc: SGD learning rate of the later tasks", low=0.0,
                            low_open=True)
    si_lr: float = setting(0.01, "si: SGD learning rate of the later tasks", low=0.0,
                           low_open=True)
    lwf_lr: float = setting(0.01, "lwf: SGD learning rate of the later tasks", low=0.0,
                            low_open=True)
    replay_lr: float = setting(0.01, "replay: SGD learning rate of the later tasks", low=0.0,
                               low_open=True)
    derpp_lr: float = setting(0.01, "derpp: SGD learning rate of the later tasks", low=0.0,
                              low_open=True)
    momentum: float = setting(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    ewc_lambda: float = setting(1e4, "EWC penalty strength", low=0.0)
    ewc_mode: str = setting("separate", "EWC: a term per task, or one online term",
                            choices=("separate", "online"))
    ewc_gamma: float = setting(1.0, "online EWC decay of the old Fisher", low=0.0, high=1.0)
    fisher_samples: int = setting(256, "examples of the task for EWC's Fisher", low=1)
    si_c: float = setting(10.0, "SI penalty strength", low=0.0)
    si_xi: float = setting(0.1, "SI damping xi", low=0.0, low_open=True)
    lwf_alpha: float = setting(1.0, "LwF distillation weight", low=0.0)
    lwf_temperature: float = setting(2.0, "LwF distillation temperature", low=0.0, low_open=True)
    replay_batch: int = setting(32, "replay and derpp: memory examples per step", low=1)
    derpp_alpha: float = setting(0.5, "derpp: weight of the stored-logit (MSE) term", low=0.0)
    derpp_beta: float = setting(0.5, "derpp: weight of the memory's label (CE) term", low=0.0)
    eval_every: int = setting(100, "validation accuracy of the tasks so far every k "
                              "evaluations (the axis all methods share)", low=1)
    cpu_threads: int = setting(1, "torch CPU threads (0: torch's default); one is fastest for "
                               "small models and on a shared machine", low=0)

    def for_method(self, name: str) -> "ContinualSettings":
        """These settings as method ``name`` runs with them: its own values (``OWN_VALUES``)
        where they are set, the shared ones elsewhere."""
        own = {key: getattr(self, field) for key, field in OWN_VALUES.get(name, {}).items()
               if getattr(self, field) is not None}
        return dataclasses.replace(self, **own) if own else self

    def validate(self, prefix: str) -> None:
        for key in ("scenarios", "baselines", "geodesics"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ParamsError(f"{prefix}.{key}", values, "distinct names")
        if not self.scenarios:
            raise ParamsError(f"{prefix}.scenarios", self.scenarios, "at least one scenario")
