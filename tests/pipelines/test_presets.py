"""The conf/ presets: composed through DVC's own Hydra composition (what ``dvc exp run -S``
writes to params.yaml), the committed params.yaml is the default composition, every preset
combination gives params that parse, and the groups set what they name."""
import configparser
import itertools
from pathlib import Path

import pytest
import yaml

from geodesic.core.settings import ParamsError, flatten
from geodesic.params import DATASET_SHAPES, parse_params
from pipelines.presets import GROUPS, compose, options, write

ROOT = Path(__file__).resolve().parents[2]
TUNED = yaml.safe_load((ROOT / "conf" / "tuned" / "digits_mlp.yaml").read_text())


def test_committed_params_yaml_is_the_composition_without_overrides():
    assert compose(root=ROOT) == yaml.safe_load((ROOT / "params.yaml").read_text())


def test_dvc_composes_with_hydra_and_no_stage_depends_on_the_preset_names():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert config.getboolean("hydra", "enabled")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = [p.split(".")[0] for s in stages.values() for p in s.get("params", [])]
    assert "preset" not in listed and {"data", "model", "train"} <= set(listed)


def test_the_groups_hold_the_presets_the_readme_lists():
    assert options("data", ROOT) == ["cifar10", "cifar100", "digits", "mnist", "mnist_real"]
    assert options("model", ROOT) == ["mlp", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"]
    assert options("scale", ROOT) == ["cpu", "paper"]


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_combination_parses_and_names_its_presets(scale):
    for data, model in itertools.product(options("data", ROOT), options("model", ROOT)):
        composed = compose([f"data={data}", f"model={model}", f"scale={scale}"], ROOT)
        params = parse_params(composed)
        assert composed["preset"] == {"data": data, "model": model, "scale": scale}
        assert params.model.name == model
        expected = "mnist" if data == "mnist_real" else data
        assert params.data.name == expected
        side = params.data.shape()[-1]
        assert side == (32 if model.startswith("vgg") else DATASET_SHAPES[expected][0][-1])
        tuned = flatten(TUNED)
        own = ROOT / "conf" / "tuned" / f"{data}_{model}.yaml"
        if not own.exists():  # no tuned file: the base values of conf/
            assert flatten(composed)["connect.anchor"] == 0.0 != tuned[
                "connect.anchor"]
        else:  # the values chosen for this data set and model, where no scale file sets
            chosen = flatten(yaml.safe_load(own.read_text()))  # its own budgets after them
            budgets = {**flatten(load_group("scale", scale)),
                       **flatten(load_group("scale_model", f"{scale}_{model}"))}
            assert {k: flatten(composed)[k] for k in chosen} == {
                k: budgets.get(k, v) for k, v in chosen.items()}


def load_group(group: str, name: str) -> dict:
    """A conf/ group file's own values (empty when the file does not exist), without the
    defaults it chains to."""
    file = ROOT / "conf" / group / f"{name}.yaml"
    doc = yaml.safe_load(file.read_text()) if file.exists() else {}
    return {k: v for k, v in (doc or {}).items() if k != "defaults"}


def test_the_digits_default_takes_the_values_chosen_on_digits():
    composed = flatten(compose(root=ROOT))
    assert {k: composed[k] for k in flatten(TUNED)} == flatten(TUNED)
    assert composed["connect.eta"] == 0.5 and composed["sparsify.anchor"] == 2.0


def test_base_values_of_the_tuned_keys_are_the_library_defaults():
    from geodesic.params import Params
    from geodesic.core.settings import to_dict
    base = flatten(compose(["data=cifar10"], ROOT))  # the mlp on cifar10: no tuned file
    defaults = flatten(to_dict(Params()))
    assert {k: base[k] for k in flatten(TUNED)} == {k: defaults[k] for k in flatten(TUNED)}


def test_vgg11_bn_on_real_mnist_at_the_paper_scale():
    composed = compose(["data=mnist_real", "model=vgg11_bn", "scale=paper"], ROOT)
    p = parse_params(composed)
    assert (p.data.name, p.data.source, p.data.root, p.data.size, p.data.shape()) == (
        "mnist", "../shared/data/mnist-real", "data/raw", 32, (1, 32, 32))
    assert (p.model.name, p.model.width) == ("vgg11_bn", 1.0)
    assert (p.train.epochs, p.train.batch_size, p.train.lr) == (200, 128, 0.05)
    assert (p.sparsify.metric_batch, p.sparsify.cg_iters, p.sparsify.steps_per_level) == (
        512, 10, 200)
    assert (p.connect.cg_iters, p.connect.max_steps, p.connect.bezier_steps) == (20, 1000, 10000)
    assert p.continual.budget == 2000 and p.sparsify.amp and p.connect.amp
    assert p.sparsify.levels == [0.5, 0.8, 0.9, 0.95, 0.98]  # the base schedule


def test_vgg11_bn_on_real_mnist_at_the_cpu_scale():
    p = parse_params(compose(["data=mnist_real", "model=vgg11_bn"], ROOT))
    assert (p.model.width, p.data.size, p.train.epochs) == (0.25, 32, 8)
    assert (p.sparsify.metric_batch, p.sparsify.steps_per_level, p.connect.plane_grid) == (
        128, 16, 7)
    assert p.preset.scale == "cpu"
    vgg16 = parse_params(compose(["data=mnist_real", "model=vgg16"], ROOT))  # cpu_vgg16 chain
    assert (vgg16.model.name, vgg16.model.width, vgg16.train.epochs) == ("vgg16", 0.25, 8)


def test_cifar100_has_ten_tasks_and_values_override_presets():
    p = parse_params(compose(["data=cifar100", "model=vgg16_bn", "continual.n_tasks=5",
                              "train.epochs=1"], ROOT))
    assert (p.continual.n_tasks, p.train.epochs) == (5, 1)
    assert parse_params(compose(["data=cifar100"], ROOT)).continual.n_tasks == 10


@pytest.mark.parametrize("overrides, words", [
    (["data=imagenet"], "a preset of conf/data/: cifar10, cifar100, digits, mnist, mnist_real"),
    (["model=resnet18"], "a preset of conf/model/: mlp, vgg11"),
    (["scale=tpu"], "a preset of conf/scale/: cpu, paper"),
    (["train.lrr=1"], "Could not override 'train.lrr'"),
])
def test_unknown_presets_and_keys_are_refused_with_what_is_allowed(overrides, words):
    with pytest.raises(ParamsError) as info:
        compose(overrides, ROOT)
    assert words in str(info.value)


def test_write_checks_before_replacing_the_file(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text("untouched\n")
    with pytest.raises(ParamsError, match="train.lr = -1.0 is not allowed: > 0.0"):
        write(target, ["train.lr=-1"], ROOT)
    with pytest.raises(ParamsError, match="model.width = 0.5 is not allowed: 1.0 for the mlp"):
        write(target, ["model.width=0.5"], ROOT)
    assert target.read_text() == "untouched\n"
    written = write(target, ["data=mnist_real", "model=vgg11_bn"], ROOT)
    assert yaml.safe_load(target.read_text()) == written
    assert written["preset"] == {"data": "mnist_real", "model": "vgg11_bn", "scale": "cpu"}


def test_group_names_match_the_preset_section():
    from geodesic.params import PresetSettings
    from geodesic.core.settings import to_dict
    assert tuple(to_dict(PresetSettings())) == GROUPS


def test_the_shrunk_project_copy_composes_to_its_shrunk_params(tmp_path):
    """Sweeps in the slow tests run `dvc exp run` on copy_project's copy: its conf/ must
    compose to the params.yaml it shrank, or every point would run the full default."""
    from tests.helpers.projects import copy_project
    root = copy_project(tmp_path)
    composed = compose(root=root)
    assert composed == yaml.safe_load((root / "params.yaml").read_text())
    assert composed["train"]["epochs"] == 2 and composed["connect"]["max_steps"] == 12


def test_conf_holds_every_key_so_every_key_takes_a_plain_override():
    from geodesic.params import Params
    from geodesic.core.settings import to_dict
    assert set(flatten(compose(root=ROOT))) == set(flatten(to_dict(Params())))
    assert compose(["continual.fisher_samples=4"], ROOT)["continual"]["fisher_samples"] == 4
