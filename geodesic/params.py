"""The sections of ``params.yaml`` as typed settings (see :mod:`geodesic.settings`).

``load_params("params.yaml")`` returns a :class:`Params`; stages, flows and the command line all
go through it, so every entry point rejects the same bad input with the same message.
"""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.cron import CRON_ALLOWED, cron_problem
from geodesic.settings import (ParamsError, Point, apply, grid, load_yaml, lookup, parse_section,
                               parse_spec, setting, to_dict)

DATASETS = ("digits", "mnist", "cifar10", "cifar100")
MODELS = ("mlp", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn")
SOLVERS = ("qp", "cg", "penalty")
OUTPUTS = ("logits", "probs", "fisher")
DEVICES = ("auto", "cpu", "cuda")
CG_MODES = ("trust_region", "output_basis", "rescale")
DATASET_SHAPES = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10),
                  "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}
VGG_SIZE = 32  # the VGGs' five 2x2 pools need inputs whose side is a multiple of 32


@dataclass
class PresetSettings:
    """The names of the ``conf/`` presets that ``params.yaml`` was composed from (each group
    file sets its own name). No stage reads it or lists it as a DVC parameter: the values the
    presets set are what the stages depend on."""

    data: str = setting("", "data preset (conf/data/<name>.yaml); empty: not composed")
    model: str = setting("", "model preset (conf/model/<name>.yaml); empty: not composed")
    scale: str = setting("", "scale preset (conf/scale/<name>.yaml); empty: not composed")

    @property
    def name(self) -> str:
        """``<data>_<model>``: the name of the tuned group file and of the results folder."""
        return f"{self.data or 'custom'}_{self.model or 'custom'}"

    @property
    def label(self) -> str:
        """``<data>_<model> <scale>`` as run names show it; empty when not composed."""
        if not (self.data or self.model or self.scale):
            return ""
        return f"{self.name} {self.scale}".strip()


@dataclass
class DataSettings:
    name: str = setting("digits", "dataset", choices=DATASETS)
    source: str = setting("torchvision", "where the download stage takes the raw files from: "
                          "'torchvision' (downloads them) or a folder in torchvision's layout, "
                          "e.g. ../shared/data/mnist-real (relative to the project root; mnist, "
                          "cifar; digits needs none)")
    root: str = setting("data/raw", "folder inside the project where the download stage puts "
                        "the raw files (its DVC output, read by prepare)")
    val_fraction: float = setting(0.1, "fraction of the training set held out for validation",
                                  low=0.0, high=0.5, high_open=True)
    train_limit: int = setting(0, "keep at most this many training examples (0: all)", low=0)
    test_limit: int = setting(0, "keep at most this many test examples (0: all)", low=0)
    seed: int = setting(0, "seed of the train/validation split", low=0)
    size: int = setting(0, "side N of the inputs: each image zero-padded, centred, to NxN "
                        "before normalisation (0: the native size)", low=0)

    def validate(self, prefix: str) -> None:
        if not self.root.strip():
            raise ParamsError(f"{prefix}.root", self.root, "a folder")
        if not self.source.strip():
            raise ParamsError(f"{prefix}.source", self.source, "'torchvision' or a folder")
        native = DATASET_SHAPES[self.name][0][-1]
        if self.size and self.size < native:
            raise ParamsError(f"{prefix}.size", self.size, f"0 (native {native}x{native}) or "
                              f"a size >= {native}: {self.name} images are padded, never cut")

    def shape(self) -> tuple[int, int, int]:
        """The (channels, height, width) of the inputs the stages see."""
        channels, height, width = DATASET_SHAPES[self.name][0]
        return (channels, self.size, self.size) if self.size else (channels, height, width)



