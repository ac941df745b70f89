"""What every stage shares: parameters, logging, file locations, the base networks."""
from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Callable

from geodesic.core.settings import ParamsError
from geodesic.errors import TrackingUnavailable
from geodesic.params import Params, load_params

PARAMS = Path("params.yaml")
DATASET = Path("data/prepared/dataset.safetensors")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
PATHS = Path("paths")
CHECKPOINTS = Path("checkpoints")


def checkpoint_dir(stage: str, params: Params, sections: tuple[str, ...],
                   inputs: tuple[Path, ...]) -> Path:
    """Where a stage keeps its resumable checkpoints: ``checkpoints/<stage>/<hash>``, the hash
    of the parameter ``sections`` it depends on, of the code (:func:`code_hash`) and of the
    content of its data ``inputs`` (:func:`content_hash`: ``data/prepared``, the base networks
    it starts from). Not a DVC output, so ``dvc repro`` does not delete it before rerunning the
    stage: a killed stage resumes, and changed parameters, code or input data start afresh
    (never finishing what other code or other data began)."""
    import hashlib
    import json
    key = "\n".join([json.dumps(params_dict(params, *sections), sort_keys=True), code_hash(),
                     content_hash(*inputs)])
    folder = CHECKPOINTS / stage / hashlib.sha256(key.encode()).hexdigest()[:16]
    logging.getLogger(f"stages.{stage}").info(
        "checkpoints: %s (%s)", folder, "found: resuming from it" if folder.exists() else
        "new: starting afresh (parameters, code or input data differ from every earlier run)")
    return folder


def resumed_from(folder: Path) -> str:
    """``folder`` when an earlier execution left checkpoints in it, else empty (for the tag)."""
    return str(folder) if folder.exists() else ""


def code_hash() -> str:
    """The sha256 of the sources of the library and the stages (``geodesic/``, ``stages/``)."""
    import hashlib

    import geodesic
    digest = hashlib.sha256()
    for package in (Path(geodesic.__file__).parent, Path(__file__).parent):
        for file in sorted(package.rglob("*.py")):
            digest.update(file.relative_to(package.parent).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def content_hash(*paths: Path) -> str:
    """The sha256 of the files at ``paths`` (a folder: every file under it), names and bytes:
    it changes with any changed, added or removed input file."""
    import hashlib
    digest = hashlib.sha256()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: an input of the stage is missing (run the stages "
                                    "before it: dvc repro)")
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{file.as_posix()}\0{file.stat().st_size}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def publish(source: Path, target: Path) -> None:
    """Copy a finished folder of results (path records, milestones, end points) from a stage's
    checkpoint folder to its DVC output ``target``, leaving out the resumable checkpoints."""
    import shutil
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", ".*"))


def model_file(seed: int) -> Path:
    return MODELS / f"seed{seed}.safetensors"


def main(stage: Callable[[Params], None]) -> None:
    """Run ``stage`` with the checked parameters; bad parameters exit 2 with one message, a
    tracking server that does not answer exits 3 (unless ``tracking.when_unreachable`` is
    ``offline``: the ``tracking`` section reaches MLflow from here, not through the stage, so
    it is a DVC parameter of no stage)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        params = load_params(PARAMS)
        from geodesic import tracking  # after the check: bad parameters import nothing heavy
        tracking.configure(params.tracking)
        stage(params)
    except ParamsError as exc:  # also raised by checks that need the stage's inputs
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except TrackingUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)


def params_dict(params: Params, *sections: str) -> dict:
    """The named sections as plain mappings (what the stage depends on)."""
    return {name: dataclasses.asdict(getattr(params, name)) for name in sections}


def start(settings):
    """A stage's compute set-up from its settings section: torch's CPU threads
    (``cpu_threads``, 0 leaves torch's default), the device (``device``), the prepared data.
    Returns (device, data)."""
    import torch

    from geodesic.core.device import resolve_device
    if settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    return resolve_device(settings.device), load_data()


def load_data():
    """The prepare stage's data set."""
    from geodesic.common.data import load_saved
    return load_saved(DATASET)


def load_base_model(params: Params, data, seed: int, device="cpu"):
    """The base network trained with ``seed`` by the train stage, shaped for ``data``."""
    from geodesic.core.io import load_tensors
    model = params.model.build(data.in_shape, data.num_classes)
    state, _ = load_tensors(model_file(seed))
    model.load_state_dict(state)
    return model.to(device)


def write_metrics(application: str, doc: dict) -> None:
    """``metrics/<application>.json``, every figure (git-tracked, not a DVC metric), and
    ``metrics/<application>_headline.json``, the few that ``dvc metrics show`` displays; an
    application's headline figures and histories go to the active MLflow run as well."""
    from geodesic import tracking
    from geodesic.headline import HEADLINES, compact
    from geodesic.core.io import write_json
    write_json(METRICS / f"{application}.json", doc)
    write_json(METRICS / f"{application}_headline.json", compact(application, doc))
    if application in HEADLINES:
        tracking.log_headline(*HEADLINES[application](doc))
