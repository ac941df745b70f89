"""Results always match their inputs: the download stage fetches, checks and describes the raw
files, and every resumable state is keyed by the content of its stage's data inputs, so a rerun
after the raw files changed starts afresh instead of resuming work done on the old data."""
import importlib
import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from geodesic.common.rawdata import DOWNLOAD, RawDataError, fetch
from tests.conftest import write_mnist
from tests.helpers.stage_processes import strip_timing

ROOT = Path(__file__).resolve().parents[2]


def test_a_folder_source_is_copied_checked_and_hashed(tmp_path):
    write_mnist(tmp_path / "source", (("train", 30), ("t10k", 20)))
    manifest = fetch("mnist", str(tmp_path / "source"), tmp_path / "raw", tmp_path / "dl")
    assert (manifest["name"], manifest["train"], manifest["test"]) == ("mnist", 30, 20)
    assert manifest["train_classes"] == [3] * 10 and manifest["test_classes"] == [2] * 10
    assert sorted(manifest["files"]) == sorted(f"MNIST/raw/{p}-{k}-ubyte"
                                               for p in ("train", "t10k")
                                               for k in ("images-idx3", "labels-idx1"))
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text()) == manifest
    for path, entry in manifest["files"].items():
        assert (tmp_path / "raw" / path).read_bytes() == (tmp_path / "source" / path).read_bytes()
        assert entry["size"] == (tmp_path / "source" / path).stat().st_size
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "source" / "MNIST").rename(tmp_path / "elsewhere" / "MNIST")
    again = fetch("mnist", str(tmp_path / "elsewhere"), tmp_path / "again", tmp_path / "dl")
    assert again == manifest  # the same files from another folder: the same manifest
    assert (tmp_path / "again/manifest.json").read_bytes() == (
        tmp_path / "raw/manifest.json").read_bytes()
    write_mnist(tmp_path / "source", (("train", 30), ("t10k", 20)), seed=1)
    changed = fetch("mnist", str(tmp_path / "source"), tmp_path / "raw", tmp_path / "dl")
    assert changed["sha256"] != manifest["sha256"]


def test_digits_needs_no_file_and_is_described_by_its_manifest(tmp_path):
    manifest = fetch("digits", DOWNLOAD, tmp_path, tmp_path / "dl")
    assert (manifest["name"], manifest["train"] + manifest["test"]) == ("digits", 1797)
    assert manifest["files"] == {} and len(manifest["sha256"]) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    again = fetch("digits", DOWNLOAD, tmp_path / "b", tmp_path / "dl")
    assert again["sha256"] == manifest["sha256"]


def test_torchvision_downloads_into_its_folder_and_the_files_are_copied(tmp_path, monkeypatch):
    import torchvision.datasets
    calls = []

    def download(self):
        calls.append(self.root)
        write_mnist(Path(self.root), (("train", 30), ("t10k", 20)))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", download)
    manifest = fetch("mnist", DOWNLOAD, tmp_path / "raw", tmp_path / "dl")
    assert calls == [str(tmp_path / "dl")] and manifest["train"] == 30
    for path in manifest["files"]:
        assert (tmp_path / "raw" / path).read_bytes() == (tmp_path / "dl" / path).read_bytes()


def test_missing_unreadable_or_miscounted_files_are_refused(tmp_path, offline):
    with pytest.raises(RawDataError, match=r"data.source = '.*empty' lacks MNIST/raw/train-images"
                                           r"-idx3-ubyte.*allowed: 'torchvision', or a folder"):
        fetch("mnist", str(tmp_path / "empty"), tmp_path / "raw", tmp_path / "dl")
    with pytest.raises(RawDataError, match="downloading them failed.*no network in tests"):
        fetch("mnist", DOWNLOAD, tmp_path / "online", tmp_path / "dl")
    write_mnist(tmp_path / "short", (("train", 30), ("t10k", 20)))
    labels = tmp_path / "short/MNIST/raw/train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + bytes([12]))  # the last label: 12
    with pytest.raises(RawDataError, match=r"train label 12 is not a class id \(allowed: 0..9\)"):
        fetch("mnist", str(tmp_path / "short"), tmp_path / "raw", tmp_path / "dl")
    labels.write_bytes(b"not an idx file")
    with pytest.raises(RawDataError, match="not readable"):
        fetch("mnist", str(tmp_path / "short"), tmp_path / "raw", tmp_path / "dl")


