"""The sections of ``params.yaml`` as typed settings (see :mod:`geodesic.settings`).

``load_params("params.yaml")`` returns a :class:`Params`; stages, flows and the command line all
go through it, so every entry point rejects the same bad input with the same message.
"""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.settings import ParamsError, load_yaml, parse_section, setting

DATASETS = ("digits", "mnist", "cifar10", "cifar100")
MODELS = ("mlp", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn")
SOLVERS = ("qp", "cg", "penalty")
OUTPUTS = ("logits", "probs", "fisher")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataSettings:
    name: str = setting("digits", "dataset", choices=DATASETS)
    root: str = setting("data/raw", "folder of the torchvision files (mnist, cifar)")
    val_fraction: float = setting(0.1, "fraction of the training set held out for validation",
                                  low=0.0, high=0.5, high_open=True)
    train_limit: int = setting(0, "keep at most this many training examples (0: all)", low=0)
    test_limit: int = setting(0, "keep at most this many test examples (0: all)", low=0)
    seed: int = setting(0, "seed of the train/validation split", low=0)


@dataclass
class ModelSettings:
    name: str = setting("mlp", "architecture", choices=MODELS)
    widths: list[int] = setting([300, 100], "hidden widths of the mlp", low=1)


@dataclass
class TrainSettings:
    seeds: list[int] = setting([0, 1], "one base network per seed", low=0)
    optimizer: str = setting("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = setting(0.05, "learning rate", low=0.0, low_open=True)
    momentum: float = setting(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(5e-4, "L2 weight decay", low=0.0)
    epochs: int = setting(30, "training epochs", low=1)
    batch_size: int = setting(64, "minibatch size", low=1)
    device: str = setting("auto", "auto picks CUDA when available", choices=DEVICES)

    def validate(self, prefix: str) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"{prefix}.seeds", self.seeds, "distinct seeds")
        if not self.seeds:
            raise ParamsError(f"{prefix}.seeds", self.seeds, "at least one seed")


@dataclass
class GeodesicSettings:
    """Settings shared by every traversal: the metric, the step solver and the bookkeeping."""

    solver: str = setting("cg", "step solver", choices=SOLVERS)
    eta: float = setting(0.05, "Euclidean length of each step", low=0.0, low_open=True)
    beta: float = setting(1.0, "weight of the objective's direction", low=0.0, low_open=True)
    output: str = setting("logits", "output space of the metric", choices=OUTPUTS)
    metric_batch: int = setting(256, "inputs the metric averages over", low=1)
    cg_iters: int = setting(10, "conjugate-gradient iterations per step (cg)", low=1)
    damping: float = setting(1e-3, "damping lambda of g + lambda I (cg)", low=0.0, low_open=True)
    cg_mode: str = setting("trust_region", "cg: exact Krylov trust-region step, or CG then "
                           "rescaling to eta", choices=("trust_region", "rescale"))
    qp_iters: int = setting(20, "inner iterations of the constrained solve (qp)", low=1)
    max_steps: int = setting(2000, "step budget of the whole traversal", low=0)
    eval_every: int = setting(10, "held-out evaluation every k steps", low=1)
    checkpoint_every: int = setting(50, "path checkpoint every k steps", low=1)
    device: str = setting("auto", "auto picks CUDA when available", choices=DEVICES)


# --- sparsify -------------------------------------------------------------------------------


@dataclass
class SparsifySettings(GeodesicSettings):
    """Application (i): from the dense base network to sparse ones along a geodesic."""

    seed: int = setting(0, "which base network (a seed of train.seeds)", low=0)
    levels: list[float] = setting([0.5, 0.8, 0.9, 0.95, 0.98], "sparsity schedule",
                                  low=0.0, high=1.0, high_open=True)


# --- continual ------------------------------------------------------------------------------


CONTINUAL_SCENARIOS = ("task-il", "class-il")
CONTINUAL_BASELINES = ("finetune", "ewc", "si", "lwf", "replay")


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
    lr: float = setting(0.01, "SGD learning rate (baselines; every method's first task)",
                        low=0.0, low_open=True)
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
    replay_batch: int = setting(32, "replay: memory examples per step", low=1)
    eval_every: int = setting(100, "validation accuracy of the tasks so far every k "
                              "evaluations (the axis all methods share)", low=1)
    cpu_threads: int = setting(1, "torch CPU threads (0: torch's default); one is fastest for "
                               "small models and on a shared machine", low=0)

    def validate(self, prefix: str) -> None:
        for key in ("scenarios", "baselines"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ParamsError(f"{prefix}.{key}", values, "distinct names")
        if not self.scenarios:
            raise ParamsError(f"{prefix}.scenarios", self.scenarios, "at least one scenario")


# --- connect --------------------------------------------------------------------------------


@dataclass
class ConnectSettings(GeodesicSettings):
    """Application (iii): a high-accuracy path between two independently trained networks."""

    seeds: list[int] = setting([0, 1], "the two base networks: from seeds[0] to seeds[1]", low=0)


# --- all sections ---------------------------------------------------------------------------


@dataclass
class Params:
    data: DataSettings = setting(DataSettings(), "dataset and splits")
    model: ModelSettings = setting(ModelSettings(), "architecture")
    train: TrainSettings = setting(TrainSettings(), "base-network training")
    sparsify: SparsifySettings = setting(SparsifySettings(), "sparsification (stage sparsify)")
    continual: ContinualSettings = setting(ContinualSettings(), "continual learning (stage "
                                           "continual)")
    connect: ConnectSettings = setting(ConnectSettings(), "mode connectivity (stage connect)")


def parse_params(data: dict) -> Params:
    return parse_section(Params, data)


def load_params(path="params.yaml") -> Params:
    return parse_params(load_yaml(path))
