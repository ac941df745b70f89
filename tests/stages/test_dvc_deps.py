"""Each DVC stage's ``deps`` cover every project module its entry point imports, derived from
the sources (``ast``, every import statement, also those inside functions): a change to any
module a stage runs makes ``dvc status`` report the stage. A folder in ``deps`` covers every file
under it, so listing package folders passes too."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

PROJECT_PACKAGES = ("geodesic", "stages")


def module_file(root: Path, name: str) -> Path | None:
    """The file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, name: str) -> set[str]:
    """Module names ``path`` (module ``name``) imports, ``from a import b`` giving ``a`` and
    ``a.b`` (b may be a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PROJECT_PACKAGES}


def project_files(root: Path, entry: str) -> set[Path]:
    """The files (relative to ``root``) of ``entry`` and every project module it imports,
    transitively, with the ``__init__.py`` of every package on the way."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        path = module_file(root, name)
        if name in seen or path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imported_names(path, name))
    return {p.relative_to(root) for p in seen.values()}


def entry_module(spec: dict) -> str:
    match = re.fullmatch(r"python -m ([\w.]+)", spec["cmd"])
    assert match, f"cmd {spec['cmd']!r} is not `python -m <module>`"
    return match.group(1)


def uncovered(spec: dict) -> list[str]:
    """The files of the project modules the stage imports that no entry of its deps covers."""
    deps = [Path(d) for d in spec.get("deps", [])]
    return sorted(f.as_posix() for f in project_files(ROOT, entry_module(spec))
                  if not any(f == d or d in f.parents for d in deps))


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_lists_the_project_modules_it_imports(name):
    missing = uncovered(STAGES[name])
    assert not missing, f"stage {name}: add to its deps in dvc.yaml: {', '.join(missing)}"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_listed_code_dependency_exists(name):
    code = [d for d in STAGES[name]["deps"] if d.split("/")[0] in PROJECT_PACKAGES]
    assert code and all((ROOT / d).exists() for d in code), [d for d in code
                                                            if not (ROOT / d).exists()]


def test_a_missing_module_or_a_folder_entry_is_seen():
    """The continual stage without the core folder (the per-layer products among it) is
    caught, file by file; the package folder ``geodesic`` in place of its folders covers them
    all."""
    spec = STAGES["continual"]
    assert Path("geodesic/core/fastmetric.py") in project_files(ROOT, "stages.continual")
    assert not uncovered(spec)
    without = dict(spec, deps=[d for d in spec["deps"] if d != "geodesic/core"])
    missing = uncovered(without)
    assert "geodesic/core/fastmetric.py" in missing
    assert all(m.startswith("geodesic/core/") for m in missing)
    folders = dict(spec, deps=["geodesic", "stages"])
    assert uncovered(folders) == []


def test_the_import_walk_reads_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "geodesic"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("def f():\n    from geodesic import late\n")
    (package / "late.py").write_text("import os\n")
    (package / "unused.py").write_text("")
    assert {p.as_posix() for p in project_files(tmp_path, "geodesic.sub")} == {
        "geodesic/__init__.py", "geodesic/sub/__init__.py", "geodesic/sub/leaf.py",
        "geodesic/late.py"}
