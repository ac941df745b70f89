"""Shared pieces of the benchmarks: models, the SGD-step baseline, alternating timing, JSON,
progress lines and the source a run came from.

The unit of cost is one SGD step on the same batch: forward, cross-entropy, backward and a
momentum-SGD update. The machines are shared and noisy, so every measured function is timed in
rounds that run the baseline and each candidate one after another; a figure is the median time
of the candidate over the median time of the baseline in the same run (``ratio``), and the
median of the per-round ratios is kept as well (``paired``), and the ratio of the fastest
calls (``best``) and the ratio of median process CPU times (``cpu``). On a shared 2-core machine
a call is either undisturbed or preempted for a scheduler slice or more, and a long call is
preempted more often than a short one, so under load the wall-clock medians move with the load
(recorded in the machine info) and penalise the longer operation; ``best`` and ``cpu`` barely
move (with one thread, ``--threads 1``, CPU time is the undisturbed wall time).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

from geodesic.common.models import build_model  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# name -> (registry name, input shape, mlp widths)
MODELS = {
    "mlp": ("mlp", (1, 8, 8), (300, 100)),        # 64-300-100-10, digits-shaped
    "mlp784": ("mlp", (1, 28, 28), (300, 100)),   # 784-300-100-10, MNIST-shaped
    "vgg11": ("vgg11", (3, 32, 32), ()),
    "vgg11_bn": ("vgg11_bn", (3, 32, 32), ()),
    "vgg16": ("vgg16", (3, 32, 32), ()),
    "vgg16_bn": ("vgg16_bn", (3, 32, 32), ()),
}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make(name: str, batch: int, seed: int = 0, widths: tuple[int, ...] | None = None,
         classes: int = 10):
    """A freshly initialised model of ``MODELS[name]`` and a random batch (inputs, labels).

    BatchNorm statistics are filled by one training-mode pass so eval mode is not trivial."""
    registry_name, shape, default_widths = MODELS[name]
    torch.manual_seed(seed)
    model = build_model(registry_name, shape, classes, widths or default_widths).to(device())
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, *shape, generator=gen).to(device())
    y = torch.randint(0, classes, (batch,), generator=gen).to(device())
    with torch.no_grad():
        model.train()(x)
    return model, x, y


def sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD step (forward + backward + update) on (x, y); the baseline of every ratio."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timed(NamedTuple):
    """Seconds a timed function measured for the part of its call that counts."""
    wall: float
    cpu: float


def alternate(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
              max_seconds: float | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in ``rounds`` rounds that call every function
    once in turn (so slow phases of a noisy machine hit all of them alike). The wall-clock
    times are under the function's name; the process CPU times (all threads) under
    ``name + "@cpu"``, which is the cost when other jobs take turns on the cores. A function
    that returns :class:`Timed` has timed the part of its call that counts itself; that is
    kept instead of the whole call's."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    times.update({f"{k}@cpu": [] for k in fns})
    start = time.perf_counter()
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            sync()
            wall, cpu = out if isinstance(out, Timed) else (time.perf_counter() - t,
                                                             time.process_time() - c)
            times[name].append(wall)
            times[f"{name}@cpu"].append(cpu)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return times


def ratios(times: dict[str, list[float]], base: str = "sgd") -> dict[str, dict[str, float]]:
    """Per function: median seconds; median / median of the baseline (``ratio``); median of the
    per-round ratios (``paired``); fastest / fastest baseline call (``best``); and the median
    CPU-time ratio (``cpu``)."""
    b = statistics.median(times[base])
    out = {}
    for name, ts in times.items():
        if name.endswith("@cpu"):
            continue
        paired = [t / s for t, s in zip(ts, times[base])]
        out[name] = {"median_s": statistics.median(ts), "min_s": min(ts),
                     "ratio": statistics.median(ts) / b, "paired": statistics.median(paired),
                     "best": min(ts) / min(times[base]), "rounds": len(ts)}
        cpu, cpu_base = times.get(f"{name}@cpu"), times.get(f"{base}@cpu")
        if cpu and cpu_base:
            out[name]["cpu_s"] = statistics.median(cpu)
            out[name]["cpu"] = statistics.median(cpu) / max(statistics.median(cpu_base), 1e-12)
    return out


def machine() -> dict:
    """Where the figures came from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "device": str(device())}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    file = RESULTS / f"{name}.json"
    file.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return file


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table of ``rows`` (dicts) restricted to ``columns``."""
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


class Progress:
    """Prints each line with the seconds since the benchmark started."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {text}", flush=True)


def source() -> dict:
    """The commit the code ran from and the tracked files that differed from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    changed = [line.split(maxsplit=1)[-1] for line in
               git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "modified": changed}
