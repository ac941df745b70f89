"""A path through weight space: per-step records, milestones and resumable checkpoints.

Layout of a path directory::

    records.json                   one record per step (see ``traverse``)
    milestones.json                {name: record} for milestones the objective reached
    milestones/<name>.safetensors  the weights at each milestone
    final.safetensors              the last point w_T
    checkpoints/step-XXXXXX.safetensors (+ .sha256)   w, objective and metric state

A checkpoint holds everything the loop needs to continue exactly as an uninterrupted run would:
the weights, the objective's and the metric's state, the current step length and the records
so far. A checkpoint that fails its digest check is skipped with a warning and the one before it
is used.

Other training loops (the baselines) keep their resumable state the same way, in the same
``checkpoints/step-XXXXXX.safetensors`` files under their own directory, through
:class:`StateCheckpoints`: any nested state (``state_dict``s, generator states, counters; see
:func:`geodesic.core.io.pack`), saved every ``every`` steps, the newest ``keep`` kept.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from torch import Tensor

from geodesic.core.io import (CorruptFileError, load_tensors, pack, read_json, save_tensors, unpack,
                              write_json)

log = logging.getLogger(__name__)
_CKPT = re.compile(r"step-(\d{6,})\.safetensors$")


@dataclass
class Checkpoint:
    step: int
    eta: float
    weights: Tensor
    objective: dict[str, Tensor]
    metric: dict[str, Tensor]
    records: list[dict]
    milestones: dict[str, dict]


def checkpoint_file(directory, step: int) -> FsPath:
    return FsPath(directory) / "checkpoints" / f"step-{step:06d}.safetensors"


def save_checkpoint(directory, ckpt: Checkpoint) -> FsPath:
    tensors = {"w": ckpt.weights}
    tensors.update({f"objective/{k}": v for k, v in ckpt.objective.items()})
    tensors.update({f"metric/{k}": v for k, v in ckpt.metric.items()})
    meta = {"step": str(ckpt.step), "eta": repr(ckpt.eta), "records": json.dumps(ckpt.records),
            "milestones": json.dumps(ckpt.milestones)}
    path = checkpoint_file(directory, ckpt.step)
    save_tensors(path, tensors, meta)
    return path


def _unprefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def checkpoint_files(directory) -> list[FsPath]:
    """The checkpoint files under ``directory``, newest (highest step) first."""
    folder = FsPath(directory) / "checkpoints"
    files = folder.glob("step-*.safetensors") if folder.exists() else []
    return sorted((f for f in files if _CKPT.search(f.name)), reverse=True)


def checkpoint_step(file) -> int:
    """The step a checkpoint file was written at (from its name, ``step-000120.safetensors``)."""
    return int(_CKPT.search(FsPath(file).name).group(1))


def _newest_intact(directory, device, required: str) -> tuple[dict, dict] | None:
    """(tensors, metadata) of the newest checkpoint that passes its digest check and holds the
    metadata entry ``required``; the ones skipped are logged."""
    for file in checkpoint_files(directory):
        try:
            tensors, meta = load_tensors(file, device)
            if required not in meta:
                raise CorruptFileError(f"{file}: no {required!r} entry")
        except CorruptFileError as exc:
            log.warning("skipping checkpoint %s: %s", file, exc)
            continue
        return tensors, meta
    return None


def load_latest_checkpoint(directory, device="cpu") -> Checkpoint | None:
    """The newest intact checkpoint under ``directory``, or None when there is none."""
    found = _newest_intact(directory, device, "records")
    if found is None:
        return None
    tensors, meta = found
    return Checkpoint(step=int(meta["step"]), eta=float(meta["eta"]), weights=tensors["w"],
                      objective=_unprefix(tensors, "objective/"),
                      metric=_unprefix(tensors, "metric/"),
                      records=json.loads(meta["records"]),
                      milestones=json.loads(meta["milestones"]))


def load_states(state: dict, **objects) -> None:
    """``objects[k].load_state_dict(state[k])`` for each keyword: a loop's model, optimizer,
    schedule, minibatch order, stop rule... restored from one checkpoint's state."""
    for key, obj in objects.items():
        obj.load_state_dict(state[key])


class StateCheckpoints:
    """Periodic checkpoints of a training loop's state under ``directory/checkpoints`` (none
    when ``directory`` is None): ``due(step)`` every ``every`` steps, ``save(step, state)``
    writes one and deletes all but the newest ``keep`` (all but itself when ``final``: a finished
    loop needs only its end state), ``latest()`` reads the newest intact one (None when there is
    none)."""

    def __init__(self, directory, every: int, keep: int = 2, device="cpu"):
        self.directory = FsPath(directory) if directory is not None else None
        self.every, self.keep, self.device = every, keep, device

    def due(self, step: int) -> bool:
        return self.directory is not None and step % self.every == 0

    def latest(self):
        found = _newest_intact(self.directory, self.device, "state") if self.directory else None
        if found is None:
            return None
        log.info("%s: resuming from step %s", self.directory, found[1]["step"])
        return unpack(found[0], found[1]["state"])

    def save(self, step: int, state, final: bool = False) -> FsPath | None:
        if self.directory is None:
            return None
        tensors, skeleton = pack(state)
        path = checkpoint_file(self.directory, step)
        save_tensors(path, tensors, {"step": str(step), "state": skeleton})
        for old in checkpoint_files(self.directory)[1 if final else self.keep:]:
            old.unlink(missing_ok=True)
            FsPath(f"{old}.sha256").unlink(missing_ok=True)
        return path


@dataclass
class Path:
    """The result of a traversal: what happened at each step, and where it ended."""

    records: list[dict] = field(default_factory=list)
    milestones: dict[str, dict] = field(default_factory=dict)
    weights: Tensor | None = None
    directory: FsPath | None = None

    @property
    def steps(self) -> int:
        return len(self.records)

    @property
    def euclidean_length(self) -> float:
        return sum(r["step_norm"] for r in self.records)

    @property
    def functional_length(self) -> float:
        return sum(r["functional_step"] for r in self.records)

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) for every record that has ``key`` (e.g. the held-out accuracy)."""
        return [(r["step"], r[key]) for r in self.records if key in r
                and not (isinstance(r[key], float) and math.isnan(r[key]))]

    def milestone_weights(self, name: str) -> Tensor:
        if self.directory is None:
            raise ValueError("the path has no directory; milestones are stored on disk")
        return load_tensors(self.directory / "milestones" / f"{name}.safetensors")[0]["w"]

    def save(self, directory=None) -> None:
        directory = FsPath(directory or self.directory)
        write_json(directory / "records.json", self.records)
        write_json(directory / "milestones.json", self.milestones)
        if self.weights is not None:
            save_tensors(directory / "final.safetensors", {"w": self.weights})
        self.directory = directory

    @classmethod
    def load(cls, directory, device="cpu") -> "Path":
        directory = FsPath(directory)
        final = directory / "final.safetensors"
        weights = load_tensors(final, device)[0]["w"] if final.exists() else None
        return cls(read_json(directory / "records.json"), read_json(directory / "milestones.json"),
                   weights, directory)


def save_milestone(directory, name: str, w: Tensor) -> None:
    save_tensors(FsPath(directory) / "milestones" / f"{name}.safetensors", {"w": w})

