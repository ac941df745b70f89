"""``geodesic tune <application>``: every method's hyperparameters chosen on the validation split
with Optuna, the same number of trials for each method.

For each method of the application (the geodesic first: its per-level evaluations are the
sparsify baselines' budgets), one Optuna study named after the method in
``tuning/<preset>/<key>/<application>.db`` (SQLite, keyed by the content of the data and
base networks and by the fixed settings: an interrupted tuning of the same problem resumes and
keeps every finished trial; a trial left running by a killed process is marked failed and replaced), a TPE
sampler seeded with ``--seed`` and median pruning on the intermediate validation scores of
:mod:`geodesic.tuning`. Continuous values are rounded to 3 significant digits before a trial
runs, so the values written are the values that ran. Each trial is an MLflow run nested in one
run per application (experiment ``tune``). The best values of every method go into the preset's
config group ``conf/tuned/<data>_<model>.yaml`` (the application's keys; other keys kept) and into
the report ``results/<preset>/tuning/<application>.{json,md,png}``: the search spaces, every
trial, the chosen values, validation score against trial. The test split is never read
(:func:`geodesic.tuning.validation_only`).
"""
from __future__ import annotations

import logging
import math
import time
from itertools import takewhile
from pathlib import Path

import yaml
from prefect import flow

from geodesic import tracking
from geodesic.common.data import load_saved
from geodesic.core.device import resolve_device
from geodesic.core.settings import ParamsError, parse_section, to_dict
from geodesic.params import Params, load_params
from geodesic.tuning import (APPLICATIONS, SPACES, TuningInputs, connect_pairs, methods_of,
                             run_trial, validation_only)
from pipelines.tune_report import write_report

log = logging.getLogger("pipelines.tune")
TUNED = Path("conf/tuned")
STARTUP_TRIALS = 5  # trials before the median pruner may stop one


def check_request(application: str, params: Params, methods: list[str] | None,
                  trials: int, sequences: int = 1) -> list[str]:
    """The methods to tune; bad input is refused before anything runs."""
    if application not in APPLICATIONS:
        raise ParamsError("application", application, f"one of {', '.join(APPLICATIONS)}")
    if trials < 1:
        raise ParamsError("--trials", trials, ">= 1")
    if sequences < 1 or (sequences > 1 and application == "hybrid"):
        raise ParamsError("--sequences", sequences, ">= 1, and 1 for hybrid (its trials score "
                          "the one base network they train)")
    missing = sorted(set(base_seeds(params, application, sequences)) - set(params.train.seeds))
    if missing:
        key, value = (("--sequences", sequences) if sequences > 1 else
                      (f"{application}.seeds", getattr(params, application).seeds))
        raise ParamsError(key, value, f"base networks the train stage trains: "
                          f"seeds {missing} are not in train.seeds {params.train.seeds}")
    known = methods_of(application, getattr(params, application))
    for m in methods or []:
        if m not in known:
            raise ParamsError("--method", m, f"a method that params.yaml runs for "
                              f"{application}: {', '.join(known)}")
    chosen = [m for m in known if methods is None or m in methods]
    if application in ("sparsify", "hybrid") and "geodesic" in known:  # the baselines' budgets
        chosen = ["geodesic", *[m for m in chosen if m != "geodesic"]]
    return chosen


def base_seeds(params: Params, application: str, sequences: int = 1) -> list[int]:
    """The base networks a trial starts from (sparsify: ``sequences`` of them; connect: the
    ``sequences`` pairs of :func:`geodesic.tuning.connect_pairs`)."""
    settings = getattr(params, application)
    if application == "sparsify":
        return list(range(settings.seed, settings.seed + sequences))
    if application == "connect":
        return [seed for pair in connect_pairs(settings.seeds, sequences) for seed in pair]
    return []


def study_folder(root: Path, params: Params, application: str, sequences: int = 1) -> Path:
    """``tuning/<preset>/<key>``: the key hashes the content of the data and base networks the
    trials start from and the application's settings that no search space varies, so a
    tuning resumes only the same problem (changed data, networks or fixed settings start
    afresh)."""
    import hashlib
    import json

    from stages.common import DATASET, content_hash, model_file

    searched = {d.key for dims in SPACES[application].values() for d in dims}
    fixed = {k: v for k, v in to_dict(getattr(params, application)).items()
             if k not in searched}
    files = [root / DATASET.parent, *(root / model_file(s)
                                      for s in base_seeds(params, application, sequences))]
    if application == "hybrid":  # its base network is trained with the train section
        fixed["train"] = to_dict(params.train)
    if sequences > 1:
        fixed["sequences"] = sequences
    key = json.dumps(fixed, sort_keys=True) + content_hash(*files)
    return root / "tuning" / params.preset.name / hashlib.sha256(key.encode()).hexdigest()[:16]