STAGES = {"download": "stages.download:download_stage", "prepare": "stages.prepare:prepare",
          "train": "stages.train:train_stage", "continual": "stages.continual:continual_stage"}


@pytest.fixture
def mnist_project(tmp_path, monkeypatch, one_thread):
    """A project reading test-written MNIST files from ``source`` (data.source), with tiny
    training and continual settings; the working directory and the MLflow store set to it."""
    write_mnist(tmp_path / "source", (("train", 200), ("t10k", 100)))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(name="mnist", source=str(tmp_path / "source"))
    params["model"]["widths"] = [32]
    params["train"].update(epochs=3, seeds=[0, 1])
    params["continual"].update(n_tasks=2, scenarios=["class-il"], baselines=["ewc"], budget=60,
                               batch_size=16, cg_iters=2, metric_batch=32, eval_every=30,
                               stop_every=30, patience=0, fisher_samples=32, memory_per_class=4,
                               checkpoint_every=10)
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return project


def run(caplog, *stages) -> dict[str, str]:
    """Run ``stages`` in order through their entry point (``stages.common.main``) in this
    process; the log of each by name."""
    from stages.common import main
    logs = {}
    for stage in stages:
        module, function = STAGES[stage].split(":")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            main(getattr(importlib.import_module(module), function))
        logs[stage] = caplog.text
    return logs


def metrics(project, stage):
    return strip_timing(json.loads((project / f"metrics/{stage}.json").read_text()))


def test_a_rerun_resumes_on_the_same_data_and_starts_afresh_on_changed_data(mnist_project,
                                                                             caplog):
    """The issue's scenario on test-written files: unchanged inputs resume (train and the
    continual stage), replaced raw files (same path, same params) start afresh and give other
    results."""
    project = mnist_project
    first = run(caplog, "download", "prepare", "train", "continual")
    assert "new: starting afresh" in first["train"] and "new: starting afresh" in first["continual"]
    before = {s: metrics(project, s) for s in ("train", "continual")}
    manifest = json.loads((project / "data/raw/manifest.json").read_text())

    same = run(caplog, "train", "continual")
    for stage in ("train", "continual"):
        assert "found: resuming from it" in same[stage], same[stage][-2000:]
        assert metrics(project, stage) == before[stage]
    assert re.search(r"resuming training at epoch \d+", same["train"])

    write_mnist(project.parent / "source", (("train", 200), ("t10k", 100)), seed=1)
    changed = run(caplog, "download", "prepare", "train", "continual")
    assert json.loads((project / "data/raw/manifest.json").read_text())["sha256"] != manifest[
        "sha256"]
    for stage in ("train", "continual"):
        assert "new: starting afresh" in changed[stage], changed[stage][-2000:]
        assert "resuming" not in changed[stage].replace("found: resuming", "")
        assert metrics(project, stage) != before[stage]
    assert len(list((project / "checkpoints/train").iterdir())) == 2  # one per data content


@pytest.mark.parametrize("key, value, message", [
    ("source", "nowhere", "data.source = 'nowhere' is not allowed: data.source = '"),
    ("root", "../shared/data/mnist-real", "data.root = '../shared/data/mnist-real' is not "
     "allowed: a relative folder inside the project"),
    ("root", "/data/raw", "name a folder elsewhere as data.source"),
])
def test_the_download_stage_refuses_a_bad_source_or_root_before_compute(
        mnist_project, caplog, capsys, key, value, message):
    params = yaml.safe_load((mnist_project / "params.yaml").read_text())
    params["data"][key] = value
    (mnist_project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as exit_info:
        run(caplog, "download")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if key == "source":
        assert "lacks MNIST/raw/train-images-idx3-ubyte" in err


def test_prepare_depends_on_the_raw_files_not_on_where_they_came_from():
    """dvc.yaml: download's output is prepare's input; where the files come from (data.source,
    data.root) is a parameter of download only, so a new source with the same files reruns
    nothing downstream."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert next(iter(stages)) == "download"
    assert stages["download"]["always_changed"] is True  # a folder outside: DVC cannot watch it
    assert stages["download"]["outs"] == ["${data.root}"]
    assert stages["prepare"]["deps"][0] == "${data.root}"
    assert {"data.source", "data.root"} <= set(stages["download"]["params"])
    assert not {"data", "data.source", "data.root"} & set(stages["prepare"]["params"])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    assert {f"data.{k}" for k in params} - {"data.source", "data.root"} == set(
        stages["prepare"]["params"])
