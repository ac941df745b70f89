"""Every bad parameter is rejected before compute with a message naming key, value, allowed."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geodesic.models import MODELS
from geodesic.data import DATASETS
from geodesic.metric import OUTPUT_KINDS
from geodesic.params import DATASETS as DATASET_NAMES, MODELS as MODEL_NAMES, OUTPUTS, SOLVERS
from geodesic.params import Params, load_params, parse_params
from geodesic.settings import ParamsError, to_dict
from geodesic.solvers import SOLVERS as SOLVER_REGISTRY

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
