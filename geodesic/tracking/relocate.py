"""A local MLflow store that follows its project when the project is copied or moved.

A SQLite store records absolute artifact locations (``file:///old/project/mlartifacts/...``).
The project keeps a store's artifacts beside its database (``<folder>/mlflow.db`` and
``<folder>/mlartifacts``), so when the database is found in another folder than its recorded
locations name, every location under the old folder is rewritten to the same place under the
new one: runs written before the move stay readable (their artifacts were copied with the
project) and new runs write into the new folder, never into the old one.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

ARTIFACT_DIR = "mlartifacts"
DEFAULT_EXPERIMENT_DIR = "mlruns"  # MLflow's own experiment 0
# (table, column) pairs of MLflow's SQL schema that hold artifact locations
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"),
                    ("model_versions", "storage_location"), ("model_versions", "source"))


def recorded_folder(db: sqlite3.Connection) -> Path | None:
    """The folder the store's experiments were created in: ``<folder>`` of an artifact location
    ``file://<folder>/mlartifacts/<experiment>`` (None when no experiment has one)."""
    for (location,) in db.execute("SELECT artifact_location FROM experiments"):
        path = location.removeprefix("file://") if location else ""
        parent = Path(path).parent
        if parent.name == ARTIFACT_DIR:
            return parent.parent
    return None


def relocate(database: Path) -> Path | None:
    """Rewrite the locations of the store in ``database`` that name its old folder; returns the
    old folder when it moved (None when the store is where it was made, or new)."""
    folder = database.resolve().parent
    with sqlite3.connect(database) as db:
        tables = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return None
        old = recorded_folder(db)
        if old is None or old == folder:
            return None
        for sub in (ARTIFACT_DIR, DEFAULT_EXPERIMENT_DIR):
            for before, after in ((f"file://{old}/{sub}/", f"file://{folder}/{sub}/"),
                                  (f"{old}/{sub}/", f"{folder}/{sub}/")):
                for table, column in LOCATION_COLUMNS:
                    if table in tables:
                        db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                   f"WHERE substr({column}, 1, ?) = ?",
                                   (after, len(before) + 1, len(before), before))
    return old