@dataclass
class ModelSettings:
    name: str = setting("mlp", "architecture", choices=MODELS)
    widths: list[int] = setting([300, 100], "hidden widths of the mlp", low=1)
    width: float = setting(1.0, "channel multiplier of the VGGs: a layer of c channels gets "
                           "max(1, round(c * width)); the mlp takes 1.0 (its widths are "
                           "`widths`)", low=0.0, low_open=True)

    def validate(self, prefix: str) -> None:
        if self.name == "mlp" and self.width != 1.0:
            raise ParamsError(f"{prefix}.width", self.width, "1.0 for the mlp (set its hidden "
                              "widths with model.widths; width multiplies the VGGs' channels)")

    def build(self, in_shape: tuple[int, ...], num_classes: int):
        """A freshly initialised network of these settings (:func:`geodesic.models.build_model`)."""
        from geodesic.models import build_model
        return build_model(self.name, in_shape, num_classes, self.widths, self.width)


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
    cpu_threads: int = setting(0, "torch CPU threads (0: torch's default)", low=0)

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
    cg_iters: int = setting(6, "Lanczos / conjugate-gradient iterations per step (cg): metric "
                            "products per step", low=1)
    damping: float = setting(1e-3, "damping lambda of g + lambda I (cg)", low=0.0, low_open=True)
    cg_mode: str = setting("output_basis", "cg: exact Krylov trust-region step with the basis in "
                           "output space (memory of one product) or in weight space "
                           "(trust_region: k n-vectors), or CG then rescaling to eta",
                           choices=CG_MODES)
    qp_iters: int = setting(20, "inner iterations of the constrained solve (qp)", low=1)
    penalty_length_batch: int = setting(32, "penalty: inputs of the metric batch (its first ones) "
                                        "on which a step's functional length "
                                        "sqrt(theta^T g theta) is measured for the record; "
                                        "0: the whole batch", low=0)
    max_steps: int = setting(2000, "step budget of the whole traversal", low=0)
    eval_every: int = setting(10, "held-out evaluation every k steps", low=1)
    checkpoint_every: int = setting(50, "path checkpoint every k steps", low=1)
    device: str = setting("auto", "auto picks CUDA when available", choices=DEVICES)
    amp: bool = setting(False, "CUDA autocast (bfloat16/float16) of the metric's forward passes; "
                        "products and solver state stay float32; no effect on the CPU")
    compile: bool = setting(False, "torch.compile the per-layer tangent recursion of the metric "
                            "products (first product compiles; slower than eager on the CPU)")

    def metric_options(self) -> dict:
        """Keyword arguments of :class:`~geodesic.metric.FunctionalMetric` set here."""
        return {"amp": self.amp, "compile": self.compile}


# --- sparsify -------------------------------------------------------------------------------

SPARSIFY_METHODS = ("geodesic", "geodesic_task", "magnitude", "magnitude_finetune",
                    "distill_finetune", "imp")
EQUAL_COMPUTE = ("magnitude_finetune", "distill_finetune", "imp")


@dataclass
class SparsifySettings(GeodesicSettings):
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
    cpu_threads: int = setting(0, "CPU threads of torch (0: torch's default); small models run "
                           "fastest on 1", low=0)

    def validate(self, prefix: str) -> None:
        if self.levels != sorted(set(self.levels)) or not self.levels:
            raise ParamsError(f"{prefix}.levels", self.levels, "strictly increasing levels")
        if len(set(self.methods)) != len(self.methods):
            raise ParamsError(f"{prefix}.methods", self.methods, "distinct names")
        needs = [m for m in self.methods if m in EQUAL_COMPUTE]
        if needs and "geodesic" not in self.methods:
            raise ParamsError(f"{prefix}.methods", self.methods,
                              f"'geodesic' too: {', '.join(needs)} get its compute per level")
        if self.settle_steps and self.anchor == 0 and "geodesic" in self.methods:
            raise ParamsError(f"{prefix}.settle_steps", self.settle_steps,
                              "0 when anchor is 0 (with no anchor the settling direction is 0)")
        if self.max_steps and self.max_steps < len(self.levels):
            raise ParamsError(f"{prefix}.max_steps", self.max_steps,
                              f"0 or at least one step per level (>= {len(self.levels)})")


# --- continual ------------------------------------------------------------------------------


