"""The public API: the README's own-network example runs, each application's one call works on
a network the project does not define, ``import geodesic`` stays light, and an old params key
is refused with its new name."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import geodesic
from geodesic.core.settings import ParamsError, load_yaml
from geodesic.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_prunes_a_custom_cnn_and_keeps_its_predictions():
    code = readme_block("## Use it on your own network")
    assert len(code.strip().splitlines()) <= 25
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["sparsity"] == pytest.approx(0.9, abs=0.005)
    assert namespace["agree"] >= 0.9
    assert len(namespace["path"].records) > 0


def small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def test_connect_networks_walks_to_the_target_weights():
    x = torch.randn(256, 6)
    net, target = small_net(0), small_net(1)
    start = geodesic.ParameterSpace(net).get(net).clone()
    end = geodesic.ParameterSpace(target).get(target)
    path = geodesic.connect_networks(net, target, x, eta=0.3, max_steps=200)
    assert "joined" in path.milestones
    assert torch.allclose(geodesic.ParameterSpace(net).get(net), end)
    assert max(r["step_norm"] for r in path.records) <= 0.3 + 1e-5
    assert sum(r["step_norm"] for r in path.records) >= float((end - start).norm()) * 0.99


@pytest.mark.parametrize("task_inputs", [0, 20])
def test_learn_new_task_learns_it_and_keeps_the_memory_outputs_better_than_sgd(task_inputs):
    torch.manual_seed(0)
    old_x, new_x = torch.randn(256, 6), torch.randn(512, 6) + 2.0
    new_y = (new_x[:, 0] > 2.0).long() + 1
    net = small_net(2)
    start = copy.deepcopy(net)
    budget = 300

    def task_loss(model):
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(new_x), new_y))

    sgd = copy.deepcopy(net)
    opt = torch.optim.SGD(sgd.parameters(), lr=0.1)
    for i in range(budget):
        b = slice(64 * (i % 8), 64 * (i % 8) + 64)
        opt.zero_grad()
        nn.functional.cross_entropy(sgd(new_x[b]), new_y[b]).backward()
        opt.step()
    extra = {"task_inputs": task_inputs} if task_inputs else {}
    path = geodesic.learn_new_task(net, (new_x, new_y), old_x, budget=budget, eta=0.3,
                                   anchor=1.0, **extra)
    assert path.records[-1]["evals"] <= budget
    assert task_loss(net) < 0.7 * task_loss(start)
    with torch.no_grad():
        drift = (net(old_x) - start(old_x)).pow(2).mean()
        sgd_drift = (sgd(old_x) - start(old_x)).pow(2).mean()
    assert drift < sgd_drift


def test_bad_settings_are_refused_before_any_compute():
    with pytest.raises(ParamsError, match="sparsify.etaa"):
        geodesic.sparsify_network(small_net(0), torch.randn(8, 6), 0.5, etaa=0.1)
    with pytest.raises(ParamsError, match="connect.eta"):
        geodesic.connect_networks(small_net(0), small_net(1), torch.randn(8, 6), eta=-1.0)
    x, y = torch.randn(8, 6), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ParamsError, match="continual.memory_labels = 1.0 .*inputs only"):
        geodesic.learn_new_task(small_net(0), (x, y), x, memory_labels=1.0)
    with pytest.raises(ParamsError, match="continual.anchor_target = 'stored' .*start"):
        geodesic.learn_new_task(small_net(0), (x, y), x, anchor_target="stored")


def test_the_old_key_of_the_anchor_weight_names_its_new_one():
    data = load_yaml(ROOT / "params.yaml")
    data["connect"]["function_pull"] = data["connect"].pop("anchor")
    with pytest.raises(ParamsError, match=r"connect\.function_pull.*connect\.anchor"):
        parse_params(data)


def test_import_geodesic_is_light_and_lists_its_api():
    code = "import sys, geodesic; print('torch' in sys.modules, len(geodesic.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert out == ["False", str(len(geodesic.__all__))]
    for name in geodesic.__all__:
        assert getattr(geodesic, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        geodesic.no_such_name
