"""Files written atomically and read back only when intact.

Every output goes to a temporary file in the destination folder, is fsynced, then renamed over
the destination, so a kill at any moment leaves either the old file or the new one, never a
truncated one. Tensors are stored as safetensors (no pickle: loading never runs code), with a
``.sha256`` sidecar holding the size and digest so an altered file is detected before use.
Nested training states (a model's, an optimizer's or a scheduler's ``state_dict``, generator
states, counters) go the same way: ``pack`` splits one into its tensors (the safetensors) and the
structure around them (JSON, in the file's metadata); ``unpack`` joins them again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes


class CorruptFileError(ValueError):
    """A file's size or digest does not match its sidecar."""


def atomic_write(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Write tensors as safetensors, then the ``<path>.sha256`` sidecar (size and digest)."""
    data = save_safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                                  metadata=metadata)
    atomic_write(path, data)
    write_json(f"{path}.sha256", {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def load_tensors(path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file checked against its sidecar (when one exists); returns
    (tensors, metadata). Raises :class:`CorruptFileError` on a size or digest mismatch."""
    data = Path(path).read_bytes()
    sidecar = Path(f"{path}.sha256")
    if sidecar.exists():
        expected = read_json(sidecar)
        if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise CorruptFileError(f"{path}: size or sha256 differs from {sidecar.name}")
    try:
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except Exception as exc:  # safetensors raises its own error types on malformed input
        raise CorruptFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    return {k: v.to(device) for k, v in tensors.items()}, metadata


def pack(state) -> tuple[dict[str, torch.Tensor], str]:
    """A nested state (dicts with str or int keys, lists, tuples, tensors, numbers, strings,
    None) as (tensors named by their path, e.g. ``optimizer/state/0/momentum_buffer``; JSON of
    the structure with each tensor replaced by its name)."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(obj, path: str):
        if isinstance(obj, torch.Tensor):
            key = path if path not in tensors else f"{path}#{len(tensors)}"
            tensors[key] = obj.detach().cpu().clone()  # safetensors refuses shared storage
            return {"tensor": key}
        if isinstance(obj, dict):
            return {"dict": [[k, encode(v, f"{path}/{k}".lstrip("/"))] for k, v in obj.items()]}
        if isinstance(obj, (tuple, list)):
            items = [encode(v, f"{path}/{i}".lstrip("/")) for i, v in enumerate(obj)]
            return {"tuple": items} if isinstance(obj, tuple) else items
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} in a state file")

    skeleton = json.dumps(encode(state, ""))  # floats as repr: read back bit for bit
    return tensors, skeleton


def unpack(tensors: dict[str, torch.Tensor], skeleton: str):
    """The inverse of :func:`pack`."""
    def decode(obj):
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        if isinstance(obj, dict):
            if "tensor" in obj:
                return tensors[obj["tensor"]]
            if "tuple" in obj:
                return tuple(decode(v) for v in obj["tuple"])
            return {k: decode(v) for k, v in obj["dict"]}
        return obj

    return decode(json.loads(skeleton))

