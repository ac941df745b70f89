"""The flows against a real, temporary Prefect server (``prefect_test_harness``), real DVC and a
real MLflow store: a failing stage raises with its own message, transient failures are retried,
and (slow) the digits pipeline and a two-point sweep leave the records DESIGN.md section 5 asks
for. Nothing is mocked.

The slow tests run on a copy of this project with tiny parameters (``TINY`` in
tests/helpers/projects.py); when a stage lands whose parameters need shrinking too, add them
there. Assertions about traversal stages (stages with outputs under ``paths/``) activate by
themselves once dvc.yaml holds such stages.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")  # before prefect loads
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402
import yaml  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from tests.helpers.mlflow_runs import children  # noqa: E402
from tests.helpers.projects import GIT_IDENTITY, copy_project  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ATTEMPT = """import json, pathlib
counter = pathlib.Path("attempts")
attempt = len(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text("x" * attempt)
"""


def dvc_project(root: Path, dvc_yaml: str, scripts: dict[str, str], scm: bool = False) -> Path:
    """A DVC project with ``dvc.yaml``, the stage scripts ``scripts`` and this project's
    ``params.yaml``; with ``scm`` a committed git repository (experiments need one)."""
    root.mkdir(parents=True)
    if scm:
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"] + ([] if scm else ["--no-scm"]),
                   cwd=root, check=True)
    (root / "dvc.yaml").write_text(textwrap.dedent(dvc_yaml))
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    for name, code in scripts.items():
        (root / name).write_text(ATTEMPT + textwrap.dedent(code))
    if scm:
        env = dict(os.environ, **GIT_IDENTITY)
        subprocess.run(["git", "add", "-A"], cwd=root, check=True, env=env)
        subprocess.run(["git", "commit", "-q", "-m", "test project"], cwd=root, check=True,
                       env=env)
    return root


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=240):
        yield


@pytest.fixture
def isolated(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "GEODESIC_TAGS", "GEODESIC_PARENT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)


def test_transient_failures_are_retried_and_a_failing_stage_raises_its_message(
        tmp_path, harness, isolated, monkeypatch):
    from pipelines import reproduce as module
    from pipelines.project import CommandFailed
    root = dvc_project(tmp_path / "p", """\
        stages:
          flaky:
            cmd: python flaky.py
            outs: [a.txt]
            metrics:
              - m.json:
                  cache: false
          broken:
            cmd: python broken.py
            deps: [a.txt]
            outs: [b.txt]
        """, {"flaky.py": """\
            if attempt == 1:
                raise SystemExit("sqlite3.OperationalError: database is locked")
            pathlib.Path("a.txt").write_text("a")
            pathlib.Path("m.json").write_text(json.dumps({"attempts": attempt}))
            """,
              "broken.py": "raise ValueError('bad input 42 in stage broken')\n"})
    monkeypatch.setattr(module, "run_stage", module.run_stage.with_options(
        retry_delay_seconds=0))
    with pytest.raises(CommandFailed, match=r"stage 'broken' failed \(exit \d+\): "
                                            r"ValueError: bad input 42 in stage broken$"):
        module.reproduce(project=str(root))
    assert json.loads((root / "m.json").read_text()) == {"attempts": 2}  # retried once
    assert (root / "attempts").read_text() == "xxx"  # and broken ran once: not retried
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("pipeline").experiment_id])
    assert run.info.status == "FAILED" and run.data.params["stages"] == "flaky,broken"


# --- the digits pipeline (slow) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny copy of this project, its MLflow store and its stages in DVC's order."""
    from pipelines.project import Project
    root = copy_project(tmp_path_factory.mktemp("digits"))
    return root, MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"), \
        Project(root).stages()


def dvc_yaml_stages(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def is_traversal_stage(spec: dict) -> bool:
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", [])]
    return any(str(o).startswith("paths") for o in outs)


@pytest.mark.slow
def test_reproduce_runs_the_digits_pipeline_and_mlflow_holds_the_nested_record(
        digits, harness, isolated):
    import mlflow
    import torch

    from geodesic.core.io import load_tensors
    from geodesic.common.models import build_model
    from pipelines.flows import reproduce
    from pipelines.project import Project, flat_metrics
    root, client, stages = digits
    result = reproduce(project=str(root))

    assert [(r["stage"], r["ran"]) for r in result["stages"]] == [(s, True) for s in stages]
    declared = [next(iter(m)) if isinstance(m, dict) else m
                for spec in dvc_yaml_stages(root).values() for m in spec.get("metrics", [])]
    for file in declared:
        assert any(key.startswith(f"{Path(file).stem}.") for key in result["metrics"]), file
    shown = flat_metrics(next(iter(Project(root).dvc_json("metrics", "show").values()))["data"])
    assert shown and shown.items() <= result["metrics"].items()  # the command line agrees
    assert {k.split(".")[0] for k in shown} == {f"{s}_headline" for s in stages
                                                if s not in ("download", "prepare")}
    assert all(k.split(".")[1] in {"geodesic", "best_baseline", "margin", "test_acc_mean",
                                   "test_acc_min"} for k in shown)  # a table that fits a screen
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                            text=True, check=True).stdout.strip()

    pipeline = client.get_run(result["run_id"])
    assert pipeline.data.metrics["train.test_acc_mean"] == result["metrics"]["train.test_acc_mean"]
    runs = {r.data.tags["stage"]: r for r in children(client, result["run_id"])}
    assert sorted(runs) == sorted(stages)  # one run per stage execution, nested in the pipeline
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["git_commit"] == commit
        assert re.fullmatch(r"[0-9a-f]{16}", run.data.tags["params_hash"])
        assert client.get_experiment(run.info.experiment_id).name == name

    seeds = yaml.safe_load((root / "params.yaml").read_text())["train"]["seeds"]
    methods = {r.info.run_name: r for r in children(client, runs["train"].info.run_id)}
    assert sorted(methods) == sorted(f"seed{s}" for s in seeds)
    for seed in seeds:
        run = methods[f"seed{seed}"]
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2]  # train.epochs = 2 in the tiny copy
        assert f"model/seed{seed}.safetensors" in {
            a.path for a in client.list_artifacts(run.info.run_id, "model")}
        registered = mlflow.pytorch.load_model(f"models:/base-digits@mlp-seed{seed}")
        state, _ = load_tensors(root / "models" / f"seed{seed}.safetensors")
        net = build_model("mlp", (1, 8, 8), 10, [300, 100])
        net.load_state_dict(state)
        x = torch.randn(7, 1, 8, 8)
        with torch.no_grad():
            assert torch.allclose(registered(x), net.eval()(x), atol=1e-5)

    for name, spec in dvc_yaml_stages(root).items():  # activates once traversal stages exist
        if not is_traversal_stage(spec):
            continue
        methods = children(client, runs[name].info.run_id)
        stepped = [r for r in methods if any(len(client.get_metric_history(r.info.run_id, k))
                                             > 1 for k in r.data.metrics)]
        assert stepped, f"stage {name}: no method run with a per-step metric history"
        for run in (r for r in stepped if any(k.endswith("step_norm") for k in r.data.metrics)):
            # traversals: a curve evaluated at points (the straight line) has no path
            folders = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
            assert folders and all(re.fullmatch(r"checkpoints/step-\d{6}", f) for f in folders)

    shown = Project(root).dvc_json("plots", "show")  # every plots definition renders
    assert not shown.get("errors")
    for plot_id, renders in (shown.get("data") or {}).items():
        if renders and renders[0]["type"] == "image":  # the stages' PNGs
            assert Path(renders[0]["url"]).read_bytes()[:4] == b"\x89PNG", plot_id
        else:
            assert renders and renders[0]["content"]["data"]["values"], plot_id
    diff = Project(root).dvc_json("metrics", "diff")  # tiny run against the committed metrics
    assert set(diff) == set(declared)


