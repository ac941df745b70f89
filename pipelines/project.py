"""The DVC project as the flows see it: its stages in DVC's order, one stage reproduced, its
metrics, and experiments. Everything runs DVC's own command line (the commands a user would
type) from the project root, with the interpreter running the flow first on ``PATH`` so the
stages' ``python -m stages.<name>`` use the same environment.

A command that fails raises :class:`CommandFailed` carrying the failing program's own message
(the last error line it printed, e.g. ``ParamsError: params: train.lr = -1 ...``) and whether the
failure looks transient (a held lock, a busy database, a dropped connection), which is the only
kind the flows retry.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable

from geodesic.core.settings import flatten

TRANSIENT = re.compile(r"unable to acquire lock|database is locked|connection (refused|reset|"
                       r"aborted)|temporary failure|timed out|resource temporarily unavailable",
                       re.IGNORECASE)
_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Fault|Exit)\b.*|^error: .+|^\w+Failed: .+")
METRICS_DIR = "metrics"
_DVC_LINE = re.compile(r"^(ERROR|WARNING|Running stage|Stage '|Updating lock|Use `dvc|To )")


class CommandFailed(RuntimeError):
    """A DVC command (and the stage or experiment it ran) exited with an error."""

    def __init__(self, what: str, returncode: int, output: list[str]):
        self.what, self.returncode, self.output = what, returncode, output
        self.cause = error_message(output)
        self.transient = bool(TRANSIENT.search("\n".join(output)))
        super().__init__(f"{what} failed (exit {returncode}): {self.cause}")


class SweepFailed(RuntimeError):
    """Some points of a sweep failed; its comparison table records each one's error."""


def error_message(lines: list[str]) -> str:
    """The failing program's own message: its last error-looking line (a Python exception or an
    ``error:`` line), else DVC's ``ERROR:`` line, else the last line printed."""
    own = [ln.strip() for ln in lines if ln.strip() and not _DVC_LINE.match(ln.strip())]
    for line in reversed(own):
        if _ERROR_LINE.match(line):
            return line
    for line in reversed(lines):
        if line.startswith("ERROR"):
            return line.strip()
    return own[-1] if own else "no output"


