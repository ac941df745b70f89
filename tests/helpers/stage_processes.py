"""Stages run as their own processes: run, SIGKILLed and rerun; inputs copied, metrics compared."""
import shutil
import subprocess
import sys
from pathlib import Path

TIMING = ("seconds", "wall_seconds", "cpu_seconds", "align_seconds")


def run_stage(name, cwd, env):
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def strip_timing(obj):
    """A metrics document without its wall-clock and CPU times (the one thing a rerun changes)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    return obj


def kill_when(proc: subprocess.Popen, ready, jitter: float, timeout: float = 600) -> None:
    """SIGKILL ``proc`` at a random moment: a uniform 0..``jitter`` seconds after ``ready()``
    first holds (polled every 20 ms); the process must still be running then."""
    import random
    import signal
    import time

    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the stage ended before the moment to kill it came"
        assert time.time() < deadline, "the moment to kill the stage never came"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, jitter))
    assert proc.poll() is None, "the stage ended before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def kill_and_rerun(stage: str, cwd: Path, env: dict, ready, jitter: float, metrics: str,
                   killed=lambda: None) -> subprocess.CompletedProcess:
    """Start ``python -m stages.<stage>`` in ``cwd``, SIGKILL it (:func:`kill_when`) before it
    wrote ``metrics``, call ``killed()`` (checks of what the kill left), run the stage again to
    the end; returns the rerun."""
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, ready, jitter)
    assert not (cwd / metrics).exists()
    killed()
    result = run_stage(stage, cwd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def copy_inputs(source: Path, dest: Path, items=("params.yaml", "data", "models")) -> Path:
    """The stage inputs ``items`` of the project at ``source`` copied to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in items:
        if (source / item).exists():
            (shutil.copytree if (source / item).is_dir() else shutil.copy)(source / item,
                                                                          dest / item)
    return dest