@pytest.mark.slow
def test_a_two_point_sweep_makes_two_experiments_and_two_tagged_run_trees(
        digits, harness, isolated):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from pipelines.flows import sweep
    from pipelines.project import Project
    root, client, stages = digits
    result = sweep(overrides=["train.lr=[0.02,0.1]"], project=str(root), sweep_id="t2")

    names = ["t2-p0", "t2-p1"]
    assert [row["experiment"] for row in result["rows"]] == names
    experiments = Project(root).experiments()  # what dvc exp show lists
    assert [experiments[n]["params"]["train.lr"] for n in names] == [0.02, 0.1]
    for name, row in zip(names, result["rows"]):
        assert experiments[name]["metrics"] == row["metrics"] and row["metrics"]
        assert not row["error"]

    sweep_run = client.get_run(result["run_id"])
    assert sweep_run.data.tags["sweep_id"] == "t2"
    points = {r.info.run_name: r for r in children(client, result["run_id"])}
    assert sorted(points) == names
    trees = {}
    for name, point in points.items():
        stage_runs = {r.data.tags["stage"]: r for r in children(client, point.info.run_id)}
        assert "train" in stage_runs  # train.lr changed, so train ran (prepare: run cache)
        tree = [point, *stage_runs.values()]
        for run in stage_runs.values():
            tree += children(client, run.info.run_id)
        for run in tree:
            assert run.data.tags["sweep_id"] == "t2"
            assert run.data.tags["sweep_point"] == name[-1]
            assert run.data.tags["overrides"] == f"train.lr={0.02 if name == 't2-p0' else 0.1}"
        trees[name] = stage_runs
    a, b = (set(trees[n]["train"].data.params.items()) for n in names)
    assert {k for k, _ in a ^ b} == {"train.lr"}  # the params differ exactly by the override

    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"comparison.md", "comparison.csv", "comparison.png"} <= artifacts
    with get_client(sync_client=True) as prefect:
        [artifact] = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["sweep-t2"])))
    assert artifact.type == "markdown" and all(n in artifact.data for n in names)


