"""Copies of this project for end-to-end tests: a fresh git repository with shrunk parameters."""
import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = {"train.epochs": 2, "hybrid.base_epochs": 2, "hybrid.steps_per_level": 6,
        "*.max_steps": 12, "*.checkpoint_every": 4, "*.eval_every": 4}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def shrink(params: dict, tiny: dict) -> dict:
    """``tiny`` applied to ``params``: ``section.key`` sets one value, ``*.key`` lowers ``key``
    in every section that has it."""
    for spec, value in tiny.items():
        section, key = spec.split(".", 1)
        targets = params.values() if section == "*" else [params.setdefault(section, {})]
        for target in targets:
            if isinstance(target, dict) and (section != "*" or key in target):
                target[key] = min(target.get(key, value), value)
    return params


def copy_project(dest: Path, tiny: dict = TINY) -> Path:
    """This project's files (tracked and new, not ignored) in a fresh git repository at
    ``dest``, with ``params.yaml`` and the base values of ``conf/config.yaml`` (what every
    ``dvc exp run`` composes it from) shrunk by ``tiny``; committed, no DVC cache."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    params = shrink(yaml.safe_load((dest / "params.yaml").read_text()), tiny)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    config = dest / "conf" / "config.yaml"  # `dvc exp run` composes params.yaml from conf/
    config.write_text(yaml.safe_dump(shrink(yaml.safe_load(config.read_text()), tiny),
                                     sort_keys=False))
    env = dict(os.environ, **GIT_IDENTITY)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "project copy for tests"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest
