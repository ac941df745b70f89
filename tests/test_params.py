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
    ("model.name", "vgg16", "the vgg models need 32x32 inputs"),
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
    ("continual.damping", 0.0, "> 0.0"),
    ("continual.cg_iters", 0, ">= 1"),
    ("connect.seeds", [1, 1], "two distinct seeds"),
    ("connect.seeds", [0, 5], "among train.seeds"),
    ("connect.seeds", [0], "two distinct seeds"),
    ("connect.qp_iters", -3, ">= 1"),
    ("continual.n_tasks", 3, "a divisor of the 10 classes of digits"),
    ("continual.n_tasks", 0, ">= 1"),
    ("connect.max_steps", -1, ">= 0"),
    ("sparsify", [1, 2], "a mapping with keys"),
    ("tracking.when_unreachable", "retry", "one of fail, offline"),
    ("tracking.offline_store", " ", "a folder name"),
    ("unknown_section", {}, "a known key of params"),
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
