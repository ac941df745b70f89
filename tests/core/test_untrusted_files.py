"""Files that would run code when unpickled are refused by every loader of the project."""
import io
import pickle

import pytest
import torch

from geodesic.core.io import CorruptFileError, load_tensors, save_tensors
from geodesic.core.path import StateCheckpoints
from geodesic.core.path import Path as TraversalPath


class Exploit:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_checkpoint(path, marker):
    buffer = io.BytesIO()
    torch.save({"model": Exploit(marker)}, buffer, pickle_module=pickle)
    path.write_bytes(buffer.getvalue())


def test_crafted_pickle_runs_code_when_unpickled_naively(tmp_path):
    """The file really is malicious: a plain unpickling runs it (so the tests below mean it)."""
    marker = tmp_path / "pwned"
    crafted_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_training_state_loader_refuses_it(tmp_path):
    """A pickle in the place of a training loop's checkpoint (base training, baselines, the
    Bezier curve) is skipped, never unpickled."""
    marker = tmp_path / "pwned"
    (tmp_path / "checkpoints").mkdir()
    crafted_checkpoint(tmp_path / "checkpoints" / "step-000001.safetensors", marker)
    assert StateCheckpoints(tmp_path, every=1).latest() is None
    assert not marker.exists()


def test_tensor_loader_refuses_it(tmp_path):
    marker = tmp_path / "pwned"
    crafted_checkpoint(tmp_path / "final.safetensors", marker)
    with pytest.raises(CorruptFileError):
        load_tensors(tmp_path / "final.safetensors")
    assert not marker.exists()


def test_altered_tensor_file_is_detected_by_its_digest(tmp_path):
    save_tensors(tmp_path / "w.safetensors", {"w": torch.arange(10.0)})
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # same size, one value changed to +inf
    (tmp_path / "w.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="sha256"):
        load_tensors(tmp_path / "w.safetensors")


def test_path_loader_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "records.json").write_text("[]")
    (tmp_path / "milestones.json").write_text("{}")
    crafted_checkpoint(tmp_path / "final.safetensors", marker)
    with pytest.raises(CorruptFileError):
        TraversalPath.load(tmp_path)
    assert not marker.exists()
