"""Pieces of the flows that need no Prefect server: sweep points, stage order read from DVC,
error messages of failed stages, the comparison table, the command line."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from geodesic.core.settings import ParamsError
from pipelines import report
from pipelines.overrides import expand, grid
from pipelines.project import CommandFailed, Project, error_message, format_value

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"train": {"seeds": [0, 1], "lr": 0.05, "epochs": 30},
          "sparsify": {"solver": "cg", "eta": 0.05}}


def test_grid_is_the_product_with_the_last_key_fastest():
    points = grid(["sparsify.solver=[cg,qp,penalty]", "sparsify.eta=[0.02,0.05]",
                   "train.epochs=3"], PARAMS)
    assert len(points) == 6
    assert points[0] == {"sparsify.solver": "cg", "sparsify.eta": 0.02, "train.epochs": 3}
    assert points[1] == {"sparsify.solver": "cg", "sparsify.eta": 0.05, "train.epochs": 3}
    assert [p["sparsify.solver"] for p in points] == ["cg", "cg", "qp", "qp", "penalty",
                                                       "penalty"]


def test_a_list_parameter_takes_a_list_as_one_value_and_a_list_of_lists_as_points():
    assert grid(["train.seeds=[2,3]"], PARAMS) == [{"train.seeds": [2, 3]}]
    assert grid(["train.seeds=[[0,1],[2,3]]"], PARAMS) == [{"train.seeds": [0, 1]},
                                                           {"train.seeds": [2, 3]}]


def test_unknown_keys_and_bad_values_stop_the_sweep_before_compute(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"epochs": 3}}))
    with pytest.raises(ParamsError, match="train.epohcs"):
        expand(["train.epohcs=[1,2]"], None, params)
    with pytest.raises(ParamsError, match=r"train.lr = -1.*> 0"):
        expand(["train.lr=[0.1,-1]"], None, params)
    with pytest.raises(ParamsError, match="sparsify.solver = 'newton'.*one of qp, cg, penalty"):
        expand(None, [{"sparsify.solver": "newton"}], params)
    points = expand(["train.lr=[0.1,0.2]"], [{"sparsify.solver": "qp"}], params)
    assert points == [{"train.lr": 0.1}, {"train.lr": 0.2}, {"sparsify.solver": "qp"}]


@pytest.mark.parametrize("spec, message", [
    ("sparsify.eta=[0.1,", "sparsify.eta = '[0.1,' is not allowed: a YAML value"),
    ("sparsify.etaa=[0.1,0.2]", "sparsify.etaa is not a parameter: a known parameter (did you "
                                "mean sparsify.eta?); known here: sparsify.solver, sparsify.eta"),
])
def test_a_bad_sweep_spec_exits_2_with_one_line_before_prefect_starts(spec, message, capsys,
                                                                       monkeypatch):
    import types

    from pipelines.__main__ import main
    never = types.ModuleType("pipelines.flows")
    never.sweep = lambda **_: pytest.fail("the sweep flow started")
    monkeypatch.setitem(sys.modules, "pipelines.flows", never)
    assert main(["-C", str(ROOT), "sweep", "-S", spec]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: params: {message}")


def test_values_are_written_the_way_dvc_reads_them_back():
    assert [format_value(v) for v in ([0, 1], True, 0.05, "cg")] == ["[0, 1]", "true", "0.05",
                                                                     "cg"]


def test_the_stage_message_is_found_below_dvc_chatter():
    output = ["Running stage 'bad':", "> python -m stages.bad", "Traceback (most recent call):",
              '  File "x.py", line 3, in <module>',
              "geodesic.core.settings.ParamsError: params: train.lr = -1 is not allowed: > 0",
              "ERROR: failed to reproduce 'bad': failed to run: python -m stages.bad, exited "
              "with 1"]
    assert error_message(output) == ("geodesic.core.settings.ParamsError: params: train.lr = -1 is "
                                     "not allowed: > 0")
    assert error_message(["error: params: data.name = 'x' is not allowed", "ERROR: failed"]) \
        == "error: params: data.name = 'x' is not allowed"
    failed = CommandFailed("stage 'bad'", 1, ["sqlite3.OperationalError: database is locked"])
    assert failed.transient and "database is locked" in str(failed)
    assert not CommandFailed("stage 'bad'", 1, output).transient


def _dvc_project(root: Path, dvc_yaml: str, scm: bool = False) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"] + ([] if scm else ["--no-scm"]),
                   cwd=root, check=True)
    (root / "dvc.yaml").write_text(textwrap.dedent(dvc_yaml))
    return Project(root)


def test_stages_come_in_dvc_order_with_their_upstream(tmp_path):
    project = _dvc_project(tmp_path / "p", """\
        stages:
          report:
            cmd: cat b c > report
            deps: [b, c]
            outs: [report]
          c:
            cmd: cat a > c
            deps: [a]
            outs: [c]
          a:
            cmd: echo a > a
            outs: [a]
          b:
            cmd: cat a > b
            deps: [a]
            outs: [b]
        """)
    assert project.stages() == ["a", "c", "b", "report"]  # upstream first, ties as written
    assert project.stages(["b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="unknown stage.*nope.*known: a, b, c, report"):
        project.stages(["nope"])


def test_comparison_table_lists_overrides_then_varying_headline_metrics():
    rows = [{"point": 0, "experiment": "s-p0", "overrides": {"sparsify.solver": "cg"},
             "metrics": {"sparsify.acc": 0.91, "sparsify.seeds.0.acc": 0.9, "train.acc": 0.97},
             "error": None},
            {"point": 1, "experiment": "s-p1", "overrides": {"sparsify.solver": "qp"},
             "metrics": {"sparsify.acc": 0.85, "sparsify.seeds.0.acc": 0.8, "train.acc": 0.97},
             "error": "ValueError: boom"}]
    md = report.markdown(rows, "Sweep s").splitlines()
    assert md[2] == ("| point | experiment | sparsify.solver | sparsify.acc | "
                     "sparsify.seeds.0.acc | error |")
    assert md[4] == "| 0 | s-p0 | cg | 0.91 | 0.9 |  |"
    assert md[5] == "| 1 | s-p1 | qp | 0.85 | 0.8 | ValueError: boom |"
    assert report.to_csv(rows).splitlines()[0] == ("point,experiment,sparsify.solver,"
                                                   "sparsify.acc,sparsify.seeds.0.acc,"
                                                   "train.acc,error")


def test_the_default_comparison_shows_test_quality_never_timing_and_takes_short_names():
    def row(i, acc, seconds):
        return {"point": i, "experiment": f"s-p{i}", "overrides": {"sparsify.eta": 0.1 * i},
                "metrics": {"sparsify.methods.geodesic.0.9.test_acc": acc,
                            "sparsify.methods.geodesic.0.9.seconds": seconds,
                            "sparsify.methods.imp.0.9.test_acc": 0.9,
                            "connect.methods.bezier.min_acc": 0.8 + i / 100},
                "error": None}
    rows = [row(1, 0.95, 12.0), row(2, 0.96, 30.0)]
    assert report.metric_columns(rows) == ["connect.methods.bezier.min_acc",
                                           "sparsify.methods.geodesic.0.9.test_acc"]
    assert report.metric_columns(rows, ["geodesic.0.9.test_acc"]) == [
        "sparsify.methods.geodesic.0.9.test_acc"]
    assert report.metric_columns(rows, ["test_acc"]) == [
        "sparsify.methods.geodesic.0.9.test_acc", "sparsify.methods.imp.0.9.test_acc"]
    fig = report.figure(rows, "seconds")
    assert fig.axes[0].get_ylabel() == "sparsify.methods.geodesic.0.9.seconds"


@pytest.mark.parametrize("command", ["repro", "sweep", "serve", "deploy", "ui", "sync",
                                     "compose"])
def test_every_subcommand_explains_itself(command):
    out = subprocess.run([sys.executable, "-m", "pipelines", command, "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"usage: geodesic {command}")
    assert len(out.splitlines()) > 6


def test_plot_templates_render_in_dvc_plots(tmp_path):
    project = _dvc_project(tmp_path / "p", """\
        plots:
          - plots/matrix.csv:
              template: pipelines/plot_templates/accuracy_matrix.json
              x: task
              y: after
          - plots/path.csv:
              template: pipelines/plot_templates/lines_by_method.json
              x: step
              y: accuracy
        """)
    shutil.copytree(ROOT / "pipelines" / "plot_templates",
                    project.root / "pipelines" / "plot_templates")
    (project.root / "plots").mkdir()
    (project.root / "plots" / "matrix.csv").write_text("after,task,accuracy\n1,1,0.98\n"
                                                       "2,1,0.7\n2,2,0.95\n")
    (project.root / "plots" / "path.csv").write_text("step,method,accuracy\n0,geodesic,0.97\n"
                                                     "0,line,0.97\n10,geodesic,0.95\n"
                                                     "10,line,0.6\n")
    shown = project.dvc_json("plots", "show")
    assert not shown.get("errors")
    matrix = shown["data"]["plots/matrix.csv"][0]["content"]
    assert matrix["encoding"]["x"]["field"] == "task"
    assert matrix["encoding"]["y"]["field"] == "after"
    assert [row["accuracy"] for row in matrix["data"]["values"]] == ["0.98", "0.7", "0.95"]
    path = shown["data"]["plots/path.csv"][0]["content"]
    assert path["encoding"]["color"]["field"] == "method"
    assert {(r["method"], r["step"]) for r in path["data"]["values"]} == {
        ("geodesic", "0"), ("line", "0"), ("geodesic", "10"), ("line", "10")}


def test_dvc_metrics_show_fits_a_screen():
    """The committed metrics as `dvc metrics show --md` prints them: the headline files only,
    under 150 characters wide; the full documents stay git-tracked outputs beside them."""
    out = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--md"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 5 and max(map(len, lines)) < 150
    assert all("_headline.json" in line for line in lines[2:])


def test_every_figure_the_stages_write_is_a_dvc_image_plot():
    """`dvc plots show` on the project lists each committed PNG as an image (offline)."""
    shown = Project(ROOT).dvc_json("plots", "show")
    images = {k for k, v in shown["data"].items() if v and v[0].get("type") == "image"}
    pngs = {str(p.relative_to(ROOT)) for p in (ROOT / "plots").rglob("*.png")}
    assert pngs and pngs <= images


@pytest.mark.slow
def test_a_fresh_clone_pulls_recorded_outputs_from_the_dvc_remote_instead_of_rerunning(tmp_path):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    origin = tmp_path / "origin"
    origin.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=origin, check=True)
    project = _dvc_project(origin, """\
        stages:
          make:
            cmd: python -c "import random; open('out.txt', 'w').write(str(random.random()))"
            outs: [out.txt]
        """, scm=True)
    project.dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"))
    assert project.repro_stage("make")
    project.dvc("push")
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "x"],
                ["git", "clone", "-q", str(origin), str(tmp_path / "clone")]):
        subprocess.run(cmd, cwd=origin, check=True, env=env)
    clone = Project(tmp_path / "clone")
    assert not clone.repro_stage("make")  # pulled, not recomputed
    assert (clone.root / "out.txt").read_text() == (origin / "out.txt").read_text()
