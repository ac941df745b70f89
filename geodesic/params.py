"""The sections of ``params.yaml`` as typed settings (see :mod:`geodesic.core.settings`).

``load_params("params.yaml")`` returns a :class:`Params`; stages, flows and the command line all
go through it, so every entry point rejects the same bad input with the same message.
"""
from __future__ import annotations

from dataclasses import dataclass

from geodesic.common.settings import TrainSettings
from geodesic.connect.settings import ConnectSettings
from geodesic.continual.settings import ContinualSettings
from geodesic.core.settings import (ParamsError, Point, apply, grid, load_yaml, lookup,
                                    parse_section, parse_spec, setting, to_dict)
from geodesic.cron import CRON_ALLOWED, cron_problem
from geodesic.hybrid.settings import HybridSettings
from geodesic.sparsify.settings import SparsifySettings

DATASETS = ("digits", "mnist", "cifar10", "cifar100")
MODELS = ("mlp", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn")
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
        """A freshly initialised network of these settings
        (:func:`geodesic.common.models.build_model`)."""
        from geodesic.common.models import build_model
        return build_model(self.name, in_shape, num_classes, self.widths, self.width)


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
    hybrid: HybridSettings = setting(HybridSettings(), "sparsify while learning a new task "
                                     "(stage hybrid)")
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
        if classes % self.hybrid.n_tasks:
            raise ParamsError("hybrid.n_tasks", self.hybrid.n_tasks,
                              f"a divisor of the {classes} classes of {self.data.name}")
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
