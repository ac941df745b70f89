"""The layering contract of pyproject.toml ([tool.importlinter]) holds, and would catch a core
module that imports an application; no module is longer than 300 lines."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
        " sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True)


def test_the_project_keeps_its_layers():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_core_module_importing_an_application_breaks_the_contract(tmp_path):
    for name in ("geodesic", "stages", "pipelines"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    metric = tmp_path / "geodesic" / "core" / "metric.py"
    metric.write_text(metric.read_text() + "\nfrom geodesic.sparsify import run  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "geodesic.core.metric -> geodesic.sparsify.run" in result.stdout


def test_every_module_reads_in_one_sitting():
    long = {p.relative_to(ROOT).as_posix(): n for folder in ("geodesic", "stages", "pipelines")
            for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"modules over 300 lines: {long}"