@pytest.mark.slow
def test_a_failing_sweep_point_is_recorded_and_the_others_still_run(tmp_path, harness, isolated):
    from pipelines.flows import sweep
    from pipelines.project import SweepFailed
    root = dvc_project(tmp_path / "p", """\
        stages:
          fit:
            cmd: python fit.py
            params: [train.lr]
            metrics:
              - score.json:
                  cache: false
        """, {"fit.py": """\
            import yaml
            lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
            if lr > 1:
                raise FloatingPointError(f"diverged at lr={lr}")
            pathlib.Path("score.json").write_text(json.dumps({"score": 1 - lr}))
            """}, scm=True)
    with pytest.raises(SweepFailed, match=r"s3-p1: FloatingPointError: diverged at lr=2.0"):
        sweep(overrides=["train.lr=[0.25,2.0]"], project=str(root), sweep_id="s3")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    [parent] = client.search_runs([client.get_experiment_by_name("pipeline").experiment_id],
                                  "tags.flow = 'sweep'")
    points = {r.info.run_name: r for r in children(client, parent.info.run_id)}
    assert points["s3-p0"].info.status == "FINISHED"
    assert points["s3-p0"].data.metrics == {"score.score": 0.75}
    assert points["s3-p1"].info.status == "FAILED"
    table = Path(client.download_artifacts(parent.info.run_id, "comparison.md",
                                           str(tmp_path))).read_text()
    assert "| 0 | s3-p0 | 0.25 | 0.75 |  |" in table
    assert "| 1 | s3-p1 | 2.0 |  | FloatingPointError: diverged at lr=2.0 |" in table
