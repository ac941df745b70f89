"""``geodesic tune``: equal trials per method on the validation split, resumable studies, the
chosen values written to the preset's config group, and a test split that is never read."""
import json
import shutil

import pytest
import torch
import yaml

from geodesic.common.data import load_saved, save_dataset
from geodesic.core.settings import ParamsError
from geodesic.params import load_params
from geodesic.tuning import SPACES, TuningInputs, run_trial, validation_only
from pipelines.tune import check_request, tune_application
from stages.common import DATASET
from stages.prepare import prepare
from stages.train import train_stage

PARAMS = {
    "data": {"name": "digits", "train_limit": 400, "val_fraction": 0.25},
    "train": {"seeds": [0, 1], "epochs": 3, "batch_size": 32},
    "sparsify": {"methods": ["geodesic", "magnitude", "magnitude_finetune"],
                 "levels": [0.5, 0.9], "steps_per_level": 4, "settle_steps": 1,
                 "metric_batch": 32, "cg_iters": 2, "eval_every": 2, "finetune_batch": 32},
    "continual": {"n_tasks": 2, "scenarios": ["class-il"], "baselines": ["ewc"], "budget": 20,
                  "batch_size": 16, "metric_batch": 32, "eval_every": 10, "stop_every": 10,
                  "patience": 0, "fisher_samples": 32, "cg_iters": 2},
    "connect": {"baselines": ["linear", "bezier"], "bezier_steps": 10, "bezier_batch": 32,
                "max_steps": 4, "eval_every": 2, "points": 3, "plane_grid": 0,
                "metric_batch": 32, "cg_iters": 2, "bn_inputs": 64},
    "hybrid": {"levels": [0.5, 0.8], "steps_per_level": 4, "settle_steps": 1, "cg_iters": 2,
               "metric_batch": 32, "memory_per_class": 3, "base_epochs": 2, "replay_batch": 8,
               "eval_every": 4},
    "preset": {"data": "digits", "model": "mlp"},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny digits project with prepared data and two trained base networks."""
    root = tmp_path_factory.mktemp("tune")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    params = load_params(root / "params.yaml")
    prepare(params)
    train_stage(params)
    yield root
    torch.set_num_threads(threads)
    mp.undo()


def copy_project(source, target, garbage_test: bool = False):
    """The project's params, data and networks in ``target``; with ``garbage_test``, the test
    split replaced by noise with shuffled labels."""
    target.mkdir()
    for name in ("params.yaml", "data", "models"):
        (shutil.copytree if (source / name).is_dir() else shutil.copy)(source / name,
                                                                       target / name)
    if garbage_test:
        data = load_saved(target / DATASET)
        data.test.x = torch.randn_like(data.test.x) * 1e3
        data.test.y = data.test.y[torch.randperm(len(data.test.y))]
        save_dataset(data, target / DATASET)
    return target


def test_equal_trials_resume_and_the_preset_file(project, tmp_path):
    root = copy_project(project, tmp_path / "p")
    doc = tune_application(root, "sparsify", trials=2, seed=0)
    assert list(doc["methods"]) == ["geodesic", "magnitude", "magnitude_finetune"]
    trials = {m: len(r["trials"]) for m, r in doc["methods"].items()}
    assert trials == {"geodesic": 2, "magnitude": 1, "magnitude_finetune": 2}
    tuned = yaml.safe_load((root / "conf/tuned/digits_mlp.yaml").read_text())
    chosen = {**doc["methods"]["geodesic"]["best"]["values"],
              **doc["methods"]["magnitude_finetune"]["best"]["values"]}
    assert tuned == {"sparsify": chosen}
    assert set(chosen) == {d.key for m in ("geodesic", "magnitude_finetune")
                           for d in SPACES["sparsify"][m]} | {"steps_per_level"}  # split's rest
    assert chosen["steps_per_level"] + chosen["settle_steps"] == 4 + 1  # the project's sum
    for m, r in doc["methods"].items():
        assert r["best"]["score"] == max(t["score"] for t in r["trials"] if t["score"] is not None)
    report = root / "results/digits_mlp/tuning"
    assert json.loads((report / "sparsify.json").read_text())["methods"].keys() == doc[
        "methods"].keys()
    assert "| geodesic | `eta` log-uniform" in (report / "sparsify.md").read_text()
    assert (report / "sparsify.png").stat().st_size > 0

    again = tune_application(root, "sparsify", trials=3, seed=0)  # resumes: one more each
    for m in ("geodesic", "magnitude_finetune"):
        old, new = doc["methods"][m]["trials"], again["methods"][m]["trials"]
        assert len(new) == 3 and new[:2] == old
    fewer = tune_application(root, "sparsify", trials=2, seed=0)  # the first two count
    assert fewer["methods"] == doc["methods"]

    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    exp = client.get_experiment_by_name("tune")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    names = sorted(r.info.run_name for r in runs if "/trial-" in r.info.run_name)
    assert names.count("geodesic/trial-000") == 1 and len(names) == 3 + 1 + 3
    assert all(r.data.tags.get("trial_state") == "complete" for r in runs
               if "/trial-" in r.info.run_name)


def test_the_test_split_is_never_read(project, tmp_path):
    """Tuning with the test split replaced by garbage chooses the same values with the same
    scores, trial by trial."""
    clean = tune_application(copy_project(project, tmp_path / "clean"), "sparsify", trials=2,
                             methods=["geodesic"], seed=3)
    dirty = tune_application(copy_project(project, tmp_path / "dirty", garbage_test=True),
                             "sparsify", trials=2, methods=["geodesic"], seed=3)
    assert [t["score"] for t in clean["methods"]["geodesic"]["trials"]] == [
        t["score"] for t in dirty["methods"]["geodesic"]["trials"]]
    first, second = (doc["methods"]["geodesic"]["best"] for doc in (clean, dirty))
    assert first["values"] == second["values"] and first["score"] == second["score"]


def test_hybrid_baselines_get_the_chosen_geodesic_s_evaluations_and_no_test_split(project,
                                                                                 tmp_path):
    """Each hybrid baseline trial spends the evaluations of the chosen geodesic at the last
    level; tuning with a garbage test split gives the same trials."""
    clean = tune_application(copy_project(project, tmp_path / "clean"), "hybrid", trials=2,
                             seed=1)
    dirty = tune_application(copy_project(project, tmp_path / "dirty", garbage_test=True),
                             "hybrid", trials=2, seed=1)
    methods = clean["methods"]
    assert list(methods) == ["geodesic", "prune_finetune", "finetune_prune_finetune"]
    budget = methods["geodesic"]["best"]["evals"]
    for name in ("prune_finetune", "finetune_prune_finetune"):
        assert [t["values"] for t in methods[name]["trials"]] == [
            t["values"] for t in dirty["methods"][name]["trials"]]
        assert all(budget - 2 < t["evals"] <= budget for t in methods[name]["trials"])
    for name, result in methods.items():
        assert [t["score"] for t in result["trials"]] == [
            t["score"] for t in dirty["methods"][name]["trials"]]
        assert len(result["trials"]) == 2 and set(result["trials"][0]["details"]) == {"0.5",
                                                                                      "0.8"}
    tuned = yaml.safe_load((tmp_path / "clean/conf/tuned/digits_mlp.yaml").read_text())
    assert set(tuned["hybrid"]) == {"eta", "anchor", "task_beta", "prune_finetune_lr",
                                    "finetune_prune_finetune_lr"}


@pytest.mark.parametrize("application,method", [
    ("continual", "geodesic"), ("continual", "ewc"), ("connect", "geodesic"),
    ("connect", "bezier"), ("connect", "geodesic_aligned")])
def test_every_application_scores_a_trial_on_validation(project, application, method):
    params = load_params(project / "params.yaml")
    data = validation_only(load_saved(project / DATASET))
    seeds = params.connect.seeds if application == "connect" else []
    from stages.common import load_base_model
    inputs = TuningInputs(params, data, {s: load_base_model(params, data, s) for s in seeds})
    steps = []
    outcome = run_trial(application, method, getattr(params, application), inputs,
                        lambda step, value: steps.append((step, value)))
    assert 0.0 <= outcome.score <= 1.0 and outcome.evals >= 0
    if method.startswith("geodesic") or application == "continual":
        assert steps and all(0.0 <= v <= 1.0 for _, v in steps)
        assert [s for s, _ in steps] == sorted(s for s, _ in steps)


def test_continual_trials_average_the_task_sequences(project):
    """sequences=2 scores the mean of the trials on sequence seeds s.seed and s.seed + 1."""
    import dataclasses
    params = load_params(project / "params.yaml")
    data = validation_only(load_saved(project / DATASET))
    s = dataclasses.replace(params.continual, scenarios=["task-il"], budget=40)
    single = [run_trial("continual", "ewc", dataclasses.replace(s, seed=k),
                        TuningInputs(params, data, {})) for k in (0, 1)]
    steps = []
    both = run_trial("continual", "ewc", s, TuningInputs(params, data, {}, sequences=2),
                     lambda step, value: steps.append(step))
    assert both.score == pytest.approx((single[0].score + single[1].score) / 2, abs=1e-12)
    assert single[0].score != single[1].score
    assert steps == list(range(2 * s.n_tasks))


def test_sparsify_trials_average_the_base_networks_with_each_networks_budgets(project):
    """sequences=2 scores the mean over base networks s.seed and s.seed + 1; the geodesic's
    per-level evaluations are kept per network, and a baseline spends them on that network."""
    import dataclasses

    from pipelines.tune import load_inputs
    params = load_params(project / "params.yaml")
    inputs = load_inputs(project, params, "sparsify", sequences=2)
    assert sorted(inputs.models) == [0, 1]
    s = params.sparsify
    single = [run_trial("sparsify", "geodesic", dataclasses.replace(s, seed=k),
                        dataclasses.replace(inputs, sequences=1)) for k in (0, 1)]
    steps = []
    both = run_trial("sparsify", "geodesic", s, inputs, lambda step, value: steps.append(step))
    assert both.score == pytest.approx((single[0].score + single[1].score) / 2, abs=1e-12)
    assert both.budgets == {**single[0].budgets, **single[1].budgets}
    assert sorted(both.budgets) == ["0", "1"] and steps == [0, 1]  # one scored level each
    inputs.budgets = both.budgets
    tuned = run_trial("sparsify", "magnitude_finetune", s, inputs)
    spent = {seed: sum(b.values()) for seed, b in both.budgets.items()}
    assert tuned.evals == pytest.approx(sum(spent.values()) / 2)


def test_connect_trials_average_the_pairs_of_base_networks(project):
    """sequences=2 walks pairs (seeds[0], seeds[1]) and (seeds[0] + 2, seeds[1] + 2) and scores
    the mean of their minima; the running estimate reported on the second pair counts the
    first pair's minimum."""
    import dataclasses

    from geodesic.tuning import connect_pairs
    from stages.common import load_base_model
    params = load_params(project / "params.yaml")
    data = validation_only(load_saved(project / DATASET))
    assert connect_pairs([0, 1], 3) == [(0, 1), (2, 3), (4, 5)]
    net = {s: load_base_model(params, data, s) for s in (0, 1)}
    inputs = TuningInputs(params, data, {0: net[0], 1: net[1], 2: net[1], 3: net[0]})
    s = params.connect
    single = [run_trial("connect", "geodesic", dataclasses.replace(s, seeds=pair), inputs)
              for pair in ([0, 1], [1, 0])]
    reports = []
    both = run_trial("connect", "geodesic", s, dataclasses.replace(inputs, sequences=2),
                     lambda step, value: reports.append((step, value)))
    assert both.score == pytest.approx((single[0].score + single[1].score) / 2, abs=1e-12)
    assert both.details["pairs"] == {"0-1": single[0].score, "2-3": single[1].score}
    assert both.evals == pytest.approx((single[0].evals + single[1].evals) / 2)
    later = [v for step, v in reports if step > s.max_steps]
    assert later and later[-1] == pytest.approx(both.score, abs=1e-12)
    assert [step for step, _ in reports] == sorted(step for step, _ in reports)


def test_aligned_methods_are_tuned_on_their_own_keys(project):
    params = load_params(project / "params.yaml")
    from geodesic.tuning import methods_of
    s = params.connect
    assert methods_of("connect", s) == ["geodesic", "geodesic_aligned", "linear", "bezier"]
    keys = {m: {d.key for d in SPACES["connect"][m]} for m in SPACES["connect"]}
    assert keys["geodesic_aligned"] == {"aligned_eta", "aligned_anchor", "aligned_cg_iters",
                                        "aligned_constant_pull", "aligned_anchor_target"}
    assert keys["bezier_aligned"] == {"bezier_aligned_lr", "bezier_aligned_momentum"}
    assert not keys["geodesic"] & keys["geodesic_aligned"]
    assert not keys["bezier"] & keys["bezier_aligned"]


def test_studies_are_keyed_by_the_data_networks_and_fixed_settings(project, tmp_path):
    from pipelines.tune import study_folder
    root = copy_project(project, tmp_path / "k")
    params = load_params(root / "params.yaml")
    before = study_folder(root, params, "sparsify")
    tuned = load_params(root / "params.yaml")
    tuned.sparsify.eta = 0.7  # a searched key: the same problem
    assert study_folder(root, tuned, "sparsify") == before
    tuned.sparsify.levels = [0.5, 0.8]  # a fixed setting: another problem
    assert study_folder(root, tuned, "sparsify") != before
    assert study_folder(root, params, "continual", sequences=3) != study_folder(
        root, params, "continual")  # scored on more sequences: another problem
    copy_project(root, tmp_path / "g", garbage_test=True)
    assert study_folder(tmp_path / "g", params, "sparsify") != before  # other data


def test_bad_requests_are_refused_before_anything_runs(project):
    params = load_params(project / "params.yaml")
    for args, key in [(("prune", None, 5), "application"), (("sparsify", None, 0), "--trials"),
                      (("sparsify", ["imp"], 5), "--method")]:
        with pytest.raises(ParamsError) as err:
            check_request(args[0], params, args[1], args[2])
        assert err.value.key == key
    for application, sequences in [("hybrid", 2), ("continual", 0)]:
        with pytest.raises(ParamsError, match="--sequences"):
            check_request(application, params, None, 5, sequences)
    with pytest.raises(ParamsError, match=r"seeds \[2\] are not in train.seeds \[0, 1\]"):
        check_request("sparsify", params, None, 5, 3)  # the project trains seeds 0 and 1
    with pytest.raises(ParamsError, match=r"seeds \[2, 3\] are not in train.seeds"):
        check_request("connect", params, None, 5, 2)  # pairs (0, 1) and (2, 3)
    assert check_request("sparsify", params, None, 5, 2)
    assert check_request("continual", params, None, 5, 3)
    assert check_request("sparsify", params, ["magnitude_finetune", "geodesic"], 5) == [
        "geodesic", "magnitude_finetune"]


def test_writing_tuned_values_keeps_the_file_s_own_header_and_its_other_sections(tmp_path):
    from pipelines.tune import write_tuned
    file = tmp_path / "conf" / "tuned" / "p.yaml"
    file.parent.mkdir(parents=True)
    file.write_text("# @package _global_\n# values transferred from another preset\n"
                    "connect:\n  eta: 0.5\nsparsify:\n  eta: 0.3\n")
    write_tuned(tmp_path, "p", "sparsify", {"geodesic": {"eta": 0.4}, "imp": {"imp_lr": 0.1}})
    text = file.read_text()
    assert text.startswith("# @package _global_\n# values transferred from another preset\n")
    assert yaml.safe_load(text) == {"connect": {"eta": 0.5},
                                    "sparsify": {"eta": 0.4, "imp_lr": 0.1}}


def test_a_sparsify_trial_reports_the_running_mean_of_its_scored_levels_only():
    from geodesic.tuning import LevelReport, scored_levels

    assert scored_levels([0.5, 0.8, 0.9, 0.98]) == ["0.9", "0.98"]
    assert scored_levels([0.5, 0.8]) == ["0.5", "0.8"]  # none >= 0.9: all count
    reports = []
    hook = LevelReport([0.5, 0.9, 0.98], lambda step, value: reports.append((step, value)))
    for name, acc in (("0.5", 0.2), ("0.9", 0.9), ("0.98", 0.7)):
        hook.on_milestone(name, {"val_acc": acc}, torch.zeros(1))
    assert reports == [(0, 0.9), (1, pytest.approx(0.8))]  # 0.5 is never a pruning signal
