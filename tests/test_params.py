"""Every bad parameter is rejected before compute with a message naming key, value, allowed."""
import copy
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from geodesic.common.data import DATASETS
from geodesic.common.models import MODELS
from geodesic.core.outputs import OUTPUT_KINDS
from geodesic.core.settings import OUTPUTS, SOLVERS
from geodesic.core.settings import ParamsError, to_dict
from geodesic.core.solvers import SOLVERS as SOLVER_REGISTRY
from geodesic.params import DATASETS as DATASET_NAMES, MODELS as MODEL_NAMES
from geodesic.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())

# (dotted key, bad value, words the message must contain)
BAD = [
    ("data.name", "imagenet", "one of digits, mnist, cifar10, cifar100"),
    ("data.name", 3, "type str"),
    ("data.val_fraction", 0.5, "< 0.5"),
    ("data.val_fraction", -0.1, ">= 0.0"),
    ("data.train_limit", -5, ">= 0"),
    ("data.seed", "zero", "type int"),
    ("data.colour", True, "a known key of data"),
    ("data.root", " ", "a folder"),
    ("data.source", " ", "'torchvision' or a folder"),
    ("model.name", "resnet18", "one of mlp, vgg11"),
    ("model.name", "vgg16", "sides that are multiples of 32 (set data.size: 32 to pad digits)"),
    ("data.size", 4, "0 (native 8x8) or a size >= 8"),
    ("data.size", -1, ">= 0"),
    ("model.width", 0.5, "1.0 for the mlp"),
    ("model.width", 0.0, "> 0.0"),
    ("preset.data", 3, "type str"),
    ("preset.tuned", "digits_mlp", "a known key of preset: data, model, scale"),
    ("model.widths", [300, 0], ">= 1"),
    ("model.widths", 300, "a list of int"),
    ("model.widths", [300.5], "type int"),
    ("train.seeds", [0, 0], "distinct seeds"),
    ("train.seeds", [], "at least one seed"),
    ("train.seeds", [-1, 1], ">= 0"),
    ("train.optimizer", "rmsprop", "one of sgd, adam"),
    ("train.lr", 0, "> 0.0"),
    ("train.lr", "fast", "type float"),
    ("train.momentum", 1.0, "< 1.0"),
    ("train.epochs", 0, ">= 1"),
    ("train.epochs", 2.5, "type int"),
    ("train.batch_size", True, "type int"),
    ("train.device", "tpu", "one of auto, cpu, cuda"),
    ("sparsify.levels", [0.5, 1.0], "< 1.0"),
    ("sparsify.levels", [-0.1], ">= 0.0"),
    ("sparsify.eta", 0.0, "> 0.0"),
    ("sparsify.eta", -1.0, "> 0.0"),
    ("sparsify.solver", "adam", "one of qp, cg, penalty"),
    ("sparsify.output", "kl", "one of logits, probs, fisher"),
    ("sparsify.seed", 7, "one of train.seeds"),
    ("sparsify.metric_batch", 0, ">= 1"),
    ("sparsify.cg_mode", "exact", "one of trust_region, output_basis, rescale"),
    ("sparsify.compile", "yes", "type bool"),
    ("connect.amp", 1, "type bool"),
    ("continual.damping", 0.0, "> 0.0"),
    ("continual.cg_iters", 0, ">= 1"),
    ("connect.seeds", [1, 1], "two distinct seeds"),
    ("connect.seeds", [0, 5], "among train.seeds"),
    ("connect.seeds", [0], "two distinct seeds"),
    ("connect.qp_iters", -3, ">= 1"),
    ("connect.penalty_length_batch", -1, ">= 0"),
    ("continual.n_tasks", 3, "a divisor of the 10 classes of digits"),
    ("continual.n_tasks", 0, ">= 1"),
    ("connect.max_steps", -1, ">= 0"),
    ("sparsify", [1, 2], "a mapping with keys"),
    ("tracking.when_unreachable", "retry", "one of fail, offline"),
    ("tracking.offline_store", " ", "a folder name"),
    ("unknown_section", {}, "a known key of params"),
    ("sweep.cron", "61 3 * * *", "the minute field '61' (minute: 0-59)"),
    ("sweep.cron", "0 3 * *", "five fields"),
    ("sweep.cron", "0 3 * * funday", "the day of week field"),
    ("sweep.cron", "daily", "'none' (no schedule), a macro"),
    ("sweep.cron", 3, "type str"),
    ("sweep.overrides", ["train.lr"], "an override of the form key=value"),
    ("sweep.overrides", ["train.epohcs=[1,2]"], "a known parameter"),
    ("sweep.overrides", ["train.lr=[0.1,-1]"], "train.lr = -1.0: > 0.0"),
    ("sweep.overrides", ["train.seeds=[[0,1],[2,3]]"], "sparsify.seed = 0: one of train.seeds"),
    ("sweep.overrides", ["sweep.cron=none"], "a parameter of the stages"),
    ("sweep.overrides", [], "at least one override"),
    ("sweep.overrides", "train.lr=[0.1,0.2]", "a list of str"),
    ("sweep.metrics", "train.test_acc_mean", "a list of str"),
    ("sweep.when", "nightly", "a known key of sweep: cron, overrides, metrics"),
]


