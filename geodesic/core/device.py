"""Device choice: CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible; "
                           "use device: auto or cpu")
    return torch.device(name)