CONTINUAL_SCENARIOS = ("task-il", "class-il")
CONTINUAL_BASELINES = ("finetune", "ewc", "si", "lwf", "replay", "derpp")


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

    def validate(self, prefix: str) -> None:
        for key in ("scenarios", "baselines"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ParamsError(f"{prefix}.{key}", values, "distinct names")
        if not self.scenarios:
            raise ParamsError(f"{prefix}.scenarios", self.scenarios, "at least one scenario")


# --- connect --------------------------------------------------------------------------------


CURVE_NAMES = ("linear", "bezier", "aligned", "bezier_aligned")
GEODESIC_NAMES = ("geodesic", "geodesic_aligned")


@dataclass
class ConnectSettings(GeodesicSettings):
    """Application (iii): a high-accuracy path between two independently trained networks."""

    seeds: list[int] = setting([0, 1], "the two base networks: from seeds[0] to seeds[1]", low=0)
    cg_iters: int = setting(10, "Lanczos iterations per step (cg); fewer cost more steps in all "
                            "here (bench/README.md)", low=1)
    eps: float = setting(0.01, "stop within eps * ||w1 - w2|| of w2 (then a straight segment "
                         "joins w2)", low=0.0, high=1.0, low_open=True, high_open=True)
    function_pull: float = setting(0.0, "alpha: v = (w2 - w) - alpha grad D2(w), D2 the output "
                                   "distance to w2 on the metric batch (0: v = w2 - w alone)",
                                   low=0.0)
    seed: int = setting(0, "seed of the metric batches and of the Bezier training", low=0)
    geodesics: list[str] = setting(list(GEODESIC_NAMES), "geodesics walked: geodesic from w1 to "
                                   "w2 (the paper's), geodesic_aligned from w1 to pi(w2), w2 "
                                   "with its hidden units permuted to match w1 by weight "
                                   "matching (the same function)", choices=GEODESIC_NAMES)
    baselines: list[str] = setting(list(CURVE_NAMES), "curves compared with the geodesics: the "
                                   "straight line and the trained quadratic Bezier curve to w2 "
                                   "(linear, bezier) and to pi(w2) (aligned, bezier_aligned)",
                                   choices=CURVE_NAMES)
    points: int = setting(21, "N: evaluation points along each baseline curve", low=2)
    bn_inputs: int = setting(2048, "training inputs from which BatchNorm statistics are "
                             "recomputed at every evaluated point (0: all)", low=0)
    bezier_steps: int = setting(500, "SGD steps training the Bezier middle point (one gradient "
                                "evaluation each)", low=0)
    bezier_batch: int = setting(256, "minibatch of the Bezier training", low=1)
    bezier_lr: float = setting(0.05, "learning rate of the Bezier training", low=0.0,
                               low_open=True)
    bezier_momentum: float = setting(0.9, "SGD momentum of the Bezier training", low=0.0,
                                     high=1.0, high_open=True)
    bezier_weight_decay: float = setting(0.0, "weight decay on phi(t) in the Bezier training",
                                         low=0.0)
    cpu_threads: int = setting(0, "torch CPU threads (0: torch's default)", low=0)
    plane_grid: int = setting(15, "lattice size of the test-accuracy landscape drawn on the "
                              "plane of (w1, w2, Bezier middle point); 0: no landscape", low=0)

    def validate(self, prefix: str) -> None:
        if len(self.seeds) != 2 or self.seeds[0] == self.seeds[1]:
            raise ParamsError(f"{prefix}.seeds", self.seeds, "two distinct seeds of train.seeds")
        if len(set(self.baselines)) != len(self.baselines):
            raise ParamsError(f"{prefix}.baselines", self.baselines, "distinct curve names")
        if len(set(self.geodesics)) != len(self.geodesics):
            raise ParamsError(f"{prefix}.geodesics", self.geodesics, "distinct geodesic names")
        if not self.geodesics and not self.baselines:
            raise ParamsError(f"{prefix}.geodesics", self.geodesics, "at least one method "
                              "(connect.baselines is empty too)")


# --- sweep (the scheduled sweep of ``geodesic serve`` / ``deploy``; no stage reads it) --------


@dataclass
class SweepSettings:
    """The sweep that ``geodesic serve`` and ``geodesic deploy`` schedule (their flags win).
    No stage depends on it: dvc.yaml lists no ``sweep`` params, so a new schedule reruns
    nothing."""

    cron: str = setting("0 3 * * *", "cron schedule of the sweep ('none': deployed without one)")
    overrides: list[str] = setting(["continual.seed=[0,1,2]"], "override specs "
                                   "key=[v1,v2,...] whose grid the sweep runs (see geodesic "
                                   "sweep -S)")
    metrics: list[str] = setting([], "metric columns of the comparison table, e.g. "
                                 "train.test_acc_mean (empty: every metric that varies)")

    def validate(self, prefix: str) -> None:
        problem = cron_problem(self.cron)
        if problem is not None:
            raise ParamsError(f"{prefix}.cron", self.cron, f"{CRON_ALLOWED} (not {problem})")
        if not self.overrides:
            raise ParamsError(f"{prefix}.overrides", self.overrides,
                              "at least one override key=[v1,v2,...]")


def check_point(point: Point, base: dict) -> None:
    """A sweep point (dotted key -> value) must name parameters of the stages and, applied to
    the nested ``base`` params, give params that parse."""
    for key, value in point.items():
        if key.split(".")[0] == "sweep":
            raise ParamsError(key, value, "a parameter of the stages (the sweep section is the "
                              "schedule, not a point)")
        lookup(base, key)
    parse_params(apply(base, point), sweep=False)


def check_sweep(params: "Params") -> None:
    """Every override of ``params.sweep`` names a parameter of the stages and every point of
    their grid gives valid params."""
    base = to_dict(params)
    for i, spec in enumerate(params.sweep.overrides):
        try:
            key, _ = parse_spec(spec)
            lookup(base, key)
        except ParamsError as exc:
            raise ParamsError(f"sweep.overrides[{i}]", spec, exc.allowed) from exc
    for point in grid(params.sweep.overrides, base):
        try:
            check_point(point, base)
        except ParamsError as exc:
            raise ParamsError("sweep.overrides", params.sweep.overrides,
                              f"points that are valid params, not {point} ({exc.key} = "
                              f"{exc.value!r}: {exc.allowed})") from exc
# --- tracking -------------------------------------------------------------------------------


@dataclass
class TrackingSettings:
    """Where MLflow records go when the tracking server does not answer (see
    :mod:`geodesic.tracking`).

    Read with every other section by the entry points (``stages.common.main``, the flows),
    which hand it to :func:`geodesic.tracking.configure`; no stage receives it or lists it as
    a DVC parameter: it changes where records are written, never a result, so switching it
    reruns no stage and leaves the runs' ``params_hash`` tags alone."""

    when_unreachable: str = setting("fail", "fail: stop before compute (exit 3); offline: "
                                    "record in offline_store, upload later with `geodesic "
                                    "sync`", choices=("fail", "offline"))
    offline_store: str = setting("mlruns-offline", "folder of the offline store (relative to "
                                 "the project root)")

    def validate(self, prefix: str) -> None:
        if not self.offline_store.strip():
            raise ParamsError(f"{prefix}.offline_store", self.offline_store, "a folder name")


# --- all sections ---------------------------------------------------------------------------


@dataclass
class Params:
    preset: PresetSettings = setting(PresetSettings(), "the conf/ presets params.yaml was "
                                     "composed from (no DVC parameter)")
    data: DataSettings = setting(DataSettings(), "dataset and splits")
    model: ModelSettings = setting(ModelSettings(), "architecture")
    train: TrainSettings = setting(TrainSettings(), "base-network training")
    sparsify: SparsifySettings = setting(SparsifySettings(), "sparsification (stage sparsify)")
    continual: ContinualSettings = setting(ContinualSettings(), "continual learning (stage "
                                           "continual)")
    connect: ConnectSettings = setting(ConnectSettings(), "mode connectivity (stage connect)")
    sweep: SweepSettings = setting(SweepSettings(), "the scheduled sweep (geodesic serve, "
                                   "deploy); no stage reads it")
    tracking: TrackingSettings = setting(TrackingSettings(), "MLflow when the tracking server "
                                         "does not answer (no DVC parameter)")

    def validate(self, prefix: str) -> None:
        """Checks across sections: the model fits the data; the stages use trained seeds."""
        side = self.data.shape()[-1]
        if self.model.name.startswith("vgg") and side % VGG_SIZE:
            raise ParamsError("model.name", self.model.name,
                              f"an mlp for {self.data.name} at {side}x{side} inputs; the vgg "
                              f"models need sides that are multiples of {VGG_SIZE} (set "
                              f"data.size: {VGG_SIZE} to pad {self.data.name})")
        _, classes = DATASET_SHAPES[self.data.name]
        if self.continual.benchmark == "split" and classes % self.continual.n_tasks:
            raise ParamsError("continual.n_tasks", self.continual.n_tasks,
                              f"a divisor of the {classes} classes of {self.data.name} "
                              "(split tasks have equal class counts)")
        if self.sparsify.seed not in self.train.seeds:
            raise ParamsError("sparsify.seed", self.sparsify.seed,
                              f"one of train.seeds {self.train.seeds}")
        for seed in self.connect.seeds:
            if seed not in self.train.seeds:
                raise ParamsError("connect.seeds", self.connect.seeds,
                                  f"seeds among train.seeds {self.train.seeds}")


def parse_params(data: dict, sweep: bool = True) -> Params:
    """The checked :class:`Params` of a ``params.yaml`` mapping; with ``sweep``, the points of
    its sweep section are checked too (:func:`check_sweep`)."""
    params = parse_section(Params, data)
    if sweep:
        check_sweep(params)
    return params


def load_params(path="params.yaml") -> Params:
    return parse_params(load_yaml(path))