def with_value(key, value):
    params = copy.deepcopy(DEFAULT)
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return params


def test_the_default_params_parse():
    assert isinstance(load_params(ROOT / "params.yaml"), Params)
    assert parse_params(to_dict(load_params(ROOT / "params.yaml"))) == load_params(
        ROOT / "params.yaml")


@pytest.mark.parametrize("key, value, allowed", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_is_rejected_with_key_value_and_allowed(key, value, allowed):
    with pytest.raises(ParamsError) as info:
        parse_params(with_value(key, value))
    message = str(info.value)
    assert allowed in message
    assert info.value.key.split("[")[0] in (key, key.rsplit(".", 1)[0]) or key in message


def test_at_least_thirty_bad_inputs_are_covered():
    assert len(BAD) >= 30


def test_allowed_names_match_the_registries():
    assert set(DATASET_NAMES) == set(DATASETS.names())
    assert set(MODEL_NAMES) == set(MODELS.names())
    assert set(SOLVERS) == set(SOLVER_REGISTRY.names())
    assert set(OUTPUTS) == set(OUTPUT_KINDS.names())


GOOD_CRON = ["0 3 * * *", "*/15 * * * *", "0 0 1-31/2 jan,mar *", "30 6 * * mon-fri",
             "0 0 * * 7", "5/15 2,14 * * SUN", "@daily", "@hourly"]


def test_the_cron_check_accepts_what_prefect_schedules():
    from prefect._internal.schemas.validators import validate_cron_string
    for expr in GOOD_CRON:
        assert parse_params(with_value("sweep.cron", expr)).sweep.cron == expr
        assert validate_cron_string(expr) == expr
    assert parse_params(with_value("sweep.cron", "none")).sweep.cron == "none"


def test_no_stage_depends_on_the_sweep_section():
    """A new schedule or grid must not make ``dvc repro`` rerun a stage."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        keys = [k for entry in spec.get("params", [])
                for k in (entry if isinstance(entry, dict) else {entry: None})]
        assert keys and not any(k.split(".")[0] == "sweep" or k.endswith(".yaml")
                                for k in keys), name


def test_serve_takes_the_sweep_section_and_checks_its_flags(tmp_path):
    from pipelines.serve import schedule
    params = with_value("sweep", {"cron": "0 4 * * *", "overrides": ["train.lr=[0.1,0.2]"],
                                  "metrics": ["train.test_acc_mean"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert schedule(tmp_path) == ("0 4 * * *", ["train.lr=[0.1,0.2]"], ["train.test_acc_mean"])
    assert schedule(tmp_path, cron="none", overrides=["continual.seed=[1,2]"]) == (
        "none", ["continual.seed=[1,2]"], ["train.test_acc_mean"])
    with pytest.raises(ParamsError, match=r"sweep.cron = '0 25 \* \* \*'.*hour: 0-23"):
        schedule(tmp_path, cron="0 25 * * *")
    with pytest.raises(ParamsError, match=r"sweep.overrides\[0\] = 'train.lr'"):
        schedule(tmp_path, overrides=["train.lr"])


CHECK = """
import sys
from stages.common import main
try:
    main(lambda params: print("stage ran"))
finally:
    print("torch imported:", "torch" in sys.modules)
"""


def test_a_stage_with_bad_params_exits_before_importing_torch(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("sparsify.eta", -1.0)))
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "sparsify.eta = -1.0" in result.stderr
    assert "stage ran" not in result.stdout and "torch imported: False" in result.stdout


def numeric_keys(node, prefix=""):
    """Every dotted key of ``node`` (a params.yaml mapping) whose value is a number or a
    non-empty list of numbers, found by walking the file."""
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from numeric_keys(value, name)
        elif isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            yield name
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name


NUMERIC = sorted(numeric_keys(DEFAULT))
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
NOT_A_NUMBER = [True, False, "1", None, [1], {"a": 1}]


def declared(key):
    """The declared type of a dotted key (``int``, ``float``, ``list[int]``...)."""
    tp = Params
    for part in key.split("."):
        tp = typing.get_type_hints(tp)[part]
    return tp


def test_the_walk_finds_the_numeric_keys_of_every_section():
    assert len(NUMERIC) > 60
    assert {"data.val_fraction", "train.lr", "train.seeds", "sparsify.eta", "sparsify.levels",
            "continual.ewc_lambda", "connect.anchor"} <= set(NUMERIC)
    assert {k.split(".")[0] for k in NUMERIC} == {"data", "model", "train", "sparsify",
                                                  "continual", "connect", "hybrid"}


@pytest.mark.parametrize("key", NUMERIC)
def test_every_numeric_key_refuses_non_finite_values_and_non_numbers(key):
    """Each bad value is refused with the key, the value and what is allowed; a list of
    numbers refuses each bad value as its element and in place of the list."""
    tp = declared(key)
    is_list = typing.get_origin(tp) is list
    element = typing.get_args(tp)[0] if is_list else tp
    assert element in (int, float), (key, tp)
    bad = NON_FINITE + NOT_A_NUMBER + ([1.5] if element is int else [])
    candidates = [(v, v) for v in bad if not (is_list and v == [1])]
    if is_list:
        candidates += [([v], v) for v in bad]
    for candidate, value in candidates:
        with pytest.raises(ParamsError) as info:
            parse_params(with_value(key, candidate))
        assert info.value.key.split("[")[0] == key, (candidate, str(info.value))
        assert str(info.value).startswith(f"params: {info.value.key} = ")
        assert info.value.allowed
        if isinstance(value, float) and not math.isfinite(value):
            assert repr(value) in str(info.value)
            if element is float and is_list == isinstance(candidate, list):
                assert "a finite number" in info.value.allowed


def test_a_non_finite_value_names_the_allowed_range():
    with pytest.raises(ParamsError, match=r"sparsify.eta = nan is not allowed: a finite number "
                                          r"> 0.0"):
        parse_params(with_value("sparsify.eta", float("nan")))
    with pytest.raises(ParamsError, match=r"data.val_fraction = inf is not allowed: a finite "
                                          r"number >= 0.0 and < 0.5"):
        parse_params(with_value("data.val_fraction", float("inf")))
    with pytest.raises(ParamsError, match=r"sparsify.levels = -inf .*a finite number"):
        parse_params(with_value("sparsify.levels", [0.5, float("-inf")]))