def load_inputs(root: Path, params: Params, application: str,
                sequences: int = 1) -> TuningInputs:
    from stages.common import DATASET, load_base_model

    settings = getattr(params, application)
    device = resolve_device(settings.device)
    seeds = base_seeds(params, application, sequences)
    data = validation_only(load_saved(root / DATASET))
    models = {seed: load_base_model(params, data, seed, device) for seed in seeds}
    return TuningInputs(params, data, models, device, sequences=sequences)


class Tuner:
    """The studies of one application, run one method after the other."""

    def __init__(self, root: Path, params: Params, application: str, trials: int, seed: int,
                 sequences: int = 1):
        import optuna

        self.root, self.params, self.application = root, params, application
        self.trials, self.seed = trials, seed
        self.chosen: dict = {}  # values of the methods tuned so far, in order
        self.base = getattr(params, application)
        if getattr(self.base, "cpu_threads", 0):
            import torch
            torch.set_num_threads(self.base.cpu_threads)
        folder = study_folder(root, params, application, sequences)
        log.info("tune %s: studies in %s", application, folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.storage = f"sqlite:///{folder / application}.db"
        self.inputs = load_inputs(root, params, application, sequences)
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def study(self, method: str):
        import optuna
        from optuna.trial import TrialState

        study = optuna.create_study(
            study_name=method, storage=self.storage, load_if_exists=True, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS,
                                               n_warmup_steps=0))
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)
        return study

    def settings(self, values: dict):
        """The application's settings with the values chosen so far and ``values``, checked
        as params.yaml would be."""
        return parse_section(type(self.base), {**to_dict(self.base), **self.chosen, **values},
                             self.application)

    def run(self, method: str) -> dict:
        import optuna
        from optuna.trial import TrialState

        space = SPACES[self.application].get(method, [])
        study = self.study(method)
        wanted = self.trials if space else 1
        done = _finished(study, wanted)
        t0 = time.perf_counter()
        base = {**to_dict(self.base), **self.chosen}  # what each dimension draws from
        for i in range(len(done), wanted):
            trial = study.ask()
            values = {k: v for dim in space for k, v in dim.draw(trial, base).items()}
            trial.set_user_attr("values", values)
            state, score = self._trial(method, trial, values)
            study.tell(trial, score if state == TrialState.COMPLETE else None, state=state)
            rate = (time.perf_counter() - t0) / (i + 1 - len(done))
            best = _best(study, wanted)
            log.info("tune %s/%s trial %d/%d: %s %.4f (best %.4f); %.0fs a trial, about "
                     "%.0fs left", self.application, method, i + 1, wanted, state.name.lower(),
                     score if score is not None else math.nan,
                     best.value if best else math.nan, rate, rate * (wanted - i - 1))
        best = _best(study, wanted)
        if best is None:
            raise RuntimeError(f"tune {self.application}/{method}: every trial failed")
        if method == "geodesic" and best.user_attrs.get("budgets"):
            self.inputs.budgets = best.user_attrs["budgets"]
        self.chosen.update(best.user_attrs["values"])
        return {"space": [d.describe() for d in space], "trials": _trials(study, wanted),
                "best": {"number": best.number, "values": best.user_attrs["values"],
                         "score": best.value, "evals": best.user_attrs.get("evals"),
                         "seconds": best.user_attrs.get("seconds")}}

    def _trial(self, method: str, trial, values: dict):
        import optuna
        from optuna.trial import TrialState

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            tracking.log_metrics({"val_intermediate": value}, step=step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        with tracking.method_run(f"{method}/trial-{trial.number:03d}",
                                 {"method": method, "trial": trial.number, **values}):
            try:
                outcome = run_trial(self.application, method, self.settings(values),
                                    self.inputs, report)
            except optuna.TrialPruned:
                tracking.set_tags({"trial_state": "pruned"})
                return TrialState.PRUNED, None
            except (ArithmeticError, RuntimeError) as exc:  # a diverging trial is a result
                tracking.set_tags({"trial_state": "failed", "error": str(exc)[:500]})
                trial.set_user_attr("error", str(exc)[:500])
                log.warning("tune %s/%s trial %d failed: %s", self.application, method,
                            trial.number, exc)
                return TrialState.FAIL, None
            tracking.set_tags({"trial_state": "complete"})
            tracking.log_metrics({"val_score": outcome.score, "grad_evals": outcome.evals,
                                  "seconds": outcome.seconds})
        trial.set_user_attr("evals", outcome.evals)
        trial.set_user_attr("seconds", outcome.seconds)
        trial.set_user_attr("details", outcome.details)
        trial.set_user_attr("budgets", outcome.budgets)
        return TrialState.COMPLETE, outcome.score


def _finished(study, count: int) -> list:
    """The first ``count`` finished trials: a study that ran more trials than asked for
    (an earlier, longer tuning) is judged on the same number of trials as every method. A trial
    a killed process left running (failed on resume, no error recorded) does not count."""
    from optuna.trial import TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
            (t.state == TrialState.FAIL and "error" in t.user_attrs)][:count]