class Project:
    """A DVC project at ``root`` (a directory holding ``dvc.yaml``)."""

    def __init__(self, root: str | Path = "."):
        self.root = Path(root).resolve()
        if not (self.root / "dvc.yaml").exists():
            raise FileNotFoundError(f"{self.root} holds no dvc.yaml: not a DVC project")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ, **(extra or {}))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def dvc(self, *args: str, env: dict[str, str] | None = None,
            log: Callable[[str], None] | None = None, what: str | None = None) -> list[str]:
        """Run ``dvc <args>`` in the project; returns its output lines (stdout and stderr),
        passing each line to ``log`` as it arrives. Raises :class:`CommandFailed`."""
        cmd = [sys.executable, "-m", "dvc", *args]
        tail: deque[str] = deque(maxlen=400)
        with subprocess.Popen(cmd, cwd=self.root, env=self.env(env), text=True, bufsize=1,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                if log is not None and line.strip():
                    log(line)
        if proc.returncode != 0:
            raise CommandFailed(what or f"dvc {' '.join(args)}", proc.returncode, list(tail))
        return list(tail)

    def dvc_json(self, *args: str):
        """The JSON that ``dvc <args> --json`` prints on stdout (warnings go to stderr)."""
        proc = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=self.root,
                              env=self.env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise CommandFailed(f"dvc {' '.join(args)}", proc.returncode,
                                proc.stderr.splitlines())
        return json.loads(proc.stdout or "null")

    def stages(self, targets: list[str] | None = None) -> list[str]:
        """The stages in the order DVC runs them (upstream first; ties in dvc.yaml order);
        with ``targets``, those stages and everything upstream of them."""
        import networkx as nx
        from dvc.repo import Repo

        with Repo(str(self.root)) as repo:
            graph = repo.index.graph  # edges point from a stage to the stages it depends on
            names = {stage: self._address(stage) for stage in graph.nodes}
            position = {self._address(stage): i for i, stage in enumerate(repo.index.stages)}
            wanted = set(graph.nodes)
            if targets:
                unknown = sorted(set(targets) - set(names.values()))
                if unknown:
                    raise ValueError(f"unknown stage(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(names.values()))}")
                wanted = {s for s in graph.nodes if names[s] in targets}
                wanted |= {d for s in list(wanted) for d in nx.descendants(graph, s)}
            order = nx.lexicographical_topological_sort(graph.reverse(copy=True),
                                                       key=lambda s: position.get(names[s], 0))
            return [names[s] for s in order if s in wanted]

    def pull_flag(self) -> list[str]:
        """``["--pull"]`` when the project has a default DVC remote: outputs that ``dvc.lock``
        already records are then fetched from it instead of recomputed (a worker's fresh
        clone, another machine's results)."""
        from dvc.repo import Repo

        with Repo(str(self.root)) as repo:
            return ["--pull"] if repo.config["core"].get("remote") else []

    def _address(self, stage) -> str:
        """``name`` for the stages of the root dvc.yaml, ``dir/dvc.yaml:name`` for others."""
        file = Path(stage.path).resolve()
        if file == self.root / "dvc.yaml":
            return stage.name
        return f"{file.relative_to(self.root).as_posix()}:{stage.name}"

    def repro_stage(self, stage: str, force: bool = False, env: dict[str, str] | None = None,
                    log: Callable[[str], None] | None = None) -> bool:
        """``dvc repro --single-item <stage>``: runs the stage when its dependencies, parameters
        or outputs changed (with a default remote, missing outputs are pulled first). Returns
        whether it ran."""
        args = ["repro", "--single-item", stage, *self.pull_flag()] + (["--force"] if force
                                                                         else [])
        lines = self.dvc(*args, env=env, log=log, what=f"stage {stage!r}")
        return any(line.startswith(f"Running stage '{stage}'") for line in lines)

    def metrics(self) -> dict[str, float]:
        """Every numeric figure of the workspace's metrics: the files ``dvc metrics show``
        reads and the full documents beside them (``metrics/*.json``), keyed ``<file
        stem>.<dotted key>`` (e.g. ``train.test_acc_mean``). The DVC metrics are read
        in-process through DVC's API (a second interpreter would cost more than the read)."""
        from dvc.repo import Repo

        with Repo(str(self.root)) as repo:
            shown = next(iter(repo.metrics.show().values()), {}).get("data", {})
        docs = {f: item.get("data") or {} for f, item in shown.items()}
        for file in sorted((self.root / METRICS_DIR).glob("*.json")):
            docs.setdefault(str(file.relative_to(self.root)), json.loads(file.read_text()))
        return flat_documents(docs)

    def metrics_at(self, rev: str, declared=()) -> dict[str, dict]:
        """The metrics documents as experiment commit ``rev`` holds them: the ``declared``
        DVC metrics files and every ``metrics/*.json`` (DVC experiments commit every
        git-tracked output, the full documents too, while ``dvc exp show`` lists only the
        declared files). {file: nested content}."""
        listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], cwd=self.root,
                                capture_output=True, text=True, check=True).stdout.split()
        declared = set(declared)
        files = sorted({f for f in listed if f in declared or (
            f.startswith(f"{METRICS_DIR}/") and f.endswith(".json"))})
        return {f: json.loads(subprocess.run(["git", "show", f"{rev}:{f}"], cwd=self.root,
                                             capture_output=True, text=True,
                                             check=True).stdout) for f in files}

    def exp_run(self, name: str, overrides: dict[str, object], env: dict[str, str] | None = None,
                log: Callable[[str], None] | None = None, force: bool = False,
                targets: tuple[str, ...] = ()) -> None:
        """``dvc exp run --temp -n <name> -S key=value ...``: the point in its own temporary
        copy of the workspace, so points never share outputs; recorded as DVC experiment
        ``name`` (``dvc exp show``). Stages whose inputs match an earlier run come from DVC's
        run cache unless ``force``; ``targets``: only these stages and what they depend on."""
        args = ["exp", "run", "--temp", "-n", name, *self.pull_flag()] + (["--force"] if force
                                                                           else [])
        for key, value in overrides.items():
            args += ["-S", f"{key}={format_value(value)}"]
        self.dvc(*args, *targets, env=env, log=log, what=f"experiment {name!r}")

    def experiments(self) -> dict[str, dict]:
        """{experiment name: {"rev", "params", "metrics"}} of the experiments on ``HEAD``,
        parameters and metrics flattened to dotted keys (``train.lr``, ``train.test_acc_mean``;
        the metrics of every document the experiment committed, :meth:`metrics_at`)."""
        rows = self.dvc_json("exp", "show") or []
        found = {}
        for baseline in rows:
            for exp in baseline.get("experiments") or []:
                for rev in exp.get("revs") or []:
                    data = rev.get("data") or {}
                    declared = (data.get("metrics") or {}).keys()
                    docs = self.metrics_at(rev["rev"], declared) if rev.get("rev") else {}
                    found[rev.get("name") or exp.get("name")] = {
                        "rev": rev.get("rev"),
                        "params": {k: v for item in (data.get("params") or {}).values()
                                   for k, v in flatten(item.get("data", {})).items()},
                        "metrics": flat_documents(docs)}
        return found

    def experiment_metrics(self, name: str) -> dict[str, dict]:
        """The metrics documents of experiment ``name`` as written: {file: nested content}."""
        for baseline in self.dvc_json("exp", "show") or []:
            for exp in baseline.get("experiments") or []:
                for rev in exp.get("revs") or []:
                    if (rev.get("name") or exp.get("name")) == name:
                        declared = ((rev.get("data") or {}).get("metrics") or {}).keys()
                        return self.metrics_at(rev["rev"], declared)
        raise KeyError(f"no DVC experiment named {name!r} on HEAD")


def format_value(value: object) -> str:
    """A value as ``dvc exp run -S`` parses it back (YAML): lists as JSON, booleans lowercase."""
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def flat_documents(docs: dict[str, dict]) -> dict[str, float]:
    """``{"metrics/train.json": {...}}`` (documents as written) -> :func:`flat_metrics`."""
    return flat_metrics({file: {"data": doc} for file, doc in docs.items()})


def flat_metrics(files: dict) -> dict[str, float]:
    """``{"metrics/train.json": {"data": {...}}}`` -> ``{"train.test_acc_mean": 0.98, ...}``:
    the numeric leaves, prefixed with the file's stem."""
    out: dict[str, float] = {}
    for file, item in files.items():
        for key, value in flatten(item.get("data") or {}, Path(file).stem).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
    return out