def _best(study, count: int):
    from optuna.trial import TrialState
    complete = [t for t in _finished(study, count) if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def _trials(study, count: int) -> list[dict]:
    return [{"number": t.number, "state": t.state.name.lower(), "score": t.value,
             "values": t.user_attrs.get("values", {}), "evals": t.user_attrs.get("evals"),
             "seconds": t.user_attrs.get("seconds"), "details": t.user_attrs.get("details"),
             "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
            for t in _finished(study, count)]


def write_tuned(root: Path, preset: str, application: str, chosen: dict[str, dict]) -> Path:
    """Merge the chosen values of every method into ``conf/tuned/<preset>.yaml``, keeping the
    comment lines that head an existing file (where its values came from)."""
    file = root / TUNED / f"{preset}.yaml"
    text = file.read_text() if file.exists() else ""
    doc = yaml.safe_load(text) or {}
    section = doc.setdefault(application, {})
    for values in chosen.values():
        section.update(values)
    file.parent.mkdir(parents=True, exist_ok=True)
    kept = "".join(line for line in takewhile(lambda ln: ln.startswith("#"),
                                               text.splitlines(keepends=True)))
    header = kept or ("# @package _global_\n# Hyperparameters chosen on the validation split by "
                      "`geodesic tune` (results/<preset>/tuning/ has the trials).\n")
    file.write_text(header + yaml.safe_dump(doc, sort_keys=True))
    return file


def tune_application(project: str | Path, application: str, trials: int = 20,
                     methods: list[str] | None = None, seed: int = 0,
                     sequences: int = 1) -> dict:
    """Tune every method of ``application`` in ``project`` (after ``dvc repro train``);
    continual trials score ``sequences`` task sequences, sparsify trials ``sequences`` base
    networks, connect trials ``sequences`` pairs of them. Returns the report's content."""
    root = Path(project).resolve()
    params = load_params(root / "params.yaml")
    chosen_methods = check_request(application, params, methods, trials, sequences)
    tracking.configure(params.tracking)
    tuner = Tuner(root, params, application, trials, seed, sequences)
    results = {}
    run_params = {"application": application, "trials": trials, "seed": seed,
                  "sequences": sequences, "preset": params.preset.name}
    with tracking.stage_run(f"tune-{application}", run_params, experiment="tune"):
        for method in chosen_methods:
            with tracking.method_run(method, {"method": method}):
                results[method] = tuner.run(method)
                tracking.log_metrics({"best_val_score": results[method]["best"]["score"]})
        doc = {**run_params, "methods": results}
        conf = write_tuned(root, params.preset.name, application,
                           {m: r["best"]["values"] for m, r in results.items()})
        for file in write_report(root / "results" / params.preset.name / "tuning", doc):
            tracking.log_artifact(file, "tuning")
        tracking.log_artifact(conf, "tuning")
    return doc


@flow(name="tune", description="Choose every method's hyperparameters of one application on "
      "the validation split (Optuna, equal trials per method).")
def tune(project: str = ".", application: str = "sparsify", trials: int = 20,
         methods: list[str] | None = None, seed: int = 0, sequences: int = 1) -> dict:
    return tune_application(project, application, trials, methods, seed, sequences)
